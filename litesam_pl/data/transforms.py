"""Image decoding and SAM-style geometry: resize the longest side to ``S``, optional flip, pad bottom/right.

One :class:`Geometry` per sample maps *output* (resized, flipped) continuous coordinates back to source pixels, so the
image, every mask (sampled straight from its RLE, see :mod:`litesam_pl.data.rle_sample`), boxes and the AutoPPN grid
all use the same mapping and stay aligned. Pixel ``j`` of the output covers ``[j, j + 1)``; its centre ``j + 0.5``
maps to source pixel ``floor((j + 0.5) / scale)`` (nearest-neighbour for masks).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import cv2
import numpy as np
import torch

from ..constants import PIXEL_MEAN, PIXEL_STD  # re-exported: the model input's normalisation, defined there

__all__ = [
    "PIXEL_MEAN",
    "PIXEL_STD",
    "Geometry",
    "decode_image",
    "pil_decode",
    "pil_array",
    "pil_rgb8",
    "to_rgb8",
    "preprocess_shape",
    "pad_image",
    "normalize_images",
    "normalize_batch",
    "reduce_factor",
]



def preprocess_shape(h: int, w: int, long_side: int) -> tuple[int, int]:
    """SAM's ``ResizeLongestSide.get_preprocess_shape``: (h, w) with the longest side scaled to ``long_side``."""
    scale = long_side * 1.0 / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def reduce_factor(h: int, w: int, long_side: int) -> int:
    """Largest JPEG DCT reduction (1, 2, 4 or 8) that still leaves the longest side at least ``long_side``."""
    f = 1
    while f < 8 and max(h, w) / (2 * f) >= long_side:
        f *= 2
    return f


_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}


#: PIL modes holding 16-bit (or wider integer) pixels; :func:`pil_array` reads them as uint16.
PIL_HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")


def pil_array(im) -> np.ndarray:
    """A PIL image's pixels as an array; 16-bit and 32-bit integer modes as native ``uint16`` (clipped to
    0..65535), so that :func:`to_rgb8` keeps their top 8 bits like any other 16-bit image."""
    if im.mode in PIL_HIGH_BIT_MODES:
        return np.clip(np.asarray(im), 0, 65535).astype(np.uint16)
    return np.asarray(im)


