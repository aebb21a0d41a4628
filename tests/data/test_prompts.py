"""SegAny prompt sampling: mask choice, SAM box noise, points inside masks, deterministic interior points."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from litesam_pl.data.prompts import choose_masks, interior_points, noisy_boxes, random_points


def _blob_masks(rng: np.random.Generator, n: int, hw=(64, 80)) -> tuple[np.ndarray, np.ndarray]:
    """n random elliptic blobs and their exact xyxy boxes (pixel edges)."""
    H, W = hw
    yy, xx = np.mgrid[:H, :W]
    masks, boxes = [], []
    for _ in range(n):
        cy, cx = rng.uniform(8, H - 8), rng.uniform(8, W - 8)
        ry, rx = rng.uniform(2, 12), rng.uniform(2, 12)
        m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        ys, xs = np.nonzero(m)
        masks.append(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.stack(masks), np.array(boxes, np.float32)


def test_choose_masks_seedable_and_deterministic():
    a = choose_masks(20, 20, np.random.default_rng(3))
    b = choose_masks(20, 20, np.random.default_rng(3))
    c = choose_masks(20, 20, np.random.default_rng(4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert sorted(a.tolist()) == list(range(20))
    assert choose_masks(5, 5, None).tolist() == [0, 1, 2, 3, 4]


def test_noisy_boxes_bounded_and_sam_scaled():
    rng = np.random.default_rng(0)
    n = 4000
    x0, y0 = rng.uniform(0, 200, n), rng.uniform(0, 200, n)
    w, h = rng.uniform(20, 400, n), rng.uniform(20, 400, n)
    boxes = np.stack([x0, y0, x0 + w, y0 + h], 1).astype(np.float32)
    big = (1000, 1000)
    out = noisy_boxes(boxes, big, rng, box_noise=0.1, box_noise_max=20.0)
    d = out - boxes
    assert out.dtype == np.float32 and out.shape == boxes.shape
    assert np.abs(d).max() <= 20.0 + 1e-3  # clipped at 20 px
    assert (out[:, 2] > out[:, 0]).all() and (out[:, 3] > out[:, 1]).all()
    # std 10% of the side where the clip does not bite (small boxes)
    small = (w < 60) & (h < 60)
    rel = d[small] / np.stack([w, h, w, h], 1)[small]
    assert 0.08 < rel.std() < 0.12
    # clipped to the image
    out2 = noisy_boxes(np.array([[0, 0, 50, 40]], np.float32), (40, 50), rng)
    assert out2[0, 0] >= 0 and out2[0, 1] >= 0 and out2[0, 2] <= 50 and out2[0, 3] <= 40
    # no rng / zero noise: exact boxes
    np.testing.assert_array_equal(noisy_boxes(boxes[:10], big, None), boxes[:10])
    np.testing.assert_array_equal(noisy_boxes(boxes[:10], big, rng, box_noise=0.0), boxes[:10])


def test_random_points_inside_masks_and_uniform():
    rng = np.random.default_rng(1)
    masks, boxes = _blob_masks(rng, 32)
    pts = random_points(masks, boxes, rng)
    assert pts.shape == (32, 1, 2) and pts.dtype == np.float32
    for m, (x, y) in zip(masks, pts[:, 0].astype(int)):
        assert m[y, x]
    # uniform over the mask: a two-part mask gets points in both parts in proportion to their areas
    m = np.zeros((40, 40), bool)
    m[2:12, 2:12] = True  # 100 px
    m[20:40, 20:40] = True  # 400 px
    draws = random_points(np.repeat(m[None], 2000, 0), np.tile([[2, 2, 40, 40]], (2000, 1)), rng)[:, 0]
    frac_big = (draws[:, 0] >= 20).mean()
    assert 0.75 < frac_big < 0.85


def test_interior_points_most_interior_pixel():
    m = np.zeros((30, 40), bool)
    m[5:16, 10:21] = True  # 11 x 11 square, centre (x=15, y=10)
    pts = interior_points(m[None], np.array([[10, 5, 21, 16]], np.float32))
    assert pts[0, 0].tolist() == [15.0, 10.0]
    # an L-shape: the chosen pixel has the largest exact distance to the outside
    L = np.zeros((30, 30), bool)
    L[2:28, 2:10] = True
    L[20:28, 2:28] = True
    (x, y), = interior_points(L[None], np.array([[2, 2, 28, 28]], np.float32))[:, 0].astype(int)
    edt = ndimage.distance_transform_edt(np.pad(L, 1))[1:-1, 1:-1]
    assert L[y, x] and edt[y, x] == pytest.approx(edt.max())
    # deterministic
    again = interior_points(L[None], np.array([[2, 2, 28, 28]], np.float32))
    assert again[0, 0].tolist() == [x, y]


def test_empty_mask_raises():
    with pytest.raises(ValueError):
        random_points(np.zeros((1, 8, 8), bool), np.array([[0, 0, 8, 8]], np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError):
        interior_points(np.zeros((1, 8, 8), bool), np.array([[0, 0, 8, 8]], np.float32))


def _hand_made_masks() -> list[np.ndarray]:
    rect = np.zeros((9, 9), bool)
    rect[2:7, 1:8] = True  # 5 x 7: distance 3 at row 4, columns 3, 4, 5 -> a tie, the first is (x=3, y=4)
    L = np.zeros((30, 30), bool)
    L[2:28, 2:10] = True
    L[20:28, 2:28] = True
    full = np.ones((5, 5), bool)  # no background at all: only the image border bounds it
    edge = np.zeros((6, 10), bool)
    edge[:, :4] = True  # cut by three image borders
    disk = np.hypot(*np.mgrid[-12:13, -12:13]) <= 9.5  # many pixels at equal true distance (last-bit noise)
    return [rect, L, full, edge, np.pad(disk, ((3, 1), (2, 5)))]


def test_interior_point_is_one_rule_for_inference_data_and_data_prep():
    from data_prep.bsds_to_sa1b import interior_point_coords as bsds_point
    from data_prep.coco_to_sa1b import interior_point_coords as coco_point
    from litesam_pl.data import geometry
    from litesam_pl.evaluation.prompting import interior_point_prompt

    assert bsds_point is coco_point
    masks = _hand_made_masks()
    for m in masks:
        want = geometry.interior_point(m)
        ys, xs = np.nonzero(m)
        box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
        assert tuple(interior_points(m[None], box)[0, 0].astype(int)) == want  # data layer (box-window search)
        assert tuple(interior_point_prompt(m).astype(int)) == want  # inference / evaluation clicker
        assert tuple(int(v) for v in coco_point(m)) == want  # data_prep converters' point_coords
        edt = ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
        x, y = want
        assert m[y, x] and edt[y, x] == pytest.approx(edt.max())
        assert (y, x) == tuple(np.argwhere(edt >= edt.max() - 1e-9)[0])  # the first maximum in raster order
    assert geometry.interior_point(masks[0]) == (3, 4)  # the tie resolves to the first pixel
    assert geometry.interior_point(masks[2]) == (2, 2)
    assert geometry.interior_point(masks[3]) == (1, 1)
