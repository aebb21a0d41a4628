"""COCO run-length encoding helpers (on ``pycocotools.mask``), shared by ``data_prep`` and the online loader.

An RLE here is the SA-1B / COCO dict ``{"size": [h, w], "counts": str}`` (compressed counts). ``decode_rle`` also
accepts ``bytes`` counts and uncompressed ``list[int]`` counts (COCO ``iscrowd`` annotations).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import cv2
import numpy as np
from pycocotools import mask as mask_utils

__all__ = ["encode_mask", "decode_rle", "rle_to_json", "resize_rle", "resize_mask", "rle_area", "rle_to_bbox", "to_coco_rle"]


def _compressed_total(counts: bytes) -> int:
    """Sum of the run lengths of a compressed COCO RLE string (vectorised ``rleFrString``); -1 if malformed."""
    c = np.frombuffer(counts, np.uint8).astype(np.int64) - 48
    if c.size == 0 or c.min() < 0 or c.max() > 63 or c[-1] & 0x20:
        return -1
    end = (c & 0x20) == 0  # a value ends at a char without the continuation bit
    group = np.concatenate([[0], np.cumsum(end)[:-1]])
    starts = np.flatnonzero(np.concatenate([[True], end[:-1]]))
    pos = np.arange(c.size) - starts[group]  # 5-bit digit index inside its value
    if pos.max() > 11:
        return -1
    x = np.add.reduceat((c & 0x1F) << (5 * pos), starts)
    last = c[end]
    neg = (last & 0x10) != 0
    x = np.where(neg, x | (-1 << (5 * (pos[end] + 1))), x)  # sign extension
    for first in (1, 2):  # counts[m] += counts[m - 2] for m > 2: running sums over odd and even indices
        x[first::2] = np.cumsum(x[first::2])
    if x.size and x.min() < 0:
        return -1
    return int(x.sum())


def to_coco_rle(rle: Mapping[str, Any], check: bool = True) -> dict:
    """Normalise ``rle`` to what ``pycocotools`` wants: compressed counts as ``bytes``.

    Raises ``ValueError`` on a malformed RLE (no ``size``/``counts``, runs that do not sum to ``h * w``).
    ``check=False`` skips the run-sum check of compressed strings (~50 us each; pycocotools itself only catches
    runs that overflow the image, not ones that stop short).
    """
    if not isinstance(rle, Mapping) or "size" not in rle or "counts" not in rle:
        raise ValueError(f"not an RLE dict with 'size' and 'counts': {type(rle).__name__}")
    size = rle["size"]
    if len(size) != 2 or int(size[0]) < 0 or int(size[1]) < 0:
        raise ValueError(f"bad RLE size {size!r}")
    h, w = int(size[0]), int(size[1])
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        b = counts.encode("ascii") if isinstance(counts, str) else counts
        total = _compressed_total(b) if check else h * w
        if total != h * w:  # pycocotools would read past the runs (garbage) or fail
            raise ValueError(f"compressed RLE runs sum to {total}, expected {h * w} for size {[h, w]}")
        return {"size": [h, w], "counts": b}
    if isinstance(counts, (list, tuple)):
        if sum(int(c) for c in counts) != h * w:
            raise ValueError(f"uncompressed RLE counts sum to {sum(counts)}, expected {h * w} for size {[h, w]}")
        return mask_utils.frPyObjects({"size": [h, w], "counts": [int(c) for c in counts]}, h, w)
    raise ValueError(f"bad RLE counts type {type(counts).__name__}")


def encode_mask(mask: np.ndarray) -> dict:
    """Encode a bool/0-1 mask ``[H, W]`` as ``{"size": [H, W], "counts": str}`` (COCO compressed RLE)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"encode_mask expects a 2-D [H, W] mask, got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8, copy=False)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def rle_to_json(rle: Mapping[str, Any]) -> dict:
    """Any RLE dict (``str`` / ``bytes`` / uncompressed ``list[int]`` counts) in its JSON form
    ``{"size": [h, w], "counts": str}`` (compressed). No run-sum check (see :func:`to_coco_rle`)."""
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    elif isinstance(counts, list):
        h, w = rle["size"]
        counts = mask_utils.frPyObjects(dict(rle), h, w)["counts"].decode("ascii")
    return {"size": [int(v) for v in rle["size"]], "counts": counts}


def _decode(rle: Mapping[str, Any]) -> np.ndarray:
    """Decode to a bool ``[H, W]`` mask in pycocotools' Fortran order (no copy)."""
    coco = to_coco_rle(rle)
    h, w = coco["size"]
    if h * w == 0:
        return np.zeros((h, w), dtype=bool)
    try:
        m = mask_utils.decode(coco)
    except Exception as e:  # pycocotools raises bare exceptions on garbage counts
        raise ValueError(f"cannot decode RLE of size {[h, w]}: {e}") from e
    if m.shape != (h, w):
        raise ValueError(f"RLE decoded to shape {m.shape}, expected {(h, w)}")
    return m.view(bool)


