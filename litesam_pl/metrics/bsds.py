"""BSDS500 boundary benchmark: ODS, OIS, AP and R50 exactly as the original MATLAB bench computes them.

Arrays in, numbers out; this module knows nothing of models.

Per image (``evaluation_bdry_image.m``): for each threshold ``t`` the soft boundary map ``pb`` (HxW, values in
[0, 1]) becomes ``bmap = pb >= t``, is thinned to one-pixel width (``bwmorph(bmap, 'thin', inf)``), and is matched
against every annotator's boundary map with ``correspondPixels`` (max distance ``max_dist`` times the image
diagonal, outlier cost 100).  Recall counts ``cntR``/``sumR`` are summed over the annotators (a GT pixel counts
once per annotator); a predicted pixel is correct (``cntP``) when it matches *any* annotator, ``sumP`` is the
number of predicted pixels.

Over the data set (``collect_eval_bdry.m``, plus R50 from the Structured Edge toolbox's ``edgesEvalDir.m``):

- ODS: counts summed over images per threshold -> R, P, F; the best F is searched on the linear interpolation
  between consecutive thresholds (100 steps).
- OIS: per image, the threshold of its best (non-interpolated) F; the counts there are summed over images.
- AP: the data-set P(R) curve linearly interpolated at R = 0:0.01:1 (points outside the curve count 0), summed
  and multiplied by 0.01.
- R50: recall at 50% precision, interpolated on the data-set curve.

Matchers (``matcher=``): ``"official"`` is pyEdgeEval's build of the benchmark's own C++ matcher
(``correspond_pixels``, randomised, ~1 s per dense map); ``"fast"`` (default) is ``bsds_match.FastMatcher``: the
maximum-cardinality matching of the same pixel pairs, the predicted pixels of a min-cost one, minus the expected
pairs the official outlier graph gives up.  Per-image F agrees with the official matcher within 0.001 at ~15x the
speed (docs/benchmarks.md).  Distinct thresholded maps are matched once: thresholds that select the same pixel set
share the result.  Thinning is ``bsds_match.thin``, identical to skimage's ``thin``.
"""
from __future__ import annotations

import math
import multiprocessing as mp
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "DEFAULT_MAX_DIST",
    "MATCHERS",
    "BoundaryCounts",
    "BoundaryEvaluator",
    "bsds_thresholds",
    "f_measure",
    "thin_boundaries",
    "match_boundaries",
    "evaluate_boundary_image",
    "evaluate_boundary_maps",
    "best_f_interpolated",
    "average_precision",
    "recall_at_precision",
    "summarize",
    "evaluate_images",
]

DEFAULT_MAX_DIST = 0.0075
OUTLIER_COST = 100.0
MATCHERS = ("fast", "official")  # the first is the default

Thresholds = Union[int, Sequence[float], np.ndarray]


def bsds_thresholds(n: int = 99) -> np.ndarray:
    """The bench's thresholds ``linspace(1/(n+1), 1-1/(n+1), n)``, computed exactly as ``k/(n+1)``, shape [n]."""
    if int(n) != n or n < 1:
        raise ValueError(f"number of thresholds must be a positive integer, got {n!r}")
    n = int(n)
    return np.arange(1, n + 1, dtype=np.float64) / (n + 1)


def _as_thresholds(thresholds: Thresholds) -> np.ndarray:
    if isinstance(thresholds, (int, np.integer)):
        return bsds_thresholds(int(thresholds))
    out = np.asarray(thresholds, dtype=np.float64).ravel()
    if out.size == 0 or not np.all(np.isfinite(out)):
        raise ValueError("thresholds must be a non-empty sequence of finite numbers")
    return out


