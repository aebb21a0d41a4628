"""litesam_pl.data.transforms' decoders: ``pil_decode`` (PIL, as stored; from a path or bytes) and
``decode_image`` (OpenCV first, ``pil_decode`` for what OpenCV does not read)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from litesam_pl.data.transforms import decode_image, pil_decode


def _encoded(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def test_pil_decode_path_and_bytes_alike(tmp_path):
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 256, (11, 17, 3), dtype=np.uint8))
    data = _encoded(im, "JPEG")
    (tmp_path / "a.jpg").write_bytes(data)
    a, b = pil_decode(tmp_path / "a.jpg"), pil_decode(io.BytesIO(data))
    assert a.shape == (11, 17, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    with Image.open(io.BytesIO(data)) as ref:
        np.testing.assert_array_equal(a, np.asarray(ref.convert("RGB")))


def test_pil_decode_modes_and_16_bit():
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 65536, (6, 9), dtype=np.uint16)
    got = pil_decode(io.BytesIO(_encoded(Image.fromarray(arr), "PNG")))
    np.testing.assert_array_equal(got, np.repeat((arr >> 8).astype(np.uint8)[..., None], 3, axis=2))  # top 8 bits
    grey = _encoded(Image.fromarray(arr.astype(np.uint8)), "PNG")
    assert pil_decode(io.BytesIO(grey), modes=("L",)).shape == (6, 9, 3)
    with pytest.raises(KeyError, match="x.png: unsupported image mode 'L'"):
        pil_decode(io.BytesIO(grey), "x.png", KeyError, modes=("RGB",))
    with pytest.raises(OSError):  # PIL's own error passes through
        pil_decode(io.BytesIO(b"not an image"))


def test_decode_image_falls_back_to_pil_decode():
    """A GIF (OpenCV does not read it): ``decode_image`` returns ``pil_decode``'s pixels."""
    rng = np.random.default_rng(2)
    data = _encoded(Image.fromarray(rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)).convert("P"), "GIF")
    np.testing.assert_array_equal(decode_image(data), pil_decode(io.BytesIO(data)))
    with pytest.raises(ValueError, match="cannot decode image"):
        decode_image(b"GIF89a garbage")
    with pytest.raises(ValueError, match="empty image bytes"):
        decode_image(b"")