def to_rgb8(array: np.ndarray, name: str = "image", error: type = ValueError) -> np.ndarray:
    """The one pixel conversion: any ``[H, W]``, ``[H, W, 1|2|3|4]`` array (uint8/uint16/int/float/bool) -> RGB
    ``uint8 [H, W, 3]``. Every image reader (the SA-1B loader's :func:`decode_image`, SegEvery's
    ``inference.images.load_image``, ``data_prep``) ends here.

    uint16 keeps its top 8 bits (``>> 8``); other integers are kept when in 0..255, shifted ``>> 8`` when in
    0..65535, else min-max scaled; floats are taken as [0, 1] when their max is <= 1, else min-max scaled; grey is
    repeated, alpha dropped. An unusable array raises ``error`` (a ``ValueError`` class) with a message naming
    ``name``."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[2] == 2:  # grey + alpha
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise error(f"{name}: unsupported image shape {a.shape} (expected HxW, HxWx1..4)")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise error(f"{name}: empty image of shape {a.shape}")
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint8:
        pass
    elif a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer):  # e.g. PIL mode "I" (int32) from a 16-bit grey PNG
        lo, hi = float(a.min()), float(a.max())
        if lo >= 0 and hi <= 255:
            a = a.astype(np.uint8)
        elif lo >= 0 and hi <= 65535:
            a = (a.astype(np.uint32) >> 8).astype(np.uint8)
        else:
            a = ((a.astype(np.float64) - lo) * (255.0 / max(hi - lo, 1.0))).round().astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        f = np.nan_to_num(a.astype(np.float64))
        lo, hi = float(f.min()), float(f.max())
        if lo >= 0.0 and hi <= 1.0:
            f = f * 255.0
        elif hi > lo:
            f = (f - lo) * (255.0 / (hi - lo))
        else:
            f = np.zeros_like(f)
        a = np.clip(f, 0, 255).round().astype(np.uint8)
    else:
        raise error(f"{name}: unsupported pixel type {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return np.ascontiguousarray(a)


def pil_rgb8(im, name: str = "image", error: type = ValueError) -> np.ndarray:
    """A loaded PIL image as RGB ``uint8 [H, W, 3]``, the one rule of every PIL reader: 16/32-bit integer modes
    through :func:`pil_array` and :func:`to_rgb8` (top 8 bits), every other mode through PIL's RGB conversion
    (palette, CMYK, YCbCr; alpha dropped). The array may be read-only."""
    if im.mode in PIL_HIGH_BIT_MODES:
        return to_rgb8(pil_array(im), name, error)
    return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))


def pil_decode(source: Any, name: str = "image", error: type = ValueError,
               modes: Sequence[str] | None = None) -> np.ndarray:
    """Decode an image file with PIL, as stored (no EXIF orientation: the pixel grid annotations refer to), to
    uint8 RGB ``[H, W, 3]`` through :func:`pil_rgb8` (the array may be read-only). The one PIL decode of the
    evaluation sets (``data.coco.read_rgb``, from a path), of ``data_prep``'s inputs
    (``sa1b_sample.decode_image_or_skip``, from bytes) and of :func:`decode_image`'s fallback.

    ``source``: a path or a binary file object (``io.BytesIO(data)``). ``modes``: the PIL modes accepted (another
    raises ``error`` naming ``name``); None accepts any. PIL's own errors (``OSError``, ``SyntaxError``, ...) pass.
    :func:`decode_image` (OpenCV first, bytes) is the SA-1B loader's faster decoder, and
    ``inference.images.load_image`` SegEvery's (EXIF orientation, a pixel limit, OpenCV as fallback).
    """
    from PIL import Image

    with Image.open(source) as im:
        im.load()
        if modes is not None and im.mode not in modes:
            raise error(f"{name}: unsupported image mode {im.mode!r}")
        return pil_rgb8(im, name, error)


def decode_image(data: bytes, reduce: int = 1) -> np.ndarray:
    """Decode an encoded image (jpg/png/...) of any mode to uint8 RGB ``[H, W, 3]``: the SA-1B loader's decoder.

    OpenCV first (fast, and ``reduce`` in (1, 2, 4, 8) asks the JPEG decoder for a 1/reduce-size image: much
    faster for big SA-1B jpgs), then :func:`pil_decode` for what OpenCV does not read. A JPEG's pixels may differ
    from PIL's by a grey level (another IDCT / chroma upsampling); the readers that must match PIL use
    :func:`pil_decode` (``data.coco.read_rgb``, ``data_prep``), SegEvery's ``inference.images.load_image`` also
    applies EXIF orientation. Raises ``ValueError`` when the bytes are not a decodable image.
    """
    if not data:
        raise ValueError("empty image bytes")
    arr = np.frombuffer(data, np.uint8)
    img = None
    is_jpeg = data[:3] == b"\xff\xd8\xff"
    if is_jpeg:  # colour 8-bit decode (handles grey/CMYK jpgs) with optional DCT-domain downscale
        img = cv2.imdecode(arr, _REDUCED.get(int(reduce), cv2.IMREAD_COLOR))
        if img is not None:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img is None:
        img = cv2.imdecode(arr, cv2.IMREAD_UNCHANGED)
        if img is not None:
            if img.ndim == 3 and img.shape[2] >= 3:
                img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)
            img = to_rgb8(img, "decoded image")
    if img is None:  # let PIL try formats OpenCV does not read (palette modes, odd TIFFs, ...)
        try:
            img = pil_decode(io.BytesIO(data), "decoded image")
        except Exception as e:  # noqa: BLE001 - any failure means "not an image"
            raise ValueError(f"cannot decode image ({len(data)} bytes): {e}") from e
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"decoded image has an unexpected shape {img.shape}")
    return img


@dataclass(frozen=True)
class Geometry:
    """Resize-longest-side (+ optional horizontal flip) of one sample.

    Args:
        orig_hw: (H, W) of the source image (the JSON / RLE size).
        input_hw: (h, w) after resizing, before padding (``h, w <= img_size``).
        img_size: padded square side ``S``.
        hflip: whether the output is mirrored left-right.
    """

    orig_hw: tuple[int, int]
    input_hw: tuple[int, int]
    img_size: int
    hflip: bool = False

    @classmethod
    def make(cls, orig_hw: Sequence[int], img_size: int, scale: float = 1.0, hflip: bool = False) -> "Geometry":
        """Longest side to ``round(img_size * scale)`` (``scale <= 1`` is the train-time scale jitter)."""
        H, W = int(orig_hw[0]), int(orig_hw[1])
        if H <= 0 or W <= 0:
            raise ValueError(f"bad image size {(H, W)}")
        long_side = max(1, min(int(img_size), int(round(img_size * float(scale)))))
        return cls((H, W), preprocess_shape(H, W, long_side), int(img_size), bool(hflip))

    @property
    def sy(self) -> float:
        return self.input_hw[0] / self.orig_hw[0]

    @property
    def sx(self) -> float:
        return self.input_hw[1] / self.orig_hw[1]

    def src_rows(self, y: np.ndarray) -> np.ndarray:
        """Source row index of output y coordinates (continuous): int64."""
        return np.clip(np.floor(np.asarray(y, np.float64) / self.sy), 0, self.orig_hw[0] - 1).astype(np.int64)

    def src_cols(self, x: np.ndarray) -> np.ndarray:
        """Source column index of output x coordinates (continuous, after the flip): int64."""
        x = np.asarray(x, np.float64)
        if self.hflip:
            x = self.input_hw[1] - x
        return np.clip(np.floor(x / self.sx), 0, self.orig_hw[1] - 1).astype(np.int64)

    def pixel_rows(self) -> np.ndarray:
        """Source row of every output pixel row ``[h]``."""
        return self.src_rows(np.arange(self.input_hw[0]) + 0.5)

    def pixel_cols(self) -> np.ndarray:
        """Source column of every output pixel column ``[w]``."""
        return self.src_cols(np.arange(self.input_hw[1]) + 0.5)

    def boxes(self, xywh: np.ndarray) -> np.ndarray:
        """Source boxes ``[N, 4]`` (COCO x, y, w, h) -> output xyxy float32 ``[N, 4]``."""
        b = np.asarray(xywh, np.float64).reshape(-1, 4)
        x0, x1 = b[:, 0] * self.sx, (b[:, 0] + b[:, 2]) * self.sx
        y0, y1 = b[:, 1] * self.sy, (b[:, 1] + b[:, 3]) * self.sy
        if self.hflip:
            x0, x1 = self.input_hw[1] - x1, self.input_hw[1] - x0
        return np.stack([x0, y0, x1, y1], axis=1).astype(np.float32)

    def image(self, img: np.ndarray) -> np.ndarray:
        """Resize (and flip) an RGB image of the source (or a 1/k-reduced decode of it) to ``input_hw``."""
        h, w = self.input_hw
        if img.shape[:2] != (h, w):
            # bilinear up to a 2x shrink (6x cheaper than INTER_AREA; big JPEGs arrive DCT-reduced so the factor
            # left is < 2), area averaging beyond, where bilinear would alias
            strong = img.shape[0] > 2 * h or img.shape[1] > 2 * w
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if strong else cv2.INTER_LINEAR)
        if self.hflip:
            img = cv2.flip(img, 1)
        return img


def pad_image(img: np.ndarray, img_size: int, out: torch.Tensor | None = None, out_zeroed: bool = False
              ) -> torch.Tensor:
    """uint8 RGB ``[h, w, 3]`` -> uint8 ``[3, S, S]``, zero-padded bottom/right: the batch's ``image`` (see
    ``docs/contracts.md``; :func:`normalize_images` turns it into ``Sam.preprocess``'s float32 input on the device).

    ``out``: an optional uint8 ``[3, S, S]`` tensor to write into (e.g. a slot of a shared-memory batch);
    ``out_zeroed``: it is known to be all zeros already (the padding is then left untouched). The planes are split
    with ``cv2.split`` straight into the output (~0.05 ms for 640x480, 5x less than numpy's strided transpose).
    """
    h, w = img.shape[:2]
    if h > img_size or w > img_size:
        raise ValueError(f"image {h}x{w} larger than img_size {img_size}")
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"pad_image expects a uint8 [h, w, 3] image, got {img.dtype} {img.shape}")
    if out is None:
        out = torch.from_numpy(np.zeros((3, img_size, img_size), np.uint8))
    planes = out.numpy()
    if not out_zeroed:
        planes[:, h:] = 0
        planes[:, :h, w:] = 0
    dst = [planes[c, :h, :w] for c in range(3)]
    res = cv2.split(img, dst)
    for d, r in zip(dst, res):
        if not np.shares_memory(r, d):  # OpenCV could not write into the strided view
            d[...] = r
    return out


_MEAN_STD: dict = {}


def _mean_std(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``PIXEL_MEAN`` / ``PIXEL_STD`` as float32 ``[1, 3, 1, 1]`` tensors on ``device``, copied there once (no host
    copy, hence no stream synchronisation, per batch)."""
    key = str(device)
    if key not in _MEAN_STD:
        _MEAN_STD[key] = (torch.tensor(PIXEL_MEAN, dtype=torch.float32).view(1, 3, 1, 1).to(device),
                          torch.tensor(PIXEL_STD, dtype=torch.float32).view(1, 3, 1, 1).to(device))
    return _MEAN_STD[key]


def normalize_images(image: torch.Tensor, input_size: torch.Tensor | None) -> torch.Tensor:
    """uint8 ``[B, 3, S, S]`` (or ``[3, S, S]``) images of the batch contract -> float32, on their device:
    ``(x - mean) / std`` in float32 (subtract, then true division: the values of ``Sam.preprocess`` and of the
    loader's former float32 images, bit for bit), then 0.0 outside ``input_size`` (``[B, 2]`` / ``[2]``, the
    (h, w) before padding), as ``Sam.preprocess`` pads *after* normalising. Float images are returned unchanged.

    The one place images are normalised for the model: ``LiteSAMTaskBase.on_after_batch_transfer`` calls it (via
    :func:`normalize_batch`) after the batch reached the GPU, so only uint8 pixels cross shared memory and PCIe.
    """
    if image.is_floating_point():
        return image
    if image.dtype != torch.uint8:
        raise TypeError(f"batch images must be uint8 (or already-normalised float), got {image.dtype}")
    if input_size is None:
        raise ValueError("uint8 batch images need the batch's input_size (the size before padding) to be normalised")
    single = image.dim() == 3
    x = image.unsqueeze(0) if single else image
    hw = torch.as_tensor(input_size, device=x.device).reshape(-1, 2)
    if hw.shape[0] != x.shape[0]:
        raise ValueError(f"input_size has {hw.shape[0]} rows for {x.shape[0]} images")
    mean, std = _mean_std(x.device)
    # in place on the one float32 copy; tensor / tensor is a true division (CUDA turns a division by a CPU scalar
    # into a product with its reciprocal, which would change last bits)
    out = x.to(torch.float32).sub_(mean).div_(std)
    H, W = x.shape[-2:]
    rows = torch.arange(H, device=x.device)[None, :] < hw[:, :1]  # [B, H]
    cols = torch.arange(W, device=x.device)[None, :] < hw[:, 1:]  # [B, W]
    pad = ~(rows[:, :, None] & cols[:, None, :])  # [B, H, W]: True on the padding
    out.masked_fill_(pad[:, None], 0.0)  # +0.0, as Sam.preprocess's F.pad
    return out[0] if single else out


def normalize_batch(batch: Any) -> Any:
    """A batch dict (``docs/contracts.md``, "Samples") with its uint8 ``image`` normalised by
    :func:`normalize_images` (a shallow copy; the input is not modified). Anything else (float images, a batch
    without ``image``, not a dict) is returned as it is. For code that reads loader batches without Lightning
    (benchmarks, scripts); a ``LiteSAMTaskBase`` does it itself in ``on_after_batch_transfer``."""
    if not isinstance(batch, Mapping):
        return batch
    image = batch.get("image")
    if not torch.is_tensor(image) or image.is_floating_point():
        return batch
    out = dict(batch)
    out["image"] = normalize_images(image, batch.get("input_size"))
    return out