def f_measure(r, p):
    """``2PR / (P + R)``, 0 where ``P + R == 0`` (the bench's ``fmeasure``); works on scalars and arrays."""
    r = np.asarray(r, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    s = p + r
    out = 2.0 * p * r / (s + (s == 0))
    return float(out) if out.ndim == 0 else out


def _ratio(cnt, tot):
    """``cnt / (tot + (tot == 0))``: the bench's recall / precision."""
    cnt = np.asarray(cnt, dtype=np.float64)
    tot = np.asarray(tot, dtype=np.float64)
    out = cnt / (tot + (tot == 0))
    return float(out) if out.ndim == 0 else out


def thin_boundaries(bmap: np.ndarray) -> np.ndarray:
    """Morphological thinning to one-pixel width, MATLAB ``bwmorph(bmap, 'thin', inf)``. bool [H, W].

    skimage's ``thin`` computed on the foreground only (``bsds_match.thin``): the same output, faster.
    """
    from litesam_pl.metrics.bsds_match import thin

    return thin(bmap)


def _check_matcher(matcher: str) -> str:
    if matcher not in MATCHERS:
        raise ValueError(f"matcher must be one of {MATCHERS}, got {matcher!r}")
    return matcher


def _check_gts(gts: Sequence[np.ndarray], shape: Tuple[int, int]) -> List[np.ndarray]:
    if isinstance(gts, np.ndarray) and gts.ndim == 2:
        gts = [gts]
    out = []
    for i, g in enumerate(gts):
        g = np.asarray(g)
        if g.shape != tuple(shape):
            raise ValueError(f"ground-truth boundary map {i} has shape {g.shape}, prediction has {tuple(shape)}")
        out.append(np.asfortranarray(g != 0, dtype=np.float64))
    if not out:
        raise ValueError("at least one ground-truth boundary map is needed")
    return out


def match_boundaries(
    bmap: np.ndarray, gts: Sequence[np.ndarray], max_dist: float = DEFAULT_MAX_DIST, matcher: str = "fast"
) -> Tuple[int, int, int, int]:
    """Match one binary boundary map against every annotator.

    Args:
        bmap: bool [H, W] predicted boundary pixels (already thinned if the protocol thins).
        gts: K annotators' boundary maps, each [H, W] (non-zero = boundary).
        max_dist: matching tolerance as a fraction of the image diagonal.
        matcher: ``"fast"`` (maximum-cardinality matching) or ``"official"`` (the bench's ``correspondPixels``).

    Returns:
        ``(cnt_r, sum_r, cnt_p, sum_p)`` as in ``evaluation_bdry_image.m``.
    """
    bmap = np.asarray(bmap, dtype=bool)
    gts_f = _check_gts(gts, bmap.shape)
    if _check_matcher(matcher) == "official":
        return _match(bmap, gts_f, max_dist)
    from litesam_pl.metrics.bsds_match import FastMatcher

    return FastMatcher([g != 0 for g in gts_f], max_dist).counts(bmap)


def _count_maps(bmaps: Dict[int, np.ndarray], gts_f: List[np.ndarray], max_dist: float,
                matcher: str) -> Dict[int, Tuple[int, int, int, int]]:
    """Counts of each (already thinned) map; the fast matcher builds its pixel graph once over their union."""
    if matcher == "official":
        return {k: _match(b, gts_f, max_dist) for k, b in bmaps.items()}
    from litesam_pl.metrics.bsds_match import FastMatcher

    union = np.zeros(gts_f[0].shape, dtype=bool)
    for b in bmaps.values():
        union |= b
    fm = FastMatcher([g != 0 for g in gts_f], max_dist, candidates=union)
    return {k: fm.counts(b) for k, b in bmaps.items()}


def _match(bmap: np.ndarray, gts_f: List[np.ndarray], max_dist: float) -> Tuple[int, int, int, int]:
    """``match_boundaries`` on ground truth already prepared by ``_check_gts`` (float64, Fortran order)."""
    from pyEdgeEval._lib import correspond_pixels

    sum_p = int(bmap.sum())
    sum_r = int(sum(int(g.sum()) for g in gts_f))
    if sum_p == 0:
        return 0, sum_r, 0, 0
    pred = np.asfortranarray(bmap, dtype=np.float64)
    acc_p = np.zeros(bmap.shape, dtype=bool)
    cnt_r = 0
    for g in gts_f:
        if not g.any():
            continue
        match1, match2, _, _ = correspond_pixels(pred, g, max_dist=float(max_dist), outlier_cost=OUTLIER_COST)
        acc_p |= match1 > 0
        cnt_r += int((match2 > 0).sum())
    return cnt_r, sum_r, int(acc_p.sum()), sum_p


@dataclass
class BoundaryCounts:
    """Per-threshold match counts of one image (the rows of the bench's ``<id>_ev1.txt``), each shape [T]."""

    thresholds: np.ndarray
    cnt_r: np.ndarray
    sum_r: np.ndarray
    cnt_p: np.ndarray
    sum_p: np.ndarray

    def __post_init__(self) -> None:
        self.thresholds = np.asarray(self.thresholds, dtype=np.float64)
        for name in ("cnt_r", "sum_r", "cnt_p", "sum_p"):
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.shape != self.thresholds.shape:
                raise ValueError(f"{name} has shape {arr.shape}, thresholds {self.thresholds.shape}")
            setattr(self, name, arr)

    @property
    def recall(self) -> np.ndarray:
        return _ratio(self.cnt_r, self.sum_r)

    @property
    def precision(self) -> np.ndarray:
        return _ratio(self.cnt_p, self.sum_p)

    @property
    def f(self) -> np.ndarray:
        return f_measure(self.recall, self.precision)

    def best(self) -> Dict[str, float]:
        """The per-image best (a row of ``eval_bdry_img.txt``): interpolated ``threshold, r, p, f``."""
        t, r, p, f = best_f_interpolated(self.thresholds, self.recall, self.precision)
        return {"threshold": t, "r": r, "p": p, "f": f}

    def to_array(self) -> np.ndarray:
        """[T, 5] rows ``thresh cntR sumR cntP sumP`` (the bench's ``_ev1.txt`` layout)."""
        return np.stack([self.thresholds, self.cnt_r, self.sum_r, self.cnt_p, self.sum_p], axis=1)

    def save(self, path) -> None:
        """Write the bench's ``<id>_ev1.txt`` (``thresh cntR sumR cntP sumP`` per line; thresholds full precision)."""
        np.savetxt(str(path), self.to_array(), fmt=["%.17g", "%d", "%d", "%d", "%d"])

    @classmethod
    def load(cls, path) -> "BoundaryCounts":
        """Read a ``_ev1.txt`` file (ours or the MATLAB bench's)."""
        arr = np.atleast_2d(np.loadtxt(str(path), dtype=np.float64))
        if arr.ndim != 2 or arr.shape[1] != 5:
            raise ValueError(f"{path}: expected rows 'thresh cntR sumR cntP sumP', got shape {arr.shape}")
        return cls(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4])


