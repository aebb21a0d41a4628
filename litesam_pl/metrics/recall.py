"""Class-agnostic mask recall (AR@k, IoU 0.5:0.95) and AutoPPN point precision as torchmetrics ``Metric`` s.

``MaskRecall`` keeps only counts (matched GTs per IoU threshold and per k, and the number of GTs), so it syncs
across DDP ranks as a sum and never gathers masks. Matching follows ``pycocotools.COCOeval`` with
``useCats=0``, area "all", no crowd regions: proposals in score order, each takes the unmatched GT of highest IoU
at or above the threshold, the last such GT on a tie (``detection.greedy_match``, pycocotools' float64 thresholds;
``tests/metrics/test_recall.py`` checks it against ``metrics.coco.proposal_recall``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from litesam_pl.metrics.detection import IOU_THRESHOLDS, greedy_match

__all__ = ["IOU_THRESHOLDS", "pred_gt_iou_matrix", "matched_counts", "MaskRecall", "PointPrecision"]




def pred_gt_iou_matrix(pred: Tensor, gt: Tensor) -> Tensor:
    """IoU of every predicted mask with every GT mask: bool ``[D, H, W]``, ``[G, H, W]`` -> float64 ``[D, G]``.

    Pixel counts are exact in float32 (masks under 2^24 pixels); the ratio is taken in float64, as pycocotools does,
    so IoUs that land on a threshold (0.75 = 3/4) compare as they do there."""
    p = pred.flatten(1).float()
    g = gt.flatten(1).float()
    inter = (p @ g.T).double()
    union = p.sum(1).double()[:, None] + g.sum(1).double()[None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1.0), torch.zeros_like(inter))


def matched_counts(ious: Tensor, max_dets: Sequence[int]) -> Tensor:
    """Number of GTs matched by the first ``k`` proposals, for each ``k`` of ``max_dets`` and each IoU threshold.

    pycocotools' greedy matching (``detection.greedy_match``: its float64 thresholds and its tie rule), area "all".
    Each proposal matches at most one GT, and the matches of the first ``k`` proposals do not depend on the later
    ones, so one pass over all proposals gives every ``k``.

    Args:
        ious: ``[D, G]`` IoUs of the proposals (ranked best first) with the GTs of one image.
    Returns:
        int64 ``[len(max_dets), len(IOU_THRESHOLDS)]``.
    """
    d, g = ious.shape
    out = torch.zeros(len(max_dets), len(IOU_THRESHOLDS), dtype=torch.long)
    if d == 0 or g == 0:
        return out
    iou = ious.detach().cpu().double().numpy()
    matched, _ = greedy_match(iou, np.zeros((1, g), dtype=bool))  # [1, T, D]
    cum = np.cumsum(matched[0], axis=1)  # [T, D]: GTs matched by the first j + 1 proposals
    for k_idx, k in enumerate(max_dets):
        out[k_idx] = torch.from_numpy(cum[:, min(int(k), d) - 1].astype(np.int64))
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
