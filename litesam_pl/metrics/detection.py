"""COCO mask AP (one class) and class-agnostic box AR@k as torchmetrics ``Metric`` s, synced across DDP ranks.

Both replay ``pycocotools.COCOeval`` to the last bit (its IoU thresholds 0.5:0.95, area ranges all / small / medium /
large, greedy matching with its tie rules, and accumulation) image by image in ``update``, so that a few numbers per
detection cross ranks at ``compute`` time: never a mask, never a Python object.

- ``BoxRecall``: AR@k of ranked boxes against GT boxes, as ``metrics.coco.proposal_recall(iou_type="bbox")``.
  Recall only counts matches, so both states are sums: the GTs matched by each image's top k boxes, per area range,
  k and IoU threshold, and the number of GTs per area range.
- ``MaskAP``: AP, AP50, ... from per-image detection x GT mask IoU matrices, as ``metrics.coco.mask_ap_from_ious``.
  AP ranks the detections of all images by score, so each kept detection leaves its score, its rank in its image and
  its outcome (true / false positive / ignored) per area range and threshold in list states gathered by
  ``dist_reduce_fx="cat"`` (rank order: the numbers of one process that saw rank 0's images, then rank 1's, ...);
  only the GT counts per area range are sums.

IoUs must be finite. ``tests/metrics/test_detection.py`` compares both with those functions (random cases with tied
IoUs and scores), with pycocotools on masks, and on 2 gloo ranks holding uneven shares (or none) of the images.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from pycocotools.cocoeval import Params
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from litesam_pl.metrics.cocotools import mean_valid

__all__ = ["IOU_THRESHOLDS", "AREA_RANGES", "coco_box_iou", "greedy_match", "MaskAP", "BoxRecall"]

_PARAMS = Params(iouType="segm")
#: pycocotools' float64 IoU thresholds ``[T]`` (0.5:0.05:0.95) and recall points ``[R]`` (0:0.01:1)
IOU_THRESHOLDS: np.ndarray = _PARAMS.iouThrs
_REC_THRESHOLDS: np.ndarray = _PARAMS.recThrs
#: COCO's area ranges in pixels, both bounds inclusive: ``{"all", "small", "medium", "large"} -> (lo, hi)``
AREA_RANGES = {label: (float(lo), float(hi)) for label, (lo, hi) in zip(_PARAMS.areaRngLbl, _PARAMS.areaRng)}
_SHORT = {"small": "s", "medium": "m", "large": "l"}
# MaskAP's per-detection outcome codes
_FP, _TP, _IGNORED = 0, 1, 2


def _f64(x: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().double()
    return np.asarray(x, dtype=np.float64)


def _outside(areas: np.ndarray) -> np.ndarray:
    """bool ``[A, N]``: area outside each of ``AREA_RANGES`` (COCOeval ignores such GTs and unmatched detections)."""
    return np.stack([(areas < lo) | (areas > hi) for lo, hi in AREA_RANGES.values()])


def _xywh(b: np.ndarray) -> np.ndarray:
    return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def coco_box_iou(dt: Any, gt: Any) -> np.ndarray:
    """pycocotools' box IoU (``maskUtils.iou``, no crowd): xyxy ``[D, 4]``, ``[G, 4]`` -> float64 ``[D, G]``.

    The boxes pass through xywh as ``metrics.coco`` hands them to pycocotools, and every operation is the one of its C
    code (``bbIou``), so the values are the same doubles.
    """
    d, g = _xywh(_f64(dt).reshape(-1, 4))[:, None], _xywh(_f64(gt).reshape(-1, 4))[None]  # [D, 1, 4], [1, G, 4]
    w = np.minimum(d[..., 0] + d[..., 2], g[..., 0] + g[..., 2]) - np.maximum(d[..., 0], g[..., 0])
    h = np.minimum(d[..., 1] + d[..., 3], g[..., 1] + g[..., 3]) - np.maximum(d[..., 1], g[..., 1])
    inter = w * h
    union = d[..., 2] * d[..., 3] + g[..., 2] * g[..., 3] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((w > 0) & (h > 0), inter / union, 0.0)


def greedy_match(ious: np.ndarray, gt_ignore: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``COCOeval.evaluateImg``'s greedy matching (no crowd), for every area range and IoU threshold at once.

    Each detection, best first, takes the free GT of highest IoU at or above the threshold (the last such GT on a
    tie, as pycocotools), a GT outside the area range only when no GT inside it qualifies.

    Args:
        ious: float64 ``[D, G]``, the detections ranked best first (already cut at the largest max_dets).
        gt_ignore: bool ``[A, G]``, GT outside area range a.
    Returns:
        ``matched`` and ``on_ignored``, bool ``[A, T, D]``: detection d matched a GT at threshold t in range a;
        that GT lies outside the range.
    """
    d_count, g_count = ious.shape
    a_count, t_count = gt_ignore.shape[0], len(IOU_THRESHOLDS)
    matched = np.zeros((a_count, t_count, d_count), dtype=bool)
    on_ignored = np.zeros_like(matched)
    if d_count == 0 or g_count == 0:
        return matched, on_ignored
    thr = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[None, :, None]  # pycocotools: min([t, 1 - 1e-10])
    free = np.ones((a_count, t_count, g_count), dtype=bool)
    for d in np.flatnonzero(ious.max(1) >= thr.min()):  # the others match nothing at any threshold
        cand = free & (ious[d] >= thr)  # [A, T, G]
        inside = cand & ~gt_ignore[:, None, :]
        cand = np.where(inside.any(-1, keepdims=True), inside, cand)
        hit = cand.any(-1)  # [A, T]
        if not hit.any():
            continue
        val = np.where(cand, ious[d], -np.inf)
        best = g_count - 1 - np.argmax((val == val.max(-1, keepdims=True))[..., ::-1], axis=-1)  # last of the max
        a_idx, t_idx = np.nonzero(hit)
        g_idx = best[a_idx, t_idx]
        free[a_idx, t_idx, g_idx] = False
        matched[a_idx, t_idx, d] = True
        on_ignored[a_idx, t_idx, d] = gt_ignore[a_idx, g_idx]
    return matched, on_ignored