def evaluate_boundary_image(
    pb: np.ndarray,
    gts: Sequence[np.ndarray],
    thresholds: Thresholds = 99,
    max_dist: float = DEFAULT_MAX_DIST,
    thin: bool = True,
    matcher: str = "fast",
) -> BoundaryCounts:
    """Counts of one soft boundary map over the thresholds (``evaluation_bdry_image.m``).

    Args:
        pb: float [H, W] boundary strength in [0, 1] (``ucm2[2::2, 2::2]``, ``png / 255``, a probability map).
        gts: K annotators' boundary maps, each [H, W].
        thresholds: a number of thresholds (``k/(n+1)``, the bench's) or explicit values; ``pb >= t`` is a boundary.
        max_dist: matching tolerance as a fraction of the image diagonal.
        thin: thin each thresholded map (the bench's ``thinpb = 1``).
        matcher: ``"fast"`` or ``"official"`` (see the module docstring).
    """
    _check_matcher(matcher)
    pb = np.asarray(pb, dtype=np.float64)
    if pb.ndim != 2:
        raise ValueError(f"boundary map must be 2-D [H, W], got shape {pb.shape}")
    if not np.all(np.isfinite(pb)):
        raise ValueError("boundary map contains NaN or infinite values")
    if pb.size and (pb.min() < 0.0 or pb.max() > 1.0):
        raise ValueError(f"boundary map must lie in [0, 1], got range [{pb.min():.4g}, {pb.max():.4g}]")
    thr = _as_thresholds(thresholds)
    gts_f = _check_gts(gts, pb.shape)

    # Maps are nested in the threshold, so the number of pixels >= t identifies the map: match each once.
    flat = np.sort(pb.ravel())
    n_on = flat.size - np.searchsorted(flat, thr, side="left")
    bmaps: Dict[int, np.ndarray] = {}
    for t, key in zip(thr, n_on):
        key = int(key)
        if key not in bmaps:
            bmap = pb >= t
            bmaps[key] = thin_boundaries(bmap) if thin and key else bmap
    cache = _count_maps(bmaps, gts_f, max_dist, matcher)
    rows = np.array([cache[int(key)] for key in n_on], dtype=np.float64).reshape(thr.size, 4)
    return BoundaryCounts(thr, rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3])


