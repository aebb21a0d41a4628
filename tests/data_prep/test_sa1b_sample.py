"""data_prep.sa1b_sample.decode_image_or_skip: ``transforms.pil_decode`` of the bytes, or ``SkipSample``."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from data_prep.sa1b_sample import SkipSample, decode_image_or_skip
from litesam_pl.data.transforms import pil_decode


def test_decode_image_or_skip_is_pil_decode():
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    np.testing.assert_array_equal(decode_image_or_skip(data), pil_decode(io.BytesIO(data)))
    with pytest.raises(SkipSample) as e:
        decode_image_or_skip(b"not an image")
    assert e.value.reason == "corrupt_image"
    with pytest.raises(SkipSample, match="truncated"):  # PIL may decode a cut JPEG; the end marker is checked
        decode_image_or_skip(data[:-2] + b"\x00\x00")
