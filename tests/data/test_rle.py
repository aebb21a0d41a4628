"""litesam_pl.data.rle: COCO RLE helpers."""
from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from litesam_pl.data.rle import decode_rle, encode_mask, resize_mask, resize_rle, rle_area, rle_to_bbox


@pytest.mark.parametrize("hw", [(1, 1), (7, 13), (64, 48)])
def test_round_trip_random(hw):
    rng = np.random.default_rng(hw[0] * 100 + hw[1])
    for p in (0.05, 0.5, 0.95):
        m = rng.random(hw) < p
        rle = encode_mask(m)
        assert rle["size"] == list(hw)
        assert isinstance(rle["counts"], str)
        back = decode_rle(rle)
        assert back.dtype == bool and back.shape == hw
        np.testing.assert_array_equal(back, m)
        assert rle_area(rle) == int(m.sum())


def test_empty_and_full():
    empty = np.zeros((5, 9), bool)
    full = np.ones((5, 9), bool)
    r0, r1 = encode_mask(empty), encode_mask(full)
    np.testing.assert_array_equal(decode_rle(r0), empty)
    np.testing.assert_array_equal(decode_rle(r1), full)
    assert rle_area(r0) == 0 and rle_area(r1) == 45
    assert rle_to_bbox(r0) == [0.0, 0.0, 0.0, 0.0]
    assert rle_to_bbox(r1) == [0.0, 0.0, 9.0, 5.0]


def test_bbox_matches_mask():
    m = np.zeros((20, 30), bool)
    m[3:8, 10:25] = True
    m[15, 2] = True
    assert rle_to_bbox(encode_mask(m)) == [2.0, 3.0, 23.0, 13.0]


def test_decode_accepts_bytes_and_uncompressed():
    m = np.zeros((6, 4), bool)
    m[1:3, 1:4] = True
    rle = encode_mask(m)
    np.testing.assert_array_equal(decode_rle({"size": rle["size"], "counts": rle["counts"].encode()}), m)
    # uncompressed column-major counts (COCO iscrowd): 24 px, starts with 0 run
    flat = m.T.ravel().astype(int)
    counts, cur, run = [], 0, 0
    for v in flat:
        if v == cur:
            run += 1
        else:
            counts.append(run)
            cur, run = v, 1
    counts.append(run)
    np.testing.assert_array_equal(decode_rle({"size": [6, 4], "counts": counts}), m)
    # same as pycocotools' own conversion
    ref = mask_utils.decode(mask_utils.frPyObjects({"size": [6, 4], "counts": counts}, 6, 4)).astype(bool)
    np.testing.assert_array_equal(ref, m)


def test_malformed_rle_raises():
    with pytest.raises(ValueError):
        decode_rle({"counts": "abc"})
    with pytest.raises(ValueError):
        decode_rle({"size": [3, 3], "counts": [1, 2]})  # sums to 3, not 9
    with pytest.raises(ValueError):
        encode_mask(np.zeros((2, 2, 2), bool))
    # compressed strings whose runs do not cover the image (pycocotools would return uninitialised pixels)
    good = encode_mask(np.eye(30, dtype=bool))
    for bad in ("0", "", good["counts"][: len(good["counts"]) // 2], "abc"):
        with pytest.raises(ValueError):
            decode_rle({"size": [30, 30], "counts": bad})
    with pytest.raises(ValueError):
        decode_rle({"size": [3, 3], "counts": good["counts"]})  # a valid string of another size


def test_resize_rle():
    m = np.zeros((40, 60), bool)
    m[10:30, 20:50] = True
    small = resize_rle(encode_mask(m), (20, 30))
    assert small["size"] == [20, 30]
    d = decode_rle(small)
    assert rle_to_bbox(small) == [10.0, 5.0, 15.0, 10.0]
    assert d.sum() == 150
    # nearest and area agree on a block-aligned rectangle; upsampling by 2 doubles each side
    np.testing.assert_array_equal(resize_mask(m, (20, 30), "nearest"), d)
    big = decode_rle(resize_rle(small, (40, 60), mode="nearest"))
    np.testing.assert_array_equal(big, m)
    with pytest.raises(ValueError):
        resize_mask(m, (20, 30), "bicubic")