def evaluate_boundary_maps(
    bmaps: Sequence[np.ndarray],
    gts: Sequence[np.ndarray],
    thresholds: Optional[Sequence[float]] = None,
    max_dist: float = DEFAULT_MAX_DIST,
    thin: bool = True,
    matcher: str = "fast",
) -> BoundaryCounts:
    """Counts of a list of binary boundary maps, one per "threshold" (the bench's ``segs`` input).

    ``thresholds`` defaults to ``1..len(bmaps)`` as in ``evaluation_bdry_image.m``.
    """
    if len(bmaps) == 0:
        raise ValueError("need at least one boundary map")
    thr = np.arange(1, len(bmaps) + 1, dtype=np.float64) if thresholds is None else _as_thresholds(thresholds)
    if thr.size != len(bmaps):
        raise ValueError(f"{len(bmaps)} maps but {thr.size} thresholds")
    _check_matcher(matcher)
    shape = np.asarray(bmaps[0]).shape
    gts_f = _check_gts(gts, shape)
    maps: Dict[int, np.ndarray] = {}
    for k, b in enumerate(bmaps):
        b = np.asarray(b) != 0
        if b.shape != shape:
            raise ValueError(f"boundary map {k} has shape {b.shape}, expected {shape}")
        maps[k] = thin_boundaries(b) if thin and b.any() else b
    cache = _count_maps(maps, gts_f, max_dist, matcher)
    rows = np.array([cache[k] for k in range(len(bmaps))], dtype=np.float64)
    return BoundaryCounts(thr, rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3])


def best_f_interpolated(thresholds, recall, precision, steps: int = 100) -> Tuple[float, float, float, float]:
    """Best F on the piecewise-linear interpolation between consecutive thresholds (``maxF`` of the bench).

    Returns ``(threshold, recall, precision, f)``; ties keep the first point met (the bench's strict ``>``).
    """
    t = np.asarray(thresholds, dtype=np.float64).ravel()
    r = np.asarray(recall, dtype=np.float64).ravel()
    p = np.asarray(precision, dtype=np.float64).ravel()
    if not (t.size == r.size == p.size) or t.size == 0:
        raise ValueError("thresholds, recall and precision must be non-empty and of equal length")
    if t.size == 1:
        return float(t[0]), float(r[0]), float(p[0]), float(f_measure(r[0], p[0]))
    d = np.linspace(0.0, 1.0, steps)[None, :]
    ti = (t[1:, None] * d + t[:-1, None] * (1 - d)).ravel()
    ri = (r[1:, None] * d + r[:-1, None] * (1 - d)).ravel()
    pi = (p[1:, None] * d + p[:-1, None] * (1 - d)).ravel()
    ti, ri, pi = (np.concatenate([[a[0]], b]) for a, b in ((t, ti), (r, ri), (p, pi)))
    fi = f_measure(ri, pi)
    k = int(np.argmax(fi))
    return float(ti[k]), float(ri[k]), float(pi[k]), float(fi[k])


def _unique_last(x: np.ndarray) -> np.ndarray:
    """Indices of the sorted unique values of ``x``, taking the LAST occurrence (MATLAB's legacy ``unique``)."""
    rev = x[::-1]
    _, idx = np.unique(rev, return_index=True)
    return x.size - 1 - idx


