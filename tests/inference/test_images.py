"""litesam_pl.inference.images.load_image: a user's photo as it is meant to be seen (EXIF orientation), unlike the
datasets' ``data.transforms.pil_decode`` (pixels as stored, the grid annotations refer to)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from litesam_pl.data.transforms import pil_decode
from litesam_pl.inference.images import ImageLoadError, load_image


def test_exif_orientation_is_load_images_alone(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (10, 16, 3), dtype=np.uint8)
    path = tmp_path / "rotated.png"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(arr).save(path, exif=exif)
    stored = pil_decode(path)
    np.testing.assert_array_equal(stored, arr)
    shown = load_image(path)
    assert shown.shape == (16, 10, 3)
    np.testing.assert_array_equal(shown, np.rot90(arr, k=-1))


def test_plain_files_decode_alike(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "x.jpg"
    Image.fromarray(rng.integers(0, 256, (12, 9, 3), dtype=np.uint8)).save(path, quality=85)
    np.testing.assert_array_equal(load_image(path), pil_decode(path))
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "none.jpg")