def decode_rle(rle: Mapping[str, Any]) -> np.ndarray:
    """Decode an RLE dict (compressed ``str``/``bytes`` or uncompressed ``list`` counts) to a bool mask ``[H, W]``
    (C-contiguous); a malformed RLE raises ``ValueError``. The one RLE decoder (``inference.postprocess``
    re-exports it)."""
    return np.ascontiguousarray(_decode(rle))


def _cell_edges(lo: int, hi: int, n_in: int, n_out: int) -> tuple[np.ndarray, int]:
    """Edges (in source pixels, relative to ``lo``) of the output cells that overlap source ``[lo, hi)``, clipped
    to it, and the index of the first such cell; ``n_in`` source pixels map onto ``n_out`` cells."""
    inv = n_in / n_out
    o0 = int(np.floor(lo / inv))
    o1 = min(n_out, int(np.ceil(hi / inv)))
    return np.clip(np.arange(o0, o1 + 1, dtype=np.float64) * inv, lo, hi) - lo, o0


def _lerp(table: np.ndarray, t: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of ``table`` at fractional indices ``t`` along ``axis``."""
    k = np.minimum(np.floor(t).astype(np.int64), table.shape[axis] - 2)
    f = t - k
    shape = [1, 1]
    shape[axis] = -1
    a = np.take(table, k, axis).astype(np.float64)
    return a + (np.take(table, k + 1, axis) - a) * f.reshape(shape)


def resize_mask(mask: np.ndarray, new_hw: Sequence[int], mode: str = "area") -> np.ndarray:
    """Resize a bool mask ``[H, W]`` to ``new_hw`` = (h, w).

    ``mode="area"``: box-filter coverage (the pixel-area average ``cv2.INTER_AREA`` computes when shrinking)
    thresholded at 0.5; small masks are worked out on their bounding box only (thin parts may vanish).
    ``mode="nearest"``: nearest-neighbour sampling.
    """
    h, w = int(new_hw[0]), int(new_hw[1])
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"resize_mask expects a 2-D [H, W] mask, got shape {mask.shape}")
    if mask.shape == (h, w):
        return mask.copy()
    if h <= 0 or w <= 0:
        raise ValueError(f"bad target size {new_hw!r}")
    if mode == "nearest":
        return cv2.resize(np.ascontiguousarray(mask).view(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    if mode != "area":
        raise ValueError(f"unknown resize mode {mode!r} (use 'area' or 'nearest')")
    if not mask.flags.c_contiguous and mask.T.flags.c_contiguous:  # pycocotools' Fortran order: work transposed
        return resize_mask(mask.T, (w, h), mode).T
    out = np.zeros((h, w), bool)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return out
    H, W = mask.shape
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    if (y1 - y0) * (x1 - x0) * 4 > H * W:  # a big mask: OpenCV's area resize of the whole mask is faster
        return cv2.resize(mask.view(np.uint8) * np.uint8(255), (w, h), interpolation=cv2.INTER_AREA) >= 128
    # The integral image of a piecewise-constant mask is bilinear inside each pixel, so the exact coverage of an
    # output cell is four bilinear look-ups of cv2.integral on the mask's bounding box.
    integral = cv2.integral(np.ascontiguousarray(mask[y0:y1, x0:x1]).view(np.uint8))  # int32, exact
    ty, oy = _cell_edges(y0, y1, H, h)
    tx, ox = _cell_edges(x0, x1, W, w)
    k = _lerp(_lerp(integral, ty, 0), tx, 1)
    cov = (k[1:, 1:] - k[:-1, 1:] - k[1:, :-1] + k[:-1, :-1]) / ((H / h) * (W / w))
    out[oy:oy + cov.shape[0], ox:ox + cov.shape[1]] = cov >= 0.5 - 1e-9
    return out


def resize_rle(rle: Mapping[str, Any], new_hw: Sequence[int], mode: str = "area") -> dict:
    """Decode ``rle``, resize the mask to ``new_hw`` = (h, w) (see ``resize_mask``) and re-encode it."""
    return encode_mask(resize_mask(_decode(rle), new_hw, mode))


def rle_area(rle: Mapping[str, Any]) -> int:
    """Number of foreground pixels of ``rle``."""
    return int(mask_utils.area(to_coco_rle(rle, check=False)))


def rle_to_bbox(rle: Mapping[str, Any]) -> list[float]:
    """Tight box ``[x, y, w, h]`` (pixels, COCO convention) of ``rle``; ``[0, 0, 0, 0]`` when empty."""
    return [float(v) for v in mask_utils.toBbox(to_coco_rle(rle, check=False))]
