"""AutoPPN training targets (Lite-SAM Sec. 3.3 items 2-3, Fig. 4) on the stride-``s`` grid ``P = S // s``.

Per size group ``g`` (0 large: ``max(h/H, w/W) >= 0.25``, 1 medium: in ``(0.05, 0.25)``, 2 small: ``<= 0.05``,
with ``H, W`` the image size and ``h, w`` the mask's box size):

- ``heatmap[g]``: point confidence, the distance transform of each mask of group ``g`` (distance of a cell to the
  mask boundary, divided by its maximum inside that mask, so the mask's most interior cell is 1.0); a cell inside
  several masks of the group takes the smallest one (masks are painted in order of decreasing area).
- ``boxes[g]``: (left, top, right, bottom) distances from the cell centre to the box sides of the mask owning the
  cell, divided by ``S``; ``box_weight[g]`` is 1 where a mask of group ``g`` owns the cell.
- ``ignore``: padding cells (excluded from the loss). Every other cell is supervised in every group's map: cells a
  mask of group ``g`` covers are positives of ``heatmap[g]``, all others (background and other groups' masks) are
  negatives (0), so the maps learn the "distinction between foreground and background" the paper gives as the
  reason for distance-transform targets. ``background="ignore"`` also ignores cells no mask of any group covers
  (SA-1B leaves "stuff" unlabeled; the paper's "unlabeled regions are excluded" read literally): then a 1-group map
  has no negatives at all, so the paper recipes keep the default ``"negative"`` (docs/architecture.md).

``mode="gaussian"`` gives the CenterNet-style targets of the Table 2 baseline ("New GT & Loss" off): a Gaussian at
each box centre (radius from CenterNet's ``gaussian_radius``), box targets at the centre cell only, ignore =
padding only. ``num_groups=1`` puts every mask in one group ("Object Grouping" off).

Everything works on masks already sampled at the cell centres (``bool [N, P, P]``, see
``litesam_pl.data.rle_sample``); distance transforms run per mask on its box crop of the grid.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .geometry import LARGE_THRESHOLD, SMALL_THRESHOLD, boundary_distance, grid_valid, size_groups

__all__ = [
    "LARGE_THRESHOLD",
    "SMALL_THRESHOLD",
    "size_groups",
    "grid_valid",
    "gaussian_radius",
    "distance_heatmap",
    "ppn_targets",
    "BACKGROUND_MODES",
]

TARGET_MODES = ("distance", "gaussian")
BACKGROUND_MODES = ("negative", "ignore")


def gaussian_radius(det_size: Sequence[float], min_overlap: float = 0.7) -> float:
    """CenterNet's ``gaussian_radius`` (CornerNet) for a box of (height, width), in grid cells."""
    height, width = det_size
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(max(b1**2 - 4 * c1, 0.0))) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(max(b2**2 - 16 * c2, 0.0))) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(max(b3**2 - 4 * a3 * c3, 0.0))) / 2
    return min(r1, r2, r3)


def distance_heatmap(mask: np.ndarray) -> np.ndarray:
    """Normalised distance transform of a bool mask ``[h, w]``: float32 in [0, 1], 1.0 at the most interior pixel.

    The distance is to the nearest pixel outside the mask, where everything beyond the array border counts as
    outside (a mask cut by the image border peaks inside its visible part).
    """
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return np.zeros(m.shape, np.float32)
    dt = boundary_distance(m)
    return dt * np.float32(1.0 / dt.max())


def _cell_range(lo: float, hi: float, stride: int, n: int) -> tuple[int, int]:
    """Cells (with a one-cell margin) whose centres can fall in ``[lo, hi]``, clipped to ``[0, n)``."""
    return max(int(math.floor(lo / stride)) - 1, 0), min(int(math.ceil(hi / stride)) + 1, n)


def ppn_targets(
    grid_masks: np.ndarray,
    boxes: np.ndarray,
    areas: np.ndarray,
    groups: np.ndarray,
    input_hw: Sequence[int],
    img_size: int,
    stride: int = 8,
    num_groups: int = 3,
    mode: str = "distance",
    background: str = "negative",
) -> dict[str, np.ndarray]:
    """AutoPPN targets of one image: paint the point maps mask by mask, then the box targets and the ignore map.

    Args:
        grid_masks: bool ``[N, P, P]``, each mask sampled at the cell centres ``((j + .5) s, (i + .5) s)`` (False on
            padding cells).
        boxes: float ``[N, 4]`` xyxy boxes of the masks in input pixels.
        areas: ``[N]`` mask areas (any unit: only the order matters; ties keep the annotation order).
        groups: int ``[N]`` size group of each mask (``< num_groups``).
        input_hw: (h, w) of the image after resizing, before padding.
        img_size: padded side ``S``; ``P = S // stride``.
        mode: ``"distance"`` (the paper's targets) or ``"gaussian"`` (CenterNet-style baseline).
        background: ``"negative"`` (cells outside every mask are negatives: the paper recipes) or ``"ignore"``
            (they are excluded from the point loss; ``mode="distance"`` only).

    Returns:
        ``heatmap`` float32 ``[G, P, P]``, ``boxes`` float32 ``[G, 4, P, P]``, ``box_weight`` float32 ``[G, P, P]``,
        ``ignore`` bool ``[P, P]``.
    """
    _check_modes(mode, background, num_groups)
    p = img_size // stride
    n = len(boxes)
    grid_masks = np.asarray(grid_masks, bool).reshape(n, p, p)
    boxes = np.asarray(boxes, np.float64).reshape(n, 4)
    groups = np.asarray(groups, np.int64).reshape(n)
    if n and (groups.min() < 0 or groups.max() >= num_groups):
        raise ValueError(f"groups must lie in [0, {num_groups})")
    valid_rc = grid_valid(input_hw, img_size, stride)
    order = np.argsort(-np.asarray(areas, np.float64).reshape(n), kind="stable")  # paint large first
    heat, owner = _paint_point_maps(grid_masks, boxes, groups, order, valid_rc, stride, num_groups, mode)
    box_t, weight = _box_targets(owner, boxes, stride, img_size)
    ignore = _ignore_map(owner, valid_rc, mode == "distance" and background == "ignore")
    return {"heatmap": heat, "boxes": box_t, "box_weight": weight, "ignore": ignore}


