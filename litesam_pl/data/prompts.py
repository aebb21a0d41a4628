"""SegAny prompt sampling (SAM-style training prompts) for the K target masks of an image.

- :func:`choose_masks`: up to K mask indices, random (seedable ``np.random.Generator``) or deterministic.
- :func:`noisy_boxes`: box prompts = the mask's box plus SAM's training noise (each coordinate gets Gaussian noise
  with std ``box_noise`` x the box side, clipped to ``box_noise_max`` pixels), kept inside the image.
- :func:`random_points`: one point drawn uniformly among the mask's pixels.
- :func:`interior_points`: the mask's most interior pixel (``geometry.interior_point``), for validation.

Points are integer pixel indices ``(x, y)`` in input pixels (SAM's prompt encoder adds the 0.5 itself), so
``mask[y, x]`` is True.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .geometry import interior_point

__all__ = ["choose_masks", "noisy_boxes", "random_points", "interior_points", "box_window"]


def choose_masks(num: int, k: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Order in which to try the ``num`` masks of an image for the K targets: a random permutation with ``rng``,
    else annotation order. The caller takes the first K usable ones (some vanish after resizing)."""
    if rng is None:
        return np.arange(num, dtype=np.int64)
    return rng.permutation(num).astype(np.int64)


def noisy_boxes(
    boxes: np.ndarray,
    input_hw: Sequence[int],
    rng: np.random.Generator | None,
    box_noise: float = 0.1,
    box_noise_max: float = 20.0,
) -> np.ndarray:
    """SAM-style noisy box prompts: float32 ``[K, 4]`` xyxy.

    Each of x0, x1 gets ``N(0, (box_noise * w)^2)`` noise and each of y0, y1 ``N(0, (box_noise * h)^2)``, every
    noise value clipped to ``[-box_noise_max, box_noise_max]`` pixels; the result is clipped to the image
    ``[0, w_in] x [0, h_in]`` and kept at least one pixel wide and tall. ``rng=None`` or ``box_noise=0`` returns
    the (clipped) boxes unchanged.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
    if rng is not None and box_noise > 0 and len(b):
        bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        std = box_noise * np.maximum(np.stack([bw, bh, bw, bh], axis=1), 0.0)  # x0, y0, x1, y1
        noise = rng.standard_normal(b.shape) * std
        b += np.clip(noise, -box_noise_max, box_noise_max)
    h, w = float(input_hw[0]), float(input_hw[1])
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0.0, w)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0.0, h)
    x0, x1 = np.minimum(b[:, 0], b[:, 2]), np.maximum(b[:, 0], b[:, 2])
    y0, y1 = np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 1], b[:, 3])
    # keep a positive size; grow inside the image when a coordinate sits on the border
    x1 = np.maximum(x1, np.minimum(x0 + 1.0, w))
    x0 = np.minimum(x0, x1 - 1.0)
    y1 = np.maximum(y1, np.minimum(y0 + 1.0, h))
    y0 = np.minimum(y0, y1 - 1.0)
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.float32)


def box_window(box: np.ndarray, shape: Sequence[int]) -> tuple[int, int, int, int]:
    """Integer window (y0, y1, x0, x1) around an xyxy box, one pixel of margin, clipped to ``shape`` = (H, W)."""
    y0 = max(int(np.floor(box[1])) - 1, 0)
    x0 = max(int(np.floor(box[0])) - 1, 0)
    y1 = min(int(np.ceil(box[3])) + 1, shape[0])
    x1 = min(int(np.ceil(box[2])) + 1, shape[1])
    return y0, y1, x0, x1


def random_points(masks: np.ndarray, boxes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One point per mask, uniform over its pixels: float32 ``[K, 1, 2]`` (x, y).

    Args:
        masks: bool ``[K, H, W]`` (non-empty).
        boxes: ``[K, 4]`` xyxy boxes containing the masks (only used to search a smaller window).
    """
    out = np.zeros((len(masks), 1, 2), np.float32)
    for k, (m, box) in enumerate(zip(masks, boxes)):
        y0, y1, x0, x1 = box_window(box, m.shape)
        ys, xs = np.nonzero(m[y0:y1, x0:x1])
        if ys.size == 0:  # box did not contain the mask (should not happen): search everywhere
            ys, xs = np.nonzero(m)
            y0 = x0 = 0
        if ys.size == 0:
            raise ValueError(f"mask {k} is empty: cannot place a point prompt")
        j = int(rng.integers(ys.size))
        out[k, 0] = (x0 + xs[j], y0 + ys[j])
    return out


def interior_points(masks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The most interior pixel of each mask (:func:`litesam_pl.data.geometry.interior_point`, searched in the box
    window, which gives the same pixel): float32 ``[K, 1, 2]`` (x, y). Deterministic point prompts for validation."""
    out = np.zeros((len(masks), 1, 2), np.float32)
    for k, (m, box) in enumerate(zip(masks, boxes)):
        y0, y1, x0, x1 = box_window(box, m.shape)
        crop = m[y0:y1, x0:x1]
        if not crop.any():  # box did not contain the mask (should not happen): search everywhere
            crop, y0, x0 = m, 0, 0
        if not crop.any():
            raise ValueError(f"mask {k} is empty: cannot place a point prompt")
        x, y = interior_point(crop)
        out[k, 0] = (x0 + x, y0 + y)
    return out