def _ranked(scores: Optional[np.ndarray], count: int, max_det: int) -> np.ndarray:
    """Indices of the top ``max_det`` of ``count`` detections by float64 ``scores`` ``[count]`` (pycocotools' stable
    sort), or the first ones when ``scores`` is None (ranked best first already)."""
    if scores is None:
        return np.arange(min(count, max_det))
    if len(scores) != count:
        raise ValueError(f"{count} detections but {len(scores)} scores")
    return np.argsort(-scores, kind="mergesort")[:max_det]


def _accumulate(outcome: np.ndarray, num_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """``COCOeval.accumulate`` for one area range and max_dets: ``outcome`` uint8 ``[T, N]`` of the detections of all
    images sorted by score -> precision ``[T, R]`` at the recall points, recall ``[T]``."""
    tp_sum = np.cumsum(outcome == _TP, axis=1).astype(float)
    fp_sum = np.cumsum(outcome == _FP, axis=1).astype(float)
    nd = outcome.shape[1]
    precision = np.zeros((len(tp_sum), len(_REC_THRESHOLDS)))
    recall = np.zeros(len(tp_sum))
    for t, (tp, fp) in enumerate(zip(tp_sum, fp_sum)):
        rc = tp / num_gt
        pr = tp / (fp + tp + np.spacing(1))
        if nd:
            recall[t] = rc[-1]
        pr = np.maximum.accumulate(pr[::-1])[::-1]  # the precision envelope
        idx = np.searchsorted(rc, _REC_THRESHOLDS, side="left")
        reached = idx < nd
        precision[t, reached] = pr[idx[reached]]
    return precision, recall


def _summary(recall: np.ndarray, max_dets: Sequence[int], precision: Optional[np.ndarray] = None) -> dict[str, float]:
    """The keys of ``metrics.coco``'s summaries from recall ``[T, A, M]`` (and precision ``[T, R, A, M]``), -1 where
    undefined: ``ap``, ``ap50``, ``ap75``, ``ap_s|m|l`` at the last max_dets (with precision), ``ar@<k>``,
    ``ar_s|m|l@<last k>``."""
    labels = list(AREA_RANGES)
    out: dict[str, float] = {}
    if precision is not None:
        t50 = int(np.argmin(np.abs(IOU_THRESHOLDS - 0.5)))
        t75 = int(np.argmin(np.abs(IOU_THRESHOLDS - 0.75)))
        last = precision[..., -1]
        out = {"ap": mean_valid(last[:, :, 0]), "ap50": mean_valid(last[t50:t50 + 1, :, 0]),
               "ap75": mean_valid(last[t75:t75 + 1, :, 0]),
               **{f"ap_{_SHORT[a]}": mean_valid(last[:, :, labels.index(a)]) for a in _SHORT}}
    for m, k in enumerate(max_dets):
        out[f"ar@{k}"] = mean_valid(recall[:, 0, m])
    for a, short in _SHORT.items():
        out[f"ar_{short}@{max_dets[-1]}"] = mean_valid(recall[:, labels.index(a), -1])
    return out


def _max_dets(max_dets: Sequence[int]) -> tuple[int, ...]:
    out = tuple(sorted({int(k) for k in max_dets}))
    if not out or out[0] < 1:
        raise ValueError(f"max_dets must be positive, got {tuple(max_dets)}")
    return out


class BoxRecall(Metric):
    """Class-agnostic AR@k (IoU 0.5:0.95) of ranked boxes against GT boxes: ``proposal_recall(iou_type="bbox")``.

    ``update(boxes, gt_boxes, scores=None)`` per image; ``compute()`` returns float64 0-d tensors
    ``{"ar@<k>" for k in max_dets, "ar_s@<K>", "ar_m@<K>", "ar_l@<K>"}`` (K the largest k; small / medium / large
    by GT box area), fractions, NaN where no GT was seen. Validation: AutoPPN's boxes, ``val/box_ar<k>``.

    States (summed over ranks): ``matched`` int64 ``[A, M, T]``, GTs inside area range a matched by each image's
    top ``max_dets[m]`` boxes at IoU threshold t; ``num_gt`` int64 ``[A]``, GTs inside each range.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, max_dets: Sequence[int] = (100, 1000), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_dets = _max_dets(max_dets)
        shape = (len(AREA_RANGES), len(self.max_dets), len(IOU_THRESHOLDS))
        self.add_state("matched", torch.zeros(shape, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("num_gt", torch.zeros(len(AREA_RANGES), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, boxes: Tensor, gt_boxes: Tensor, scores: Optional[Tensor] = None) -> None:
        """``boxes`` ``[D, 4]`` and ``gt_boxes`` ``[G, 4]`` xyxy pixels of one image; ``scores`` ``[D]`` rank the
        boxes (default: ranked best first already). Boxes beyond the largest k are dropped."""
        dt, gt = _f64(boxes).reshape(-1, 4), _f64(gt_boxes).reshape(-1, 4)
        dt = dt[_ranked(None if scores is None else _f64(scores).reshape(-1), len(dt), self.max_dets[-1])]
        wh = np.maximum(_xywh(gt)[:, 2:], 0)
        gt_ignore = _outside(wh[:, 0] * wh[:, 1])  # [A, G], by box area as coco_from_arrays
        matched, on_ignored = greedy_match(coco_box_iou(dt, gt), gt_ignore)
        tp = matched & ~on_ignored  # [A, T, D]
        counts = np.stack([tp[..., :k].sum(-1) for k in self.max_dets], axis=1)  # [A, M, T]
        self.matched += torch.from_numpy(counts).to(self.matched.device)
        self.num_gt += torch.from_numpy((~gt_ignore).sum(1)).to(self.num_gt.device)

    def compute(self) -> dict[str, Tensor]:
        num_gt = self.num_gt.cpu().numpy()
        recall = self.matched.cpu().numpy().astype(float) / np.maximum(num_gt, 1)[:, None, None]
        recall[num_gt == 0] = -1.0  # pycocotools: undefined
        res = _summary(recall.transpose(2, 0, 1), self.max_dets)
        return {k: torch.tensor(v, dtype=torch.float64, device=self.device) for k, v in res.items()}


class MaskAP(Metric):
    """COCO AP of one class from per-image detection x GT mask IoU matrices: ``mask_ap_from_ious``, as a Metric.

    ``update(ious, scores, gt_areas, dt_areas)`` per image; ``compute()`` returns float64 0-d tensors ``{"ap",
    "ap50", "ap75", "ap_s", "ap_m", "ap_l", "ar@<k>" for k in max_dets, "ar_s@<K>", "ar_m@<K>", "ar_l@<K>"}``
    (K the largest k, at which AP is read), fractions, NaN where undefined (e.g. no GT). Validation: the 1-box masks
    scored by the IoU head, ``val/ap_1box``, ``val/ap50_1box``.

    States, over the N detections kept (each image's top K by score), concatenated over ranks: ``scores`` float64
    ``[N]``; ``ranks`` int64 ``[N]`` (0 = its image's best); ``outcome`` uint8 ``[N, A, T]`` per area range and IoU
    threshold: 0 false positive, 1 true positive, 2 ignored (matched a GT outside the range, or unmatched and
    outside it itself). Summed: ``num_gt`` int64 ``[A]``, GTs inside each range.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, max_dets: Sequence[int] = (1, 10, 100), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_dets = _max_dets(max_dets)
        self.add_state("scores", [], dist_reduce_fx="cat")
        self.add_state("ranks", [], dist_reduce_fx="cat")
        self.add_state("outcome", [], dist_reduce_fx="cat")
        self.add_state("num_gt", torch.zeros(len(AREA_RANGES), dtype=torch.long), dist_reduce_fx="sum")

    def _empty(self) -> dict[str, Tensor]:
        """The list states of no detection, in their own dtypes and trailing shapes."""
        dev = self.device
        return {"scores": torch.zeros(0, dtype=torch.float64, device=dev),
                "ranks": torch.zeros(0, dtype=torch.long, device=dev),
                "outcome": torch.zeros(0, len(AREA_RANGES), len(IOU_THRESHOLDS), dtype=torch.uint8, device=dev)}

    def update(self, ious: Tensor, scores: Tensor, gt_areas: Tensor, dt_areas: Tensor) -> None:
        """One image: ``ious`` ``[D, G]`` of its detections with its GT masks, ``scores`` ``[D]``, ``gt_areas``
        ``[G]`` and ``dt_areas`` ``[D]`` in pixels (COCO's small / medium / large ranges)."""
        ga, da, s = _f64(gt_areas).reshape(-1), _f64(dt_areas).reshape(-1), _f64(scores).reshape(-1)
        iou = _f64(ious)
        if iou.size != len(da) * len(ga):
            raise ValueError(f"ious {tuple(iou.shape)} for {len(da)} detections and {len(ga)} GT masks")
        iou = iou.reshape(len(da), len(ga))
        keep = _ranked(s, len(da), self.max_dets[-1])
        gt_ignore = _outside(ga)
        self.num_gt += torch.from_numpy((~gt_ignore).sum(1)).to(self.num_gt.device)
        if not len(keep):
            return
        matched, on_ignored = greedy_match(iou[keep], gt_ignore)  # [A, T, D]
        out_of_range = _outside(da[keep])[:, None, :]
        outcome = np.where(matched, np.where(on_ignored, _IGNORED, _TP), np.where(out_of_range, _IGNORED, _FP))
        dev = self.device
        self.scores.append(torch.from_numpy(s[keep]).to(dev))
        self.ranks.append(torch.arange(len(keep), device=dev))
        self.outcome.append(torch.from_numpy(outcome.transpose(2, 0, 1).astype(np.uint8)).to(dev))

    def sync(self, dist_sync_fn: Optional[Callable] = None, process_group: Optional[Any] = None,
             should_sync: bool = True, distributed_available: Optional[Callable] = None) -> None:
        """``Metric.sync`` with a typed empty tensor in each list state this rank has no detection in: torchmetrics
        sends a float32 ``[0]`` tensor for it, which the other ranks' float64 / int64 / ``[N, A, T]`` tensors do not
        gather with (an error or a hang). ``unsync`` takes them out of the local states again."""
        for name, empty in self._empty().items():
            state = getattr(self, name)
            if isinstance(state, list) and not state:
                setattr(self, name, [empty])
        super().sync(dist_sync_fn, process_group, should_sync, distributed_available)

    def unsync(self, should_unsync: bool = True) -> None:
        """``Metric.unsync``, then the local list states without the empty tensors ``sync`` put in (``update`` never
        adds one)."""
        super().unsync(should_unsync)
        for name in self._empty():
            state = getattr(self, name)
            if isinstance(state, list) and all(t.numel() == 0 for t in state):
                setattr(self, name, [])

    def compute(self) -> dict[str, Tensor]:
        states = {name: dim_zero_cat(getattr(self, name)) if len(getattr(self, name)) else empty
                  for name, empty in self._empty().items()}
        scores, ranks, outcome = (states[k].cpu().numpy() for k in ("scores", "ranks", "outcome"))
        num_gt = self.num_gt.cpu().numpy()
        a_count, t_count, m_count = len(AREA_RANGES), len(IOU_THRESHOLDS), len(self.max_dets)
        precision = -np.ones((t_count, len(_REC_THRESHOLDS), a_count, m_count))
        recall = -np.ones((t_count, a_count, m_count))
        for m, k in enumerate(self.max_dets):
            top = ranks < k
            order = np.argsort(-scores[top], kind="mergesort")  # COCOeval.accumulate's order over all images
            ranked = outcome[top][order]  # [n, A, T]
            for a in range(a_count):
                if num_gt[a]:
                    precision[:, :, a, m], recall[:, a, m] = _accumulate(ranked[:, a].T, int(num_gt[a]))
        res = _summary(recall, self.max_dets, precision)
        return {k: torch.tensor(v, dtype=torch.float64, device=self.device) for k, v in res.items()}
