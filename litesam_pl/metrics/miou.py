"""Mask IoU and mIoU with the COCO small / medium / large split (Table 5's 1-box and 1-point columns).

Masks are bool (or 0/1) numpy arrays, or anything with ``.detach().cpu().numpy()`` (a torch tensor); nothing
here knows about models. IoUs are fractions in [0, 1]; ``MIoU`` (a torchmetrics ``Metric``, validation's and the
benchmarks' one mIoU) and ``summarize_miou`` report them the same way (multiply by 100 for the paper's
percentages).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = [
    "COCO_AREA_RANGES",
    "as_numpy",
    "mask_iou",
    "mask_ious",
    "area_group",
    "summarize_miou",
    "MIoU",
]

#: COCO's area ranges (pixels of the annotation's ``area``), bounds inclusive on both sides exactly as
#: ``COCOeval`` treats them (an instance of area exactly 32**2 counts as small AND medium).
COCO_AREA_RANGES: Mapping[str, tuple[float, float]] = {
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e5**2),
}


def as_numpy(x: Any) -> np.ndarray:
    """``x`` as a numpy array; a torch tensor is detached and copied to the CPU first (torch is not imported)."""
    if hasattr(x, "detach"):  # torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def mask_ious(pred: Any, gt: Any, empty: float = 1.0) -> np.ndarray:
    """IoU of each pair of masks.

    Args:
        pred: ``[K, H, W]`` (or ``[H, W]``) bool / 0-1 predicted masks.
        gt: same shape, ground-truth masks.
        empty: the IoU given to a pair whose union is empty (both masks empty).

    Returns:
        float64 ``[K]`` (a 0-d array for 2-D inputs), values in [0, 1].
    """
    p = as_numpy(pred).astype(bool, copy=False)
    g = as_numpy(gt).astype(bool, copy=False)
    if p.shape != g.shape:
        raise ValueError(f"mask shapes differ: pred {p.shape} vs gt {g.shape}")
    if p.ndim < 2:
        raise ValueError(f"masks must be [H, W] or [K, H, W], got shape {p.shape}")
    axes = (-2, -1)
    inter = np.logical_and(p, g).sum(axis=axes, dtype=np.int64)
    union = np.logical_or(p, g).sum(axis=axes, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.maximum(union, 1), float(empty))
    return iou.astype(np.float64)


def mask_iou(pred: Any, gt: Any, empty: float = 1.0) -> float:
    """IoU of two ``[H, W]`` masks (``empty`` when both are empty)."""
    return float(mask_ious(pred, gt, empty=empty))


def area_group(areas: Any, ranges: Mapping[str, tuple[float, float]] = COCO_AREA_RANGES) -> dict[str, np.ndarray]:
    """Bool membership ``[N]`` per range name (``lo <= area <= hi``, as ``COCOeval``)."""
    a = as_numpy(areas).astype(np.float64).reshape(-1)
    return {name: (a >= lo) & (a <= hi) for name, (lo, hi) in ranges.items()}


def summarize_miou(
    ious: Sequence[float] | np.ndarray,
    areas: Sequence[float] | np.ndarray,
    ranges: Mapping[str, tuple[float, float]] = COCO_AREA_RANGES,
) -> dict[str, float | int]:
    """Mean IoU over instances, overall and per area range: ``MIoU`` on one batch of instances, as Python numbers.

    Args:
        ious: ``[N]`` per-instance IoUs in [0, 1].
        areas: ``[N]`` the annotations' ``area`` (pixels at original resolution).

    Returns:
        ``{"miou", "miou_small", "miou_medium", "miou_large", "n", "n_small", "n_medium", "n_large"}``; a mean
        over no instance is ``nan``.
    """
    metric = MIoU(ranges)
    metric.update(ious, areas)
    return {k: (int(v) if k.startswith("n") else float(v)) for k, v in metric.compute().items()}


class MIoU(Metric):
    """Mean IoU over instances, overall and per area range (COCO's small / medium / large by default).

    The one mIoU of the suite: validation's ``val/miou_1box`` / ``val/miou_1point`` and the benchmarks' 1-box /
    1-point columns (``summarize_miou``). ``update(ious, areas=None)`` adds K instances; without ``areas`` they
    count only in the overall mean. ``compute()`` returns 0-d tensors ``{"miou", "miou_<range>", "n",
    "n_<range>"}``: float64 means (NaN over no instance) and int64 counts.

    States (summed over DDP ranks, so a rank without updates adds nothing): ``iou_sum`` float64 ``[1 + R]`` and
    ``count`` int64 ``[1 + R]``, overall first, then the ranges in order.

    Example::

        m = MIoU()
        m.update(mask_ious(pred_masks, gt_masks), areas)   # [K], [K]
        m.compute()["miou"]
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, ranges: Mapping[str, tuple[float, float]] = COCO_AREA_RANGES, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ranges = dict(ranges)
        size = 1 + len(self.ranges)
        self.add_state("iou_sum", torch.zeros(size, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(size, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, ious: Any, areas: Any | None = None) -> None:
        """``ious`` ``[K]`` in [0, 1]; ``areas`` ``[K]`` in pixels (the ranges' unit) or None."""
        i = torch.as_tensor(as_numpy(ious), dtype=torch.float64).reshape(-1)
        member = [torch.ones_like(i, dtype=torch.bool)]
        if areas is not None:
            a = as_numpy(areas).astype(np.float64).reshape(-1)
            if a.shape[0] != i.shape[0]:
                raise ValueError(f"ious ({i.shape[0]},) and areas {a.shape} differ in length")
            member += [torch.from_numpy(m) for m in area_group(a, self.ranges).values()]
        else:
            member += [torch.zeros_like(i, dtype=torch.bool)] * len(self.ranges)
        rows = torch.stack(member)  # [1 + R, K]
        self.iou_sum += (rows * i).sum(1).to(self.iou_sum.device)
        self.count += rows.sum(1).to(self.count.device)

    def compute(self) -> dict[str, Tensor]:
        means = self.iou_sum / self.count.clamp(min=1)
        means = torch.where(self.count > 0, means, torch.full_like(means, float("nan")))
        names = ["", *(f"_{name}" for name in self.ranges)]
        return {**{f"miou{n}": means[k] for k, n in enumerate(names)},
                **{f"n{n}": self.count[k] for k, n in enumerate(names)}}
