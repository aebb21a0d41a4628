"""Robust image loading for SegEvery: any file PIL or OpenCV reads -> RGB ``uint8 [H, W, 3]``, or a clear error.

Handles grey, grey+alpha, RGBA (alpha dropped: composited on black would invent edges; SAM ignores alpha too),
palette, CMYK, 16-bit and float images (scaled to 8 bit), EXIF orientation, and refuses non-images, empty
files and missing paths with an :class:`ImageLoadError` naming the file.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np

from ..data.transforms import pil_array, to_rgb8

__all__ = ["ImageLoadError", "load_image", "to_rgb_uint8", "DEFAULT_MAX_PIXELS"]

#: refuse images above this many pixels (PIL's decompression-bomb guard is 2 * 89.5 MP); 0 disables.
DEFAULT_MAX_PIXELS = 1 << 28  # 268 MP


class ImageLoadError(ValueError):
    """An input that is not a readable image (missing, empty, corrupted, unsupported or too large)."""


def to_rgb_uint8(array: np.ndarray, name: str = "image") -> np.ndarray:
    """Any ``[H, W]``, ``[H, W, 1|2|3|4]`` array (uint8/uint16/int/float/bool) -> RGB ``uint8 [H, W, 3]``.

    The shared conversion :func:`litesam_pl.data.transforms.to_rgb8` (uint16 keeps its top 8 bits, ``>> 8``),
    raising :class:`ImageLoadError`."""
    return to_rgb8(array, name=name, error=ImageLoadError)


def load_image(path: Union[str, os.PathLike], max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a user's photo ``path`` as RGB ``uint8 [H, W, 3]`` (see the module doc), as it is meant to be seen:
    EXIF orientation applied, float images min-max scaled, OpenCV as a second chance. Raises
    :class:`ImageLoadError`.

    Not the datasets' readers on purpose: ``litesam_pl.data.transforms.pil_decode`` (``data.coco.read_rgb``,
    ``data_prep``) reads pixels as stored, without EXIF orientation, because annotations refer to the stored grid,
    and ``data.transforms.decode_image`` (the SA-1B loader) decodes bytes with OpenCV first, for speed. All end in
    the same pixel conversion (``data.transforms.to_rgb8``)."""
    p = Path(path)
    if not p.exists():
        raise ImageLoadError(f"{p}: no such file")
    if p.is_dir():
        raise ImageLoadError(f"{p}: is a directory, not an image file")
    if p.stat().st_size == 0:
        raise ImageLoadError(f"{p}: empty file")
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            old = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None  # we apply our own limit below, with a clearer message
            try:
                with Image.open(p) as im:
                    w, h = im.size
                    if max_pixels and w * h > max_pixels:
                        raise ImageLoadError(
                            f"{p}: {w}x{h} = {w * h / 1e6:.0f} MP is above the {max_pixels / 1e6:.0f} MP limit "
                            f"(resize it first or raise --max-pixels)"
                        )
                    im = ImageOps.exif_transpose(im)
                    mode = im.mode
                    if mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
                        im = im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB")
                    arr = pil_array(im)
            finally:
                Image.MAX_IMAGE_PIXELS = old
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        arr = _load_with_cv2(p)
    except (OSError, SyntaxError, ValueError) as err:
        arr = _load_with_cv2(p, err)
    return to_rgb_uint8(arr, name=str(p))


def _load_with_cv2(p: Path, err: Exception = None) -> np.ndarray:
    """Second chance for formats PIL cannot read (e.g. some 16-bit RGB TIFFs); clear error otherwise."""
    import cv2

    data = np.fromfile(str(p), dtype=np.uint8)
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if arr is None:
        why = f" ({err})" if err else ""
        raise ImageLoadError(f"{p}: not a readable image file{why}")
    if arr.ndim == 3 and arr.shape[2] >= 3:  # OpenCV is BGR(A)
        arr = arr[..., [2, 1, 0] + ([3] if arr.shape[2] == 4 else [])]
    return arr
