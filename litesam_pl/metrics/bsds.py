"""BSDS500 boundary benchmark: ODS, OIS, AP and R50 exactly as the original MATLAB bench computes them.

Arrays in, numbers out; this module knows nothing of models.

Per image (``evaluation_bdry_image.m``): for each threshold ``t`` the soft boundary map ``pb`` (HxW, values in
[0, 1]) becomes ``bmap = pb >= t``, is thinned to one-pixel width (``bwmorph(bmap, 'thin', inf)``), and is matched
against every annotator's boundary map with ``correspondPixels`` (max distance ``max_dist`` times the image
diagonal, outlier cost 100).  Recall counts ``cntR``/``sumR`` are summed over the annotators (a GT pixel counts
once per annotator); a predicted pixel is correct (``cntP``) when it matches *any* annotator, ``sumP`` is the
number of predicted pixels.

Over the data set (``collect_eval_bdry.m``, plus R50 from the Structured Edge toolbox's ``edgesEvalDir.m``):
ODS, OIS, AP and R50 from the summed counts, at home in ``metrics.bsds_scores`` (which says how each is computed)
and re-exported here.

Matchers (``matcher=``): ``"official"`` is pyEdgeEval's build of the benchmark's own C++ matcher
(``correspond_pixels``, randomised, ~1 s per dense map); ``"fast"`` (default) is ``bsds_match.FastMatcher``: the
maximum-cardinality matching of the same pixel pairs, the predicted pixels of a min-cost one, minus the expected
pairs the official outlier graph gives up.  Per-image F agrees with the official matcher within 0.001 at ~15x the
speed (docs/benchmarks.md).  Distinct thresholded maps are matched once: thresholds that select the same pixel set
share the result.  Thinning is ``bsds_match.thin``, identical to skimage's ``thin``.
"""
from __future__ import annotations

import multiprocessing as mp
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from litesam_pl.metrics.bsds_scores import (
    BoundaryCounts,
    average_precision,
    best_f_interpolated,
    f_measure,
    recall_at_precision,
    summarize,
)

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
    from pyEdgeEval import correspond_pixels

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