def _check_modes(mode: str, background: str, num_groups: int) -> None:
    """Raise ``ValueError`` on a target mode, background mode or group count ``ppn_targets`` does not know."""
    if mode not in TARGET_MODES:
        raise ValueError(f"unknown target mode {mode!r}; use one of {TARGET_MODES}")
    if background not in BACKGROUND_MODES:
        raise ValueError(f"unknown background mode {background!r}; use one of {BACKGROUND_MODES}")
    if background == "ignore" and mode != "distance":
        raise ValueError("background='ignore' applies to mode='distance' only (the Gaussian baseline trains on "
                         "background as CenterNet does)")
    if num_groups not in (1, 3):
        raise ValueError(f"num_groups must be 1 or 3, got {num_groups}")


def _paint_point_maps(grid_masks: np.ndarray, boxes: np.ndarray, groups: np.ndarray, order: np.ndarray,
                      valid_rc: tuple[int, int], stride: int, num_groups: int,
                      mode: str) -> tuple[np.ndarray, np.ndarray]:
    """The point maps ``heat`` float32 ``[G, P, P]`` and ``owner`` int64 ``[G, P, P]`` (the mask index owning each
    cell, -1 for none), painted mask by mask in ``order``: a later mask takes the cells it covers (a Gaussian keeps
    the larger heat)."""
    p = grid_masks.shape[1]
    rows_valid, cols_valid = valid_rc
    heat = np.zeros((num_groups, p, p), np.float32)
    owner = np.full((num_groups, p, p), -1, np.int64)
    for i in order:
        g = groups[i]
        x0, y0, x1, y1 = boxes[i]
        if mode == "distance":
            r0, r1 = _cell_range(y0, y1, stride, p)
            c0, c1 = _cell_range(x0, x1, stride, p)
            crop = grid_masks[i, r0:r1, c0:c1]
            if crop.any():
                dt = distance_heatmap(crop)
                heat[g, r0:r1, c0:c1][crop] = dt[crop]
                owner[g, r0:r1, c0:c1][crop] = i
                continue
        # gaussian mode, or a mask too small to contain any cell centre: the cell holding the box centre
        if rows_valid == 0 or cols_valid == 0:
            continue
        cy = min(max(int((y0 + y1) * 0.5 / stride), 0), rows_valid - 1)
        cx = min(max(int((x0 + x1) * 0.5 / stride), 0), cols_valid - 1)
        if mode == "distance":
            heat[g, cy, cx] = 1.0
        else:
            radius = max(0, int(gaussian_radius(((y1 - y0) / stride, (x1 - x0) / stride))))
            _draw_gaussian(heat[g], (cx, cy), radius)
        owner[g, cy, cx] = i
    return heat, owner


def _box_targets(owner: np.ndarray, boxes: np.ndarray, stride: int, img_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Box regression targets at the owned cells: (left, top, right, bottom) from the cell centre to the owner's box
    sides over ``img_size``, float32 ``[G, 4, P, P]``, and their weight float32 ``[G, P, P]`` (1 where owned)."""
    num_groups, p = owner.shape[0], owner.shape[1]
    box_t = np.zeros((num_groups, 4, p, p), np.float32)
    weight = (owner >= 0).astype(np.float32)
    gi, ri, ci = np.nonzero(owner >= 0)
    if gi.size:
        b = boxes[owner[gi, ri, ci]]
        cx, cy = (ci + 0.5) * stride, (ri + 0.5) * stride
        ltrb = np.stack([cx - b[:, 0], cy - b[:, 1], b[:, 2] - cx, b[:, 3] - cy], axis=0)
        box_t[gi, :, ri, ci] = (np.maximum(ltrb, 0.0) / img_size).T.astype(np.float32)
    return box_t, weight


def _ignore_map(owner: np.ndarray, valid_rc: tuple[int, int], unlabeled: bool) -> np.ndarray:
    """bool ``[P, P]``: the padding cells, and with ``unlabeled`` also the cells no mask of any group owns."""
    p = owner.shape[1]
    rows_valid, cols_valid = valid_rc
    pad = np.ones((p, p), bool)
    pad[:rows_valid, :cols_valid] = False
    return pad | ~(owner >= 0).any(0) if unlabeled else pad


def _draw_gaussian(heat: np.ndarray, center: tuple[int, int], radius: int) -> None:
    """CenterNet ``draw_umich_gaussian``: ``heat = max(heat, gaussian)`` around ``center`` = (x, y), in place."""
    diameter = 2 * radius + 1
    sigma = diameter / 6.0
    ax = np.arange(-radius, radius + 1, dtype=np.float32)
    g = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * sigma * sigma))
    g[g < np.finfo(g.dtype).eps * g.max()] = 0
    x, y = center
    h, w = heat.shape
    left, right = min(x, radius), min(w - x, radius + 1)
    top, bottom = min(y, radius), min(h - y, radius + 1)
    region = heat[y - top:y + bottom, x - left:x + right]
    np.maximum(region, g[radius - top:radius + bottom, radius - left:radius + right], out=region)
