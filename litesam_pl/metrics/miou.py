"""Mask IoU and mIoU with the COCO small / medium / large split (Table 5's 1-box and 1-point columns).

Arrays in, numbers out: masks are bool (or 0/1) numpy arrays, or anything with ``.detach().cpu().numpy()``
(a torch tensor); nothing here knows about models. IoUs are fractions in [0, 1]; ``summarize_miou`` reports
them the same way (multiply by 100 for the paper's percentages).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

__all__ = [
    "COCO_AREA_RANGES",
    "as_numpy",
    "mask_iou",
    "mask_ious",
    "area_group",
    "summarize_miou",
    "MIoUAccumulator",
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
    """Mean IoU over instances, overall and per area range.

    Args:
        ious: ``[N]`` per-instance IoUs in [0, 1].
        areas: ``[N]`` the annotations' ``area`` (pixels at original resolution).

    Returns:
        ``{"miou", "miou_small", "miou_medium", "miou_large", "n", "n_small", "n_medium", "n_large"}``; a mean
        over no instance is ``nan``.
    """
    i = as_numpy(ious).astype(np.float64).reshape(-1)
    a = as_numpy(areas).astype(np.float64).reshape(-1)
    if i.shape != a.shape:
        raise ValueError(f"ious {i.shape} and areas {a.shape} differ in length")
    out: dict[str, float | int] = {"miou": float(i.mean()) if i.size else float("nan"), "n": int(i.size)}
    for name, member in area_group(a, ranges).items():
        out[f"miou_{name}"] = float(i[member].mean()) if member.any() else float("nan")
        out[f"n_{name}"] = int(member.sum())
    return out


class MIoUAccumulator:
    """Collects per-instance IoUs and areas over many images; ``compute()`` gives ``summarize_miou``.

    Example::

        acc = MIoUAccumulator()
        acc.update(pred_masks, gt_masks, areas)   # [K, H, W], [K, H, W], [K]
        acc.compute()["miou"]
    """

    def __init__(self, ranges: Mapping[str, tuple[float, float]] = COCO_AREA_RANGES) -> None:
        self.ranges = dict(ranges)
        self.ious: list[float] = []
        self.areas: list[float] = []

    def update(self, pred: Any, gt: Any, areas: Any | None = None) -> np.ndarray:
        """Add K instances; ``areas`` defaults to the GT masks' pixel counts. Returns their IoUs ``[K]``."""
        ious = np.atleast_1d(mask_ious(pred, gt))
        if areas is None:
            areas = as_numpy(gt).astype(bool).reshape(len(ious), -1).sum(axis=1)
        self.update_ious(ious, areas)
        return ious

    def update_ious(self, ious: Any, areas: Any) -> None:
        """Add precomputed IoUs ``[K]`` with their areas ``[K]``."""
        i = as_numpy(ious).astype(np.float64).reshape(-1)
        a = as_numpy(areas).astype(np.float64).reshape(-1)
        if i.shape != a.shape:
            raise ValueError(f"ious {i.shape} and areas {a.shape} differ in length")
        self.ious.extend(i.tolist())
        self.areas.extend(a.tolist())

    def compute(self) -> dict[str, float | int]:
        return summarize_miou(self.ious, self.areas, self.ranges)

    def reset(self) -> None:
        self.ious.clear()
        self.areas.clear()

    def __len__(self) -> int:
        return len(self.ious)
