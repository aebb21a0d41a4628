"""AutoPPN targets: size groups, distance-transform heatmaps, smallest-mask rule, box targets, ignore map."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from litesam_pl.data.targets import distance_heatmap, grid_valid, ppn_targets, size_groups

S, STRIDE = 128, 8
P = S // STRIDE


def _grid_mask(cells: list[tuple[slice, slice]]) -> np.ndarray:
    m = np.zeros((P, P), bool)
    for rs, cs in cells:
        m[rs, cs] = True
    return m


def _box_of_cells(m: np.ndarray) -> list[float]:
    """xyxy box in input pixels of the cells of a grid mask (cell (i, j) covers [j*s, (j+1)*s) x [i*s, (i+1)*s))."""
    ys, xs = np.nonzero(m)
    return [xs.min() * STRIDE, ys.min() * STRIDE, (xs.max() + 1) * STRIDE, (ys.max() + 1) * STRIDE]


def test_size_group_thresholds_exact():
    H, W = 200, 100
    # (h, w) -> extent max(h/H, w/W)
    hw = np.array([
        [10, 1],    # 0.05 exactly -> small
        [1, 5],     # 0.05 exactly -> small
        [50, 1],    # 0.25 exactly -> large
        [1, 25],    # 0.25 exactly -> large
        [10.02, 1],  # just above 0.05 -> medium
        [49.9, 1],  # just below 0.25 -> medium
        [1, 90],    # large
        [2, 2],     # small
    ])
    assert size_groups(hw, (H, W)).tolist() == [2, 2, 0, 0, 1, 1, 0, 2]
    assert size_groups(hw, (H, W), num_groups=1).tolist() == [0] * 8
    with pytest.raises(ValueError):
        size_groups(hw, (H, W), num_groups=2)


def test_distance_heatmap_rectangle_peak_at_centre():
    m = np.zeros((11, 13), bool)
    m[2:9, 3:10] = True  # 7 x 7 square, centre (5, 6)
    dt = distance_heatmap(m)
    assert dt.dtype == np.float32
    assert dt.max() == pytest.approx(1.0)
    assert np.unravel_index(np.argmax(dt), dt.shape) == (5, 6)
    assert (dt >= 1.0 - 1e-6).sum() == 1  # the centre is the only maximum
    assert (dt[~m] == 0).all() and (dt[m] > 0).all()
    assert dt[5, 3] < dt[5, 4] < dt[5, 5] < dt[5, 6]  # rising towards the centre
    # a 7 x 9 rectangle peaks on its middle row, on the ridge of cells 4 away from every side
    r = np.zeros((11, 13), bool)
    r[2:9, 3:12] = True
    dr = distance_heatmap(r)
    assert {tuple(p) for p in np.argwhere(dr >= 1.0 - 1e-6)} == {(5, 6), (5, 7), (5, 8)}


def test_distance_heatmap_l_shape_matches_exact_edt():
    m = np.zeros((20, 20), bool)
    m[2:18, 2:8] = True  # vertical bar 16 x 6
    m[12:18, 2:18] = True  # horizontal bar 6 x 16
    dt = distance_heatmap(m)
    exact = ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
    np.testing.assert_allclose(dt, exact / exact.max(), atol=1e-4)
    # the most interior points lie in the corner square of the L, where the two bars meet
    peak = np.argwhere(dt >= dt.max() - 1e-6)
    assert all(12 <= r < 18 and 2 <= c < 8 for r, c in peak)


def test_distance_heatmap_touching_border_counts_border_as_outside():
    m = np.ones((5, 5), bool)  # a mask cut by the image border everywhere
    dt = distance_heatmap(m)
    assert np.unravel_index(np.argmax(dt), dt.shape) == (2, 2)
    assert (dt >= 1.0 - 1e-6).sum() == 1
    assert dt[0, 0] < dt[1, 1] < dt[2, 2]


def test_smallest_mask_wins_where_masks_overlap():
    big = _grid_mask([(slice(2, 14), slice(2, 14))])  # 12 x 12 cells
    small = _grid_mask([(slice(4, 7), slice(4, 7))])  # 3 x 3 cells, inside big
    masks = np.stack([small, big])  # annotation order must not matter
    boxes = np.array([_box_of_cells(small), _box_of_cells(big)], np.float32)
    areas = masks.reshape(2, -1).sum(1)
    t = ppn_targets(masks, boxes, areas, np.zeros(2, np.int64), (S, S), S, STRIDE, num_groups=1)
    heat, tb, w = t["heatmap"][0], t["boxes"][0], t["box_weight"][0]
    # inside the small mask: the small mask's own normalised distance transform, peak 1.0 at its centre
    np.testing.assert_allclose(heat[4:7, 4:7], distance_heatmap(small[4:7, 4:7]))
    assert heat[5, 5] == pytest.approx(1.0)
    # outside the small mask but inside the big one: the big mask's transform
    np.testing.assert_allclose(heat[big & ~small], distance_heatmap(big)[big & ~small])
    # box targets of the small mask inside it, of the big one elsewhere
    cy, cx = (5 + 0.5) * STRIDE, (5 + 0.5) * STRIDE
    x0, y0, x1, y1 = boxes[0]
    np.testing.assert_allclose(tb[:, 5, 5], np.array([cx - x0, cy - y0, x1 - cx, y1 - cy]) / S, rtol=1e-6)
    x0, y0, x1, y1 = boxes[1]
    cy, cx = (10 + 0.5) * STRIDE, (3 + 0.5) * STRIDE
    np.testing.assert_allclose(tb[:, 10, 3], np.array([cx - x0, cy - y0, x1 - cx, y1 - cy]) / S, rtol=1e-6)
    assert (w == big.astype(np.float32)).all()


def test_groups_are_separate_and_overlaps_resolved_within_a_group():
    big = _grid_mask([(slice(0, 16), slice(0, 16))])  # large
    med = _grid_mask([(slice(2, 4), slice(2, 4))])  # medium
    masks = np.stack([big, med])
    boxes = np.array([_box_of_cells(big), _box_of_cells(med)], np.float32)
    t = ppn_targets(masks, boxes, masks.reshape(2, -1).sum(1), np.array([0, 1]), (S, S), S, STRIDE)
    assert t["heatmap"].shape == (3, P, P) and t["boxes"].shape == (3, 4, P, P)
    # the large group's map ignores the medium mask: pure transform of the big mask
    np.testing.assert_allclose(t["heatmap"][0], distance_heatmap(big))
    np.testing.assert_allclose(t["heatmap"][1], distance_heatmap(med))
    assert t["heatmap"][2].sum() == 0 and t["box_weight"][2].sum() == 0
    assert t["box_weight"][1].sum() == 4


def test_box_targets_hand_computed():
    m = _grid_mask([(slice(3, 7), slice(2, 6))])
    box = np.array([[16.0, 24.0, 48.0, 56.0]], np.float32)  # the cells' box in pixels
    t = ppn_targets(m[None], box, [16], [1], (S, S), S, STRIDE)
    tb, w = t["boxes"][1], t["box_weight"][1]
    # cell (row 4, col 3) has centre (x, y) = (28, 36)
    np.testing.assert_allclose(tb[:, 4, 3], np.array([12.0, 12.0, 20.0, 20.0]) / S)
    # cell (row 3, col 2): centre (20, 28)
    np.testing.assert_allclose(tb[:, 3, 2], np.array([4.0, 4.0, 28.0, 28.0]) / S)
    assert w.sum() == 16 and (tb[:, w == 0] == 0).all()
    assert (tb >= 0).all()


def _counts(t: dict, g: int) -> tuple[int, int, int]:
    """(positives, negatives, ignored) cells of group ``g``'s point map, as the hard-mining MSE sees them."""
    ign = t["ignore"]
    pos = (t["heatmap"][g] > 0) & ~ign
    return int(pos.sum()), int((~pos & ~ign).sum()), int(ign.sum())


