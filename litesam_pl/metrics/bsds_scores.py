"""BSDS500 data-set scores from per-image match counts: ODS, OIS, AP and R50 as the MATLAB bench computes them.

``collect_eval_bdry.m`` plus R50 from the Structured Edge toolbox's ``edgesEvalDir.m`` (see ``metrics.bsds``, which
produces the counts and re-exports everything here):

- ODS: counts summed over images per threshold -> R, P, F; the best F is searched on the linear interpolation
  between consecutive thresholds (100 steps).
- OIS: per image, the threshold of its best (non-interpolated) F; the counts there are summed over images.
- AP: the data-set P(R) curve linearly interpolated at R = 0:0.01:1 (points outside the curve count 0), summed
  and multiplied by 0.01.
- R50: recall at 50% precision, interpolated on the data-set curve.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

__all__ = [
    "BoundaryCounts",
    "f_measure",
    "best_f_interpolated",
    "average_precision",
    "recall_at_precision",
    "summarize",
]


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
