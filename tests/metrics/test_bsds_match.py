"""The fast BSDS matcher and thinning (litesam_pl/metrics/bsds_match.py) against the official ones."""
from __future__ import annotations

import math

import numpy as np
import pytest

from litesam_pl.metrics.bsds import evaluate_boundary_image, match_boundaries, thin_boundaries
from litesam_pl.metrics.bsds_match import FastMatcher, disk_offsets, thin


def _curves(rng: np.random.Generator, shape=(60, 80), n=4) -> np.ndarray:
    """A thin boundary map of a few random rectangle and ellipse outlines (an annotator)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    region = np.zeros(shape, dtype=np.int32)
    for k in range(1, n + 1):
        cy, cx = rng.integers(5, h - 5), rng.integers(5, w - 5)
        ry, rx = rng.integers(4, h // 3), rng.integers(4, w // 3)
        if k % 2:
            region[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = k
        else:
            region[max(cy - ry, 0):cy + ry, max(cx - rx, 0):cx + rx] = k
    edge = np.zeros(shape, dtype=bool)
    edge[:-1] |= region[:-1] != region[1:]
    edge[:, :-1] |= region[:, :-1] != region[:, 1:]
    return thin(edge)


def _synthetic(seed: int, shape=(60, 80)):
    """Annotators (jittered copies of one outline set plus their own strokes) and a soft map near them + clutter."""
    rng = np.random.default_rng(seed)
    base = _curves(rng, shape)
    gts = []
    for _ in range(3):
        own = _curves(rng, shape, 1) & (rng.random() < 0.5)  # sometimes a stroke of its own
        g = np.roll(base, tuple(rng.integers(-1, 2, size=2)), axis=(0, 1)) | own
        gts.append(thin(g))
    pb = np.clip(np.roll(base, (1, 0), axis=(0, 1)) * rng.uniform(0.3, 1.0, shape)
                 + (rng.random(shape) < 0.04) * rng.uniform(0, 0.8, shape), 0, 1)
    return pb, gts


def _max_matching_size(pred: np.ndarray, gt: np.ndarray, max_dist: float) -> int:
    """Reference: maximum bipartite matching (scipy's Hopcroft-Karp) on pairs within the radius (brute force)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    h, w = pred.shape
    r = max_dist * math.sqrt(h * h + w * w)
    g = np.argwhere(gt)
    p = np.argwhere(pred)
    if len(g) == 0 or len(p) == 0:
        return 0
    d2 = ((g[:, None, :] - p[None, :, :]) ** 2).sum(-1)
    adj = csr_matrix(d2 <= r * r)
    return int((maximum_bipartite_matching(adj, perm_type="column") >= 0).sum())


def test_thin_equals_skimage():
    from skimage.morphology import thin as sk_thin

    rng = np.random.default_rng(0)
    for k in range(60):
        m = rng.random((25, 33)) < rng.uniform(0.05, 0.95)
        assert np.array_equal(thin(m), sk_thin(m)), k
    blob = np.zeros((40, 50), bool)
    blob[5:30, 8:45] = True
    blob[20:38, 2:12] = True
    assert np.array_equal(thin(blob), sk_thin(blob))
    assert np.array_equal(thin_boundaries(blob), sk_thin(blob))
    assert not thin(np.zeros((3, 4), bool)).any()


def test_disk_offsets_follow_match_cc():
    dy, dx, cost = disk_offsets((321, 481), 0.0075)  # r = 4.337: 61 offsets, nearest first
    r = 0.0075 * math.sqrt(321 ** 2 + 481 ** 2)
    assert len(dy) == sum(1 for u in range(-5, 6) for v in range(-5, 6) if u * u + v * v <= r * r) == 61
    d = np.hypot(dy, dx)
    assert d[0] == 0 and np.all(np.diff(d) >= 0) and d.max() <= r
    assert np.array_equal(cost, np.rint(100 * d)) and cost[-1] == 424  # match.cc's integer pair cost


@pytest.mark.parametrize("seed", range(4))
def test_fast_recall_is_the_maximum_matching(seed):
    pb, gts = _synthetic(seed)
    bmap = thin(pb >= 0.3)
    cnt_r, sum_r, cnt_p, sum_p = FastMatcher(gts, 0.05, emulate_outliers=False).counts(bmap)
    assert cnt_r == sum(_max_matching_size(bmap, g, 0.05) for g in gts)
    assert sum_r == sum(int(g.sum()) for g in gts) and sum_p == int(bmap.sum()) and 0 < cnt_p <= sum_p


@pytest.mark.parametrize("seed", range(4))
def test_fast_agrees_with_official_on_synthetic_maps(seed):
    pb, gts = _synthetic(seed)
    thr = [0.2, 0.5, 0.8]
    fast = evaluate_boundary_image(pb, gts, thr, max_dist=0.05, matcher="fast")
    off = evaluate_boundary_image(pb, gts, thr, max_dist=0.05, matcher="official")
    assert np.array_equal(fast.sum_r, off.sum_r) and np.array_equal(fast.sum_p, off.sum_p)
    assert np.all(np.abs(fast.cnt_r - off.cnt_r) <= 0.01 * fast.sum_r + 2)
    assert np.all(np.abs(fast.cnt_p - off.cnt_p) <= 0.01 * fast.sum_p + 2)
    # tiny maps (60-370 predicted pixels): one pixel the randomised official matcher leaves out moves F by ~0.003;
    # measured over 40 official runs: |dF| <= 0.0024
    assert np.abs(fast.f - off.f).max() < 0.01
    assert fast.best()["f"] == pytest.approx(off.best()["f"], abs=0.006)
    # the official min-cost matcher finds a matching: never more pairs than the maximum one
    bmap = thin(pb >= 0.2)
    for g in gts:
        assert FastMatcher([g], 0.05, emulate_outliers=False).counts(bmap)[0] >= match_boundaries(
            bmap, [g], 0.05, matcher="official")[0]


def test_fast_is_exact_on_unambiguous_cases():
    line = np.zeros((40, 50), dtype=bool)
    line[20, 10:40] = True
    shifted = np.roll(line, 1, axis=0)
    assert match_boundaries(shifted, [line], max_dist=0.05) == (30, 30, 30, 30)
    assert match_boundaries(shifted, [line], max_dist=0.0075) == (0, 30, 0, 30)  # 0.48 px < 1 px
    assert match_boundaries(line, [line, line], max_dist=0.0075) == (60, 60, 30, 30)
    assert match_boundaries(np.zeros_like(line), [line]) == (0, 30, 0, 0)
    # a graph built over a superset gives the counts of a graph built for the map alone
    pb, gts = _synthetic(7)
    maps = [thin(pb >= t) for t in (0.1, 0.4, 0.7)]
    shared = FastMatcher(gts, 0.03, candidates=maps[0] | maps[1] | maps[2])
    for m in maps:
        assert shared.counts(m) == FastMatcher(gts, 0.03).counts(m)
    with pytest.raises(ValueError, match="matcher"):
        match_boundaries(line, [line], matcher="exact")


def test_fast_vs_official_on_bench_fixture(shared_data):
    """One bench-fixture image, its 8-bit edge map (dense) at 5 thresholds: counts and per-image F of both."""
    from litesam_pl.data.bsds import BSDS500, load_prediction

    fx = shared_data / "bsds500" / "bench_fixture"
    if not fx.is_dir():
        pytest.skip("bsds500 bench_fixture not in shared data")
    ds = BSDS500(fx, "test")
    pb = load_prediction(fx / "png" / "2018.png", "png")
    gts = ds.boundaries("2018")
    fast = evaluate_boundary_image(pb, gts, 5, matcher="fast")
    off = evaluate_boundary_image(pb, gts, 5, matcher="official")
    assert np.all(np.abs(fast.cnt_r - off.cnt_r) <= 0.003 * fast.sum_r + 2)
    assert np.all(np.abs(fast.cnt_p - off.cnt_p) <= 0.003 * fast.sum_p + 2)
    assert fast.best()["f"] == pytest.approx(off.best()["f"], abs=0.002)
    # and the bench's own expected output for this image (test_2: png inputs, 5 thresholds)
    exp = np.loadtxt(fx / "expected" / "test_2" / "eval_bdry_img.txt")
    assert fast.best()["f"] == pytest.approx(exp[ds.ids.index("2018"), 4], abs=0.002)


def _min_cost_max_matching(rows, cols, cost, nr, allowed):
    """(pairs, total cost) of a min-cost maximum matching using only columns in ``allowed`` (dense reference)."""
    from scipy.optimize import linear_sum_assignment

    nc = allowed.size
    big, inf = 1e6, 1e12
    m = np.full((nr, nc + nr), inf)
    ok = allowed[cols]
    m[rows[ok], cols[ok]] = cost[ok]
    m[np.arange(nr), nc + np.arange(nr)] = big
    r, c = linear_sum_assignment(m)
    pairs = int((c < nc).sum())
    return pairs, float(m[r, c][c < nc].sum())


@pytest.mark.parametrize("seed", range(3))
def test_min_cost_columns_support_a_min_cost_maximum_matching(seed):
    """The predicted pixels picked for precision are those of a min-cost maximum matching (the official objective)."""
    from litesam_pl.metrics.bsds_match import _compress, _max_matching, _min_cost_columns, _reachable

    pb, gts = _synthetic(seed)
    bmap = thin(pb >= 0.2)
    fm = FastMatcher(gts, 0.05)
    _, edges = fm._build(bmap)
    for rows, cols, cost, pix in edges:
        rr, _ = _compress(rows, int(rows[-1]) + 1)
        cc, ucols = _compress(cols, pix.size)
        nr, nc = int(rr[-1]) + 1, ucols.size
        rm, cm = _max_matching(rr, cc, cost, nr, nc)
        chosen = _min_cost_columns(rr, cc, cost, rm, cm, _reachable(cc, rm[rr], np.flatnonzero(cm < 0), nc))
        assert chosen.sum() == (rm >= 0).sum()  # a maximum matching's worth of columns
        best = _min_cost_max_matching(rr, cc, cost, nr, np.ones(nc, bool))
        assert _min_cost_max_matching(rr, cc, cost, nr, chosen) == best