def average_precision(recall, precision) -> float:
    """AP of ``collect_eval_bdry.m``: P(R) interpolated at R = 0:0.01:1 (0 outside the curve), summed times 0.01.

    Duplicate recalls keep one point (MATLAB ``unique``: the last occurrence, i.e. the highest threshold).
    """
    r = np.asarray(recall, dtype=np.float64).ravel()
    p = np.asarray(precision, dtype=np.float64).ravel()
    if r.size != p.size:
        raise ValueError("recall and precision must have equal length")
    k = _unique_last(r)
    ru, pu = r[k], p[k]
    if ru.size < 2:
        return 0.0
    grid = np.round(np.arange(101) * 0.01, 10)
    vals = np.interp(grid, ru, pu)
    vals[(grid < ru[0]) | (grid > ru[-1])] = 0.0
    return float(vals.sum() * 0.01)


def recall_at_precision(recall, precision, level: float = 0.5) -> float:
    """R50 of ``edgesEvalDir.m``: recall where the data-set curve reaches precision ``level``, interpolated.

    Follows ``[~,k]=unique(R); ...; [~,o]=unique(P); R50 = interp1(P(o), R(o), max(P(o(1)), level))``: when every
    point is more precise than ``level`` the recall of the least precise point is returned; NaN when no point
    reaches ``level``.
    """
    r = np.asarray(recall, dtype=np.float64).ravel()
    p = np.asarray(precision, dtype=np.float64).ravel()
    if r.size != p.size or r.size == 0:
        raise ValueError("recall and precision must be non-empty and of equal length")
    k = _unique_last(r)[::-1]
    r, p = r[k], p[k]
    o = _unique_last(p)
    pu, ru = p[o], r[o]
    q = max(pu[0], level)
    if q > pu[-1]:
        return float("nan")
    if pu.size == 1:
        return float(ru[0])
    return float(np.interp(q, pu, ru))


def summarize(per_image: Dict[str, BoundaryCounts]) -> Dict[str, object]:
    """Data-set scores from per-image counts (``collect_eval_bdry.m`` + R50).

    Returns a dict with ``ods, ods_threshold, ods_r, ods_p, ois, ois_r, ois_p, ap, r50, images``, the data-set
    curve ``curve = {thresholds, r, p, f}`` and ``per_image = [{image_id, threshold, r, p, f}]`` (the
    interpolated per-image best, as ``eval_bdry_img.txt``), in the order given.
    """
    if not per_image:
        raise ValueError("no images to summarize")
    items = list(per_image.items())
    thr = items[0][1].thresholds
    tot = np.zeros((4, thr.size))
    ois = np.zeros(4)
    rows = []
    for image_id, c in items:
        if c.thresholds.shape != thr.shape or not np.allclose(c.thresholds, thr):
            raise ValueError(f"image {image_id} was evaluated at other thresholds than the first image")
        arr = np.stack([c.cnt_r, c.sum_r, c.cnt_p, c.sum_p])
        tot += arr
        k = int(np.argmax(c.f))  # first index of the max F: the bench's ff(1)
        ois += arr[:, k]
        rows.append({"image_id": str(image_id), **c.best()})
    R = _ratio(tot[0], tot[1])
    P = _ratio(tot[2], tot[3])
    F = f_measure(R, P)
    ods_t, ods_r, ods_p, ods_f = best_f_interpolated(thr, R, P)
    ois_r = _ratio(ois[0], ois[1])
    ois_p = _ratio(ois[2], ois[3])
    r50 = recall_at_precision(R, P, 0.5)
    return {
        "ods": ods_f,
        "ois": float(f_measure(ois_r, ois_p)),
        "ap": average_precision(R, P),
        "r50": None if math.isnan(r50) else r50,
        "images": len(items),
        "ods_threshold": ods_t,
        "ods_r": ods_r,
        "ods_p": ods_p,
        "ois_r": float(ois_r),
        "ois_p": float(ois_p),
        "curve": {"thresholds": thr.tolist(), "r": R.tolist(), "p": P.tolist(), "f": F.tolist()},
        "per_image": rows,
    }


