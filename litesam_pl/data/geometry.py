"""Prompt geometry: the one home of the small rules every layer shares (numpy only, no torch).

- :func:`boundary_distance`: Euclidean distance of each mask pixel to the nearest pixel outside the mask, the array
  border counting as outside (the AutoPPN distance-transform targets, ``targets.distance_heatmap``).
- :func:`interior_point`: the mask's most interior pixel, i.e. the maximum of :func:`boundary_distance`, near-ties
  resolved to the first pixel in raster order. THE 1-point prompt everywhere: validation prompts
  (``prompts.interior_points``), the Table-5 evaluation clicker (``evaluation.prompting.interior_point_prompt``)
  and the ``point_coords`` written by ``data_prep`` converters.
- :func:`size_groups`: the paper's object groups (0 large, 1 medium, 2 small) from box and image size.
- :func:`inside_cells`: THE padding-cell rule: of a grid of cells over the padded ``S x S`` input, a cell is
  image when its centre lies inside the resized image, else padding. :func:`grid_valid` applies it to the
  stride-``s`` AutoPPN grid (the targets' ignore map), ``inference.segevery_masks`` to the decoder's low-res mask
  frame (the part SegEvery's filters and NMS read), and ``litesam_pl.models.autoppn.cells_inside`` is its torch
  twin in AutoPPN's decoding (same rule: centre ``(i + 0.5) * S / P < h``).
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

__all__ = [
    "LARGE_THRESHOLD",
    "SMALL_THRESHOLD",
    "boundary_distance",
    "interior_point",
    "size_groups",
    "inside_cells",
    "grid_valid",
]

LARGE_THRESHOLD = 0.25  # max(h/H, w/W) >= 0.25 -> large
SMALL_THRESHOLD = 0.05  # max(h/H, w/W) <= 0.05 -> small

# Relative tolerance of the interior-point maximum. OpenCV's precise transform is not bit-reproducible (last-bit
# differences from call to call), so a plain argmax picks either of two pixels at the same true distance; the first
# pixel within 1e-6 (relative) of the maximum is the same every time (distinct distances d <= 700 differ by more
# than 1/(2d) > 1e-6 d, so no pixel at a truly smaller distance is ever taken).
_TIE_RTOL = 1e-6


def boundary_distance(mask: np.ndarray) -> np.ndarray:
    """float32 ``[h, w]``: exact Euclidean distance (``cv2.DIST_MASK_PRECISE``) of each pixel of the bool / 0-1
    ``mask`` to the nearest pixel outside it, everything beyond the array border counting as outside; 0 outside."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {m.shape}")
    m = np.ascontiguousarray(m if m.dtype == np.bool_ else m != 0).view(np.uint8)
    padded = cv2.copyMakeBorder(m, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def interior_point(mask: np.ndarray) -> tuple[int, int]:
    """The pixel of a non-empty bool / 0-1 ``mask [H, W]`` farthest from its boundary, as integer ``(x, y)``
    (column, row), so ``mask[y, x]`` is True. The array border counts as boundary; ties (to 1e-6 relative) go to
    the first pixel in raster order. Cropping the mask to its box plus a one-pixel margin gives the same pixel
    (offset by the crop), which is how ``prompts.interior_points`` saves time."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {m.shape}")
    if not m.any():
        raise ValueError("cannot place a point in an empty mask")
    dist = boundary_distance(m).ravel()
    i = int(np.flatnonzero(dist >= dist.max() * np.float32(1 - _TIE_RTOL))[0])
    y, x = divmod(i, m.shape[1])
    return x, y


def size_groups(box_hw: np.ndarray, image_hw: Sequence[float], num_groups: int = 3) -> np.ndarray:
    """Size group of each box: int64 ``[N]``, 0 large, 1 medium, 2 small (all 0 when ``num_groups == 1``).

    Args:
        box_hw: ``[N, 2]`` box (height, width), in the same units as ``image_hw`` = (H, W).
    """
    box_hw = np.asarray(box_hw, np.float64).reshape(-1, 2)
    if num_groups not in (1, 3):
        raise ValueError(f"num_groups must be 1 or 3, got {num_groups}")
    if num_groups == 1:
        return np.zeros(len(box_hw), np.int64)
    extent = np.maximum(box_hw[:, 0] / float(image_hw[0]), box_hw[:, 1] / float(image_hw[1]))
    return np.where(extent >= LARGE_THRESHOLD, 0, np.where(extent <= SMALL_THRESHOLD, 2, 1)).astype(np.int64)


def inside_cells(extent: int, frame: int, cells: int) -> int:
    """How many of the ``cells`` equal cells tiling ``frame`` input pixels (padded side ``S``) have their centre
    ``(i + 0.5) * frame / cells`` inside an image ``extent`` pixels long (the resized image's ``h`` or ``w``): the
    first that many rows (or columns) are image, the rest padding. A cell is a sample at its centre (the AutoPPN
    prompt point, a target read at the cell centre, a low-res logit that bilinear upsampling places there), so a
    cell whose centre lies in the padding is padding even when the image covers part of it."""
    if cells <= 0:
        return 0
    # (i + 0.5) * frame / cells < extent  <=>  i < (2 * extent * cells - frame) / (2 * frame): count by exact ceil
    n = -((frame - 2 * extent * cells) // (2 * frame))
    return int(min(cells, max(0, n)))


def grid_valid(input_hw: Sequence[int], img_size: int, stride: int) -> tuple[int, int]:
    """Number of grid rows/columns whose cell centre ``(i + 0.5) * stride`` lies inside the unpadded image
    (:func:`inside_cells` on the ``img_size // stride`` cells of the stride-``stride`` grid)."""
    p = img_size // stride
    return inside_cells(input_hw[0], p * stride, p), inside_cells(input_hw[1], p * stride, p)