def test_background_is_negative_only_padding_ignored_one_group():
    input_hw = (80, 128)  # image resized to 80 x 128, padded to 128 x 128
    rows, cols = grid_valid(input_hw, S, STRIDE)
    assert (rows, cols) == (10, 16)
    m = _grid_mask([(slice(1, 4), slice(1, 4))])
    t = ppn_targets(m[None], np.array([_box_of_cells(m)], np.float32), [9], [0], input_hw, S, STRIDE, num_groups=1)
    ign = t["ignore"]
    assert ign.dtype == bool and ign.shape == (P, P)
    assert ign[10:].all() and not ign[:10].any()  # padding rows only
    assert _counts(t, 0) == (9, 10 * 16 - 9, 6 * 16)
    assert t["heatmap"][0, 0, 0] == 0 and not ign[0, 0] and not ign[5, 8]  # background: a supervised 0


def test_background_is_negative_three_groups():
    input_hw = (128, 96)  # 12 valid columns
    big = _grid_mask([(slice(0, 8), slice(0, 8))])  # 64 cells, 64 px of 128 -> large
    med = _grid_mask([(slice(10, 12), slice(9, 11))])  # 4 cells, 16 px -> medium
    masks = np.stack([big, med])
    boxes = np.array([_box_of_cells(big), _box_of_cells(med)], np.float32)
    groups = size_groups(np.array([[64, 64], [16, 16]]), (128, 96))
    assert groups.tolist() == [0, 1]
    t = ppn_targets(masks, boxes, [64, 4], groups, input_hw, S, STRIDE)
    valid = 16 * 12
    assert _counts(t, 0) == (64, valid - 64, P * P - valid)  # the medium mask and background are negatives
    assert _counts(t, 1) == (4, valid - 4, P * P - valid)
    assert _counts(t, 2) == (0, valid, P * P - valid)  # no small mask: the whole image is negative