class BoundaryEvaluator:
    """Accumulates per-image counts and summarizes them; usable from a validation loop or a benchmark.

    Args:
        thresholds: number of thresholds (``k/(n+1)``) or explicit values.
        max_dist: matching tolerance as a fraction of the image diagonal.
        thin: thin each thresholded map.
        matcher: ``"fast"`` or ``"official"``.
    """

    def __init__(self, thresholds: Thresholds = 99, max_dist: float = DEFAULT_MAX_DIST, thin: bool = True,
                 matcher: str = "fast") -> None:
        self.thresholds = _as_thresholds(thresholds)
        self.max_dist = float(max_dist)
        self.thin = bool(thin)
        self.matcher = _check_matcher(matcher)
        self.per_image: Dict[str, BoundaryCounts] = {}

    def update(self, image_id: str, pb: np.ndarray, gts: Sequence[np.ndarray]) -> BoundaryCounts:
        counts = evaluate_boundary_image(pb, gts, self.thresholds, self.max_dist, self.thin, self.matcher)
        self.add(image_id, counts)
        return counts

    def add(self, image_id: str, counts: BoundaryCounts) -> None:
        if str(image_id) in self.per_image:
            raise ValueError(f"image {image_id} was already added")
        self.per_image[str(image_id)] = counts

    def reset(self) -> None:
        self.per_image.clear()

    def compute(self) -> Dict[str, object]:
        return summarize(dict(sorted(self.per_image.items())))


def _evaluate_job(job) -> Tuple[str, BoundaryCounts]:
    image_id, pb, gts, thresholds, max_dist, thin, matcher = job
    if isinstance(pb, (list, tuple)):  # one binary map per threshold (the bench's ``segs`` input)
        return image_id, evaluate_boundary_maps(pb, gts, None, max_dist, thin, matcher)
    return image_id, evaluate_boundary_image(pb, gts, thresholds, max_dist, thin, matcher)


def evaluate_images(
    items: Iterable[Tuple[str, np.ndarray, Sequence[np.ndarray]]],
    thresholds: Thresholds = 99,
    max_dist: float = DEFAULT_MAX_DIST,
    thin: bool = True,
    workers: int = 1,
    progress: bool = True,
    total: Optional[int] = None,
    on_result: Optional[Callable[[str, BoundaryCounts], None]] = None,
    matcher: str = "fast",
) -> Dict[str, BoundaryCounts]:
    """Evaluate many ``(image_id, pb, gts)`` items, images in parallel (spawn-safe process pool).

    ``pb`` is a soft map [H, W] (thresholded at ``thresholds``) or a list of binary maps, one per threshold.
    ``items`` may be a lazy generator (e.g. a model producing edge maps): it is consumed while workers match.
    ``on_result(image_id, counts)`` is called as each image finishes (e.g. to cache it on disk).
    ``matcher``: ``"fast"`` (default) or ``"official"`` (the bench's ``correspondPixels``, ~15x slower).
    Returns the per-image counts keyed by image id, sorted by id.
    """
    from tqdm.auto import tqdm

    thr = _as_thresholds(thresholds)
    _check_matcher(matcher)
    jobs: Iterator = ((i, pb, g, thr, float(max_dist), bool(thin), matcher) for i, pb, g in items)
    out: Dict[str, BoundaryCounts] = {}
    bar = tqdm(total=total, desc="BSDS matching", unit="img", disable=not progress)
    try:
        if workers <= 1:
            for job in jobs:
                k, c = _evaluate_job(job)
                out[str(k)] = c
                if on_result is not None:
                    on_result(str(k), c)
                bar.update(1)
        else:
            ctx = mp.get_context("spawn")
            with ctx.Pool(processes=int(workers)) as pool:
                for k, c in pool.imap_unordered(_evaluate_job, jobs):
                    out[str(k)] = c
                    if on_result is not None:
                        on_result(str(k), c)
                    bar.update(1)
    finally:
        bar.close()
    return dict(sorted(out.items()))
