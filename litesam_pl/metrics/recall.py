"""Class-agnostic mask recall (AR@k, IoU 0.5:0.95) and AutoPPN point precision as torchmetrics ``Metric`` s.

``MaskRecall`` keeps only counts (matched GTs per IoU threshold and per k, and the number of GTs), so it syncs
across DDP ranks as a sum and never gathers masks. Matching follows ``pycocotools.COCOeval`` with
``useCats=0``, area "all", no crowd regions: proposals in score order, each takes the unmatched GT of highest IoU
at or above the threshold (``tests/test_metrics_recall.py`` checks it against ``metrics.coco.proposal_recall``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["IOU_THRESHOLDS", "mask_iou_matrix", "matched_counts", "MaskRecall", "PointPrecision"]

IOU_THRESHOLDS = torch.linspace(0.5, 0.95, 10)


def mask_iou_matrix(pred: Tensor, gt: Tensor) -> Tensor:
    """IoU of every predicted mask with every GT mask: bool ``[D, H, W]``, ``[G, H, W]`` -> float ``[D, G]``."""
    p = pred.flatten(1).float()
    g = gt.flatten(1).float()
    inter = p @ g.T
    union = p.sum(1)[:, None] + g.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1.0), torch.zeros_like(inter))


def matched_counts(ious: Tensor, max_dets: Sequence[int], thresholds: Tensor = IOU_THRESHOLDS) -> Tensor:
    """Number of GTs matched by the first ``k`` proposals, for each ``k`` of ``max_dets`` and each threshold.

    Args:
        ious: ``[D, G]`` IoUs of the proposals (ranked best first) with the GTs of one image.
    Returns:
        int64 ``[len(max_dets), len(thresholds)]``.
    """
    d, g = ious.shape
    out = torch.zeros(len(max_dets), len(thresholds), dtype=torch.long)
    if d == 0 or g == 0:
        return out
    iou = ious.detach().float().cpu().numpy().astype(np.float64)
    for t_idx, t in enumerate(thresholds.tolist()):
        avail = iou.copy()
        match_rank = np.full(g, np.iinfo(np.int64).max, dtype=np.int64)  # rank of each GT's match (max: none)
        thr = min(t, 1 - 1e-10)
        for r in np.flatnonzero(iou.max(1) >= thr):  # proposals that cannot match anything are skipped
            best = int(avail[r].argmax())
            if avail[r, best] >= thr:
                match_rank[best] = r
                avail[:, best] = -1.0
        for k_idx, k in enumerate(max_dets):
            out[k_idx, t_idx] = int((match_rank < int(k)).sum())
    return out


class MaskRecall(Metric):
    """AR@k over IoU 0.5:0.95 (SAM's object-proposal protocol, class-agnostic) from per-image IoU matrices.

    ``update(ious)`` takes the ``[D, G]`` IoUs of one image's proposals (best first) with its GTs; ``compute()``
    returns a float ``[len(max_dets)]`` tensor (NaN when no GT was seen).
    """

    full_state_update = False

    def __init__(self, max_dets: Sequence[int] = (100, 1000), **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_dets = tuple(int(k) for k in max_dets)
        self.add_state("matched", torch.zeros(len(self.max_dets), len(IOU_THRESHOLDS), dtype=torch.long),
                       dist_reduce_fx="sum")
        self.add_state("num_gt", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, ious: Tensor) -> None:
        self.matched += matched_counts(ious, self.max_dets).to(self.matched.device)
        self.num_gt += int(ious.shape[1])

    def compute(self) -> Tensor:
        if int(self.num_gt) == 0:
            return torch.full((len(self.max_dets),), float("nan"), device=self.matched.device)
        return (self.matched.float() / self.num_gt.float()).mean(1)


class PointPrecision(Metric):
    """Per image: of the top-``k`` AutoPPN points (``k`` = the image's number of GT masks), the share that fall
    inside a GT mask; averaged over images (``val/point_precision``)."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("images", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, inside: Tensor, num_gt: int) -> None:
        """``inside``: bool ``[N]`` for the image's points ranked by score (best first); ``num_gt``: its GT masks."""
        if num_gt <= 0:
            return
        top = inside[: int(num_gt)].float()
        # fewer points than GT masks: the missing ones count as misses
        self.total += float(top.sum()) / float(num_gt)
        self.images += 1

    def compute(self) -> Tensor:
        if int(self.images) == 0:
            return torch.tensor(float("nan"), device=self.total.device)
        return (self.total / self.images.double()).float()