def test_background_ignore_switch_and_gaussian_mode():
    input_hw = (80, 128)
    m = _grid_mask([(slice(1, 4), slice(1, 4))])
    box = np.array([_box_of_cells(m)], np.float32)
    # the explicit switch: unlabeled cells excluded, as the earlier (wrong for the paper recipes) default
    t = ppn_targets(m[None], box, [9], [0], input_hw, S, STRIDE, num_groups=1, background="ignore")
    assert _counts(t, 0) == (9, 0, P * P - 9)
    # gaussian (Table 2 baseline) targets: positives at the Gaussian, everything else in the image negative
    tg = ppn_targets(m[None], box, [9], [0], input_hw, S, STRIDE, num_groups=1, mode="gaussian")
    pos, neg, ign = _counts(tg, 0)
    assert ign == 6 * 16 and pos >= 1 and pos + neg == 10 * 16
    assert tg["heatmap"][0].max() == 1.0
    with pytest.raises(ValueError, match="background"):
        ppn_targets(m[None], box, [9], [0], input_hw, S, STRIDE, num_groups=1, background="stuff")
    with pytest.raises(ValueError, match="distance"):
        ppn_targets(m[None], box, [9], [0], input_hw, S, STRIDE, num_groups=1, mode="gaussian", background="ignore")


def test_grid_valid_partial_cells():
    # a cell belongs to the image when its centre does: 84 rows -> centres 4, 12, ..., 76 (10 cells), 84 is out
    assert grid_valid((84, 128), S, STRIDE) == (10, 16)
    assert grid_valid((85, 127), S, STRIDE) == (11, 16)


def test_gaussian_mode_centre_peak_and_box_at_centre_only():
    m = _grid_mask([(slice(4, 9), slice(2, 11))])
    box = np.array([_box_of_cells(m)], np.float32)  # x 16..88, y 32..72 -> centre (52, 52) -> cell (6, 6)
    t = ppn_targets(m[None], box, [45], [0], (S, S), S, STRIDE, num_groups=1, mode="gaussian")
    heat = t["heatmap"][0]
    assert heat.shape == (P, P)
    assert np.unravel_index(np.argmax(heat), heat.shape) == (6, 6) and heat[6, 6] == pytest.approx(1.0)
    assert 0 < heat[6, 7] < 1 and heat[6, 5] == pytest.approx(heat[6, 7])  # symmetric Gaussian
    assert t["box_weight"][0].sum() == 1 and t["box_weight"][0, 6, 6] == 1
    cx = cy = 6.5 * STRIDE
    np.testing.assert_allclose(t["boxes"][0][:, 6, 6], np.array([cx - 16, cy - 32, 88 - cx, 72 - cy]) / S)


def test_mask_smaller_than_a_cell_gets_its_centre_cell():
    empty = np.zeros((1, P, P), bool)  # sampled at cell centres, the 3-pixel mask hit none
    box = np.array([[41.0, 17.0, 44.0, 20.0]], np.float32)  # centre (42.5, 18.5) -> cell (2, 5)
    t = ppn_targets(empty, box, [9], [2], (S, S), S, STRIDE)
    assert t["heatmap"][2, 2, 5] == 1.0 and t["heatmap"][2].sum() == 1.0
    assert t["box_weight"][2, 2, 5] == 1 and not t["ignore"][2, 5]


def test_bad_arguments():
    m = np.zeros((1, P, P), bool)
    with pytest.raises(ValueError):
        ppn_targets(m, np.zeros((1, 4)), [1], [0], (S, S), S, STRIDE, mode="centernet")
    with pytest.raises(ValueError):
        ppn_targets(m, np.zeros((1, 4)), [1], [3], (S, S), S, STRIDE)


def test_size_groups_and_grid_valid_live_in_geometry():
    from litesam_pl.data import geometry, targets

    assert targets.size_groups is geometry.size_groups and targets.grid_valid is geometry.grid_valid
    np.testing.assert_array_equal(distance_heatmap(np.ones((3, 5), bool)),
                                  geometry.boundary_distance(np.ones((3, 5), bool)) / 2.0)  # peak distance 2
