"""litesam_pl.data.coco: annotations to RLE through ``data.rle`` and images through ``transforms.pil_decode``."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from litesam_pl.data.coco import ann_masks, ann_to_mask, ann_to_rle, read_rgb
from litesam_pl.data.rle import encode_mask, to_coco_rle
from litesam_pl.data.transforms import pil_decode


@pytest.fixture
def mask() -> np.ndarray:
    m = np.zeros((9, 14), bool)
    m[2:7, 3:11] = True
    m[4, 5] = False
    return m


def test_ann_to_rle_every_segmentation_form(mask):
    """Compressed (``str`` / ``bytes`` counts) and uncompressed RLEs come out as ``to_coco_rle`` makes them
    (``bytes`` counts, what pycocotools takes); polygons through pycocotools."""
    rle = encode_mask(mask)  # str counts, as in a json file
    want = to_coco_rle(rle)
    assert isinstance(want["counts"], bytes)
    for segm in (rle, {**rle, "counts": rle["counts"].encode("ascii")}):
        got = ann_to_rle({"id": 1, "segmentation": segm}, 9, 14)
        assert got == want
    flat = mask.flatten(order="F").astype(np.int64)  # uncompressed (COCO iscrowd): run lengths, 0s first
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], edges])).tolist()
    got = ann_to_rle({"id": 2, "segmentation": {"size": [9, 14], "counts": counts}}, 9, 14)
    assert isinstance(got["counts"], bytes) and np.array_equal(mask_utils.decode(got).astype(bool), mask)
    np.testing.assert_array_equal(ann_to_mask({"segmentation": rle}, 9, 14), mask)
    poly = {"id": 3, "segmentation": [[3.0, 2.0, 10.0, 2.0, 10.0, 6.0, 3.0, 6.0]]}
    assert ann_to_mask(poly, 9, 14).sum() > 0 and ann_masks([], 9, 14).shape == (0, 9, 14)
    assert not ann_to_mask({"id": 4, "segmentation": [[1.0, 1.0]]}, 9, 14).any()  # degenerate polygon: empty


def test_ann_to_rle_refuses_what_it_cannot_read():
    with pytest.raises(ValueError, match="no 'segmentation'"):
        ann_to_rle({"id": 1}, 4, 4)
    with pytest.raises(ValueError, match="unsupported segmentation"):
        ann_to_rle({"id": 1, "segmentation": 3}, 4, 4)
    with pytest.raises(ValueError, match="sum to"):  # uncompressed runs that miss pixels (to_coco_rle's check)
        ann_to_rle({"id": 1, "segmentation": {"size": [4, 4], "counts": [3, 2]}}, 4, 4)


def test_read_rgb_is_pil_decode_writable(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "x.jpg"
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(path, quality=90)
    got = read_rgb(path)
    assert got.flags.writeable and got.dtype == np.uint8 and got.shape == (20, 30, 3)
    np.testing.assert_array_equal(got, pil_decode(path))
    f = tmp_path / "f.tif"  # a float image: not a mode read_rgb takes
    Image.fromarray(rng.random((5, 6), dtype=np.float32)).save(f)
    with pytest.raises(ValueError, match="unsupported image mode 'F'"):
        read_rgb(f)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ValueError, match="cannot read image"):
        read_rgb(broken)
    with pytest.raises(FileNotFoundError):
        read_rgb(tmp_path / "none.jpg")
