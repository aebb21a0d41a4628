"""One SA-1B sample of ``data_prep.sa1b``: check it, shrink it to ``--max-side`` and re-encode it (``process_sample``),
or raise ``SkipSample`` with the reason the manifest counts. ``PrepConfig`` holds every setting that changes the
output bytes.
"""
from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import cv2
import numpy as np

from litesam_pl.data.rle import decode_rle, encode_mask, resize_mask, rle_to_bbox
from litesam_pl.data.transforms import pil_decode

from ._common import dump_json, is_jpeg
from .sa1b_inputs import check_hash_range

__all__ = [
    "PrepConfig", "SkipSample", "decode_image_or_skip", "read_image_bytes_or_skip", "resized_hw", "process_sample",
]


@dataclass(frozen=True)
class PrepConfig:
    """Everything that changes the bytes of the output shards (the state files pin it)."""

    max_side: int = 1024
    hash_lo: float = 0.0  # keep an image when hash_lo <= u < hash_hi (see ``in_hash_range``)
    hash_hi: float = 1.0
    seed: int = 0
    shard_size: int = 1000
    quality: int = 90

    def __post_init__(self):
        if self.max_side < 1:
            raise ValueError(f"max_side must be >= 1, got {self.max_side}")
        check_hash_range(self.hash_lo, self.hash_hi)
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be in [1, 100], got {self.quality}")


class SkipSample(Exception):
    """A sample that cannot be used; ``reason`` is the manifest's ``skipped`` key."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def read_image_bytes_or_skip(path: Path, skipped: Counter) -> Optional[Tuple[bytes, np.ndarray]]:
    """A converter's input photo: its bytes (what the shard stores) and RGB ``uint8 [H, W, 3]``, or None after
    counting the reason (``corrupt_image``) in ``skipped``."""
    data = path.read_bytes()
    try:
        return data, decode_image_or_skip(data)
    except SkipSample as e:
        skipped[e.reason] += 1
        return None


def decode_image_or_skip(data: bytes) -> np.ndarray:
    """Decode an image to RGB ``uint8 [H, W, 3]`` with ``litesam_pl.data.transforms.pil_decode`` (PIL, as stored:
    the converters' annotations refer to the stored pixel grid, so no EXIF orientation as SegEvery's
    ``inference.images.load_image`` applies; 16-bit keeps its top 8 bits); raises ``SkipSample('corrupt_image')``,
    also on a truncated JPEG (which PIL may decode with grey rows)."""
    try:
        arr = pil_decode(io.BytesIO(data))
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
        raise SkipSample("corrupt_image", str(e)) from e
    if is_jpeg(data) and data.rstrip(b"\x00\n\r ")[-2:] != b"\xff\xd9":
        raise SkipSample("corrupt_image", "jpeg without end-of-image marker (truncated)")
    return arr


def resized_hw(h: int, w: int, max_side: int) -> tuple[int, int]:
    """Size after shrinking the long side to ``max_side`` (SAM's ResizeLongestSide rounding); never upscales."""
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return h, w
    return int(h * scale + 0.5), int(w * scale + 0.5)


def _read_record(js: bytes) -> tuple[dict, list, int, int]:
    """``(record, annotations, height, width)`` of the sample's json; ``SkipSample('bad_json' | 'no_masks')``."""
    try:
        rec = json.loads(js)
        image, anns = rec["image"], rec["annotations"]
        h0, w0 = int(image["height"]), int(image["width"])
        if not isinstance(anns, list):
            raise TypeError("annotations is not a list")
    except Exception as e:
        raise SkipSample("bad_json", str(e)) from e
    if not anns:
        raise SkipSample("no_masks")
    return rec, anns, h0, w0


def _check_rles(anns: list, h0: int, w0: int) -> None:
    """Every annotation has an RLE of the image's size; ``SkipSample('bad_json' | 'rle_size_mismatch')``."""
    for a in anns:
        seg = a.get("segmentation") if isinstance(a, dict) else None
        if not isinstance(seg, dict) or "size" not in seg or "counts" not in seg:
            raise SkipSample("bad_json", "annotation without an RLE segmentation")
        if list(seg["size"]) != [h0, w0]:
            raise SkipSample("rle_size_mismatch", f"rle {seg['size']} vs image {[h0, w0]}")


def _resize_annotations(anns: list, hw0: tuple[int, int], hw: tuple[int, int], stats: Counter | None) -> list:
    """The annotations at size ``hw``: masks area-resampled and re-encoded, ``bbox`` / ``area`` from the new mask,
    ``point_coords`` / ``crop_box`` scaled; masks that vanish are dropped (``stats["masks_dropped_empty"]``)."""
    (h0, w0), (h, w) = hw0, hw
    sx, sy = w / w0, h / h0
    out_anns = []
    for a in anns:
        try:
            m = decode_rle(a["segmentation"])
        except ValueError as e:
            raise SkipSample("bad_rle", str(e)) from e
        if (h, w) != (h0, w0):
            m = resize_mask(m, (h, w), "area")
        area = int(m.sum())
        if area == 0:
            if stats is not None:
                stats["masks_dropped_empty"] += 1
            continue
        rle = encode_mask(m)
        b = dict(a)
        b["segmentation"] = rle
        b["bbox"] = rle_to_bbox(rle)
        b["area"] = area
        if "point_coords" in a:
            b["point_coords"] = [[float(p[0]) * sx, float(p[1]) * sy] for p in a["point_coords"]]
        if "crop_box" in a:
            x, y, bw, bh = (float(v) for v in a["crop_box"])
            b["crop_box"] = [x * sx, y * sy, bw * sx, bh * sy]
        out_anns.append(b)
    return out_anns


def _encode_jpg(jpg: bytes, img: np.ndarray, hw: tuple[int, int], quality: int) -> bytes:
    """The output jpg: the original bytes when the size is unchanged and they are a jpeg, else resized (area) and
    encoded at ``quality``."""
    h, w = hw
    if img.shape[:2] == (h, w) and is_jpeg(jpg):
        return jpg
    if img.shape[:2] != (h, w):
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    ok, enc = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("cv2.imencode failed")
    return enc.tobytes()


def process_sample(jpg: bytes | None, js: bytes | None, cfg: PrepConfig, stats: Counter | None = None) -> tuple[bytes, bytes]:
    """Check, resize and re-encode one SA-1B sample; returns ``(jpg bytes, json bytes)`` or raises ``SkipSample``.

    ``stats`` (if given) counts per-mask events (``masks_dropped_empty``).
    """
    if js is None:
        raise SkipSample("missing_json")
    if jpg is None:
        raise SkipSample("missing_image")
    rec, anns, h0, w0 = _read_record(js)
    img = decode_image_or_skip(jpg)
    if img.shape[:2] != (h0, w0):
        raise SkipSample("image_size_mismatch", f"jpg {img.shape[:2]} vs json {(h0, w0)}")
    _check_rles(anns, h0, w0)
    h, w = resized_hw(h0, w0, cfg.max_side)
    out_anns = _resize_annotations(anns, (h0, w0), (h, w), stats)
    if not out_anns:
        raise SkipSample("no_masks", "every mask vanished at the new size")
    out_rec = dict(rec)
    out_rec["image"] = {**rec["image"], "width": w, "height": h}
    out_rec["annotations"] = out_anns
    return _encode_jpg(jpg, img, (h, w), cfg.quality), dump_json(out_rec)
