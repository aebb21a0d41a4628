"""Classical reference rows of ``benchmarks.coco`` / ``benchmarks.lvis`` (evaluation only, not for users' images).

Both baselines get the same prompt as the model's 1-box column: the instance's GT box, on the same instances
(``_eval_prompting.evaluate_instances`` calls ``Baselines`` once per image with the instances it prompts, after
its crowd / empty rules), and are scored with the same ``summarize_miou`` size groups (annotation area):

- ``box_fill``: the box itself as the mask, pixel-centre rule (``integer_box``): pixel (row, col) is in when
  its centre ``(col + 0.5, row + 0.5)`` lies in ``[x, x + w) x [y, y + h)``, i.e. columns ``ceil(x - 0.5)`` ..
  ``ceil(x + w - 0.5) - 1``, rows likewise, clipped to the image: the pixels pycocotools gives the box's
  polygon, the way COCO GT masks are rasterised. A box thinner than a pixel that holds no pixel centre takes the
  nearest column (row): the one holding the box's centre, ``floor(x + w / 2)``; so a box with ``w, h > 0``
  inside the image never gives an empty mask. ``box_fill_mask``.
- ``box_ellipse``: the ellipse inscribed in the box (centre and semi-axes of the COCO box; a pixel is in when its
  centre lies in the ellipse), within ``integer_box``'s pixels; one that holds no pixel centre takes the pixel
  holding the box's centre. No image is read: it is the shape prior alone ("objects are roundish and fill their
  box"), what a model that has learnt where a box ends but not yet what is in it would score. ``box_ellipse_mask``.
- ``grabcut``: OpenCV GrabCut (``cv2.grabCut``, ``GC_INIT_WITH_RECT`` on that same pixel box, 5 iterations,
  whole image, RNG seeded per instance so a result does not depend on the order), foreground = ``GC_FGD`` or
  ``GC_PR_FGD``. ``grabcut_mask(crop=True)`` runs it on a crop around the box instead (``grabcut_crop``: the
  box plus ``max(16, ceil(0.5 * side))`` px on each side, clipped to the image, pasted back into a full-size
  mask): faster, but a background model learnt from a thin margin around the box empties many more small and
  medium masks, so the rows use the whole image (the figures: docs/benchmarks.md, "Classical 1-box references").
  A box GrabCut cannot take (a side under 2 px, or a box covering the whole image: no background samples) or a
  ``cv2.error`` falls back to ``box_fill`` and is counted (``fallbacks``); an empty GrabCut result is kept
  (IoU 0) and counted (``empty_masks``).
"""
from __future__ import annotations

import argparse
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = [
    "BASELINES",
    "GRABCUT_ITERATIONS",
    "integer_box",
    "grabcut_crop",
    "box_fill_mask",
    "box_ellipse_mask",
    "grabcut_mask",
    "Baselines",
    "add_baseline_args",
    "check_baseline_args",
    "make_baselines",
    "format_baseline_table",
    "baseline_rows",
]

GRABCUT_ITERATIONS = 5
GRABCUT_MIN_SIDE = 2  # pixels: a thinner box is a line, GrabCut has nothing to separate
GRABCUT_MARGIN_MIN = 16  # grabcut_mask(crop=True): the crop reaches at least this many pixels past the box ...
GRABCUT_MARGIN_FRAC = 0.5  # ... or this fraction of the box's side, whichever is larger
BASELINES: dict[str, str] = {
    "box_fill": "the GT box as the mask (pixel-centre rule: columns ceil(x-0.5)..ceil(x+w-0.5)-1, rows likewise, "
                "clipped; a box holding no pixel centre takes the column / row of its centre)",
    "box_ellipse": "the ellipse inscribed in the GT box (pixel centres inside it, within the box_fill pixels; an "
                   "ellipse holding no pixel centre takes the pixel of the box's centre)",
    "grabcut": f"cv2.grabCut, GC_INIT_WITH_RECT on the same pixel box, {GRABCUT_ITERATIONS} iterations, whole "
               "image, cv2.setRNGSeed(0) per instance; fallback to box_fill on a degenerate box or a cv2.error",
}
LABELS = {"box_fill": "box fill (GT box as mask)", "box_ellipse": "ellipse in the GT box", "grabcut": f"GrabCut (GT box, {GRABCUT_ITERATIONS} iter)"}


# ------------------------------------------------------------------------------------------------ masks


def _pixel_span(start: float, size: float, limit: int) -> tuple[int, int]:
    """Pixels ``[i0, i1)`` whose centre ``i + 0.5`` lies in ``[start, start + size)``, clipped to ``[0, limit)``;
    none holds a centre and ``size > 0``: the pixel holding the interval's centre."""
    i0, i1 = int(math.ceil(start - 0.5)), int(math.ceil(start + size - 0.5))
    if i1 <= i0:
        if size > 0:
            i0 = int(math.floor(start + size / 2))
            i1 = i0 + 1
        else:
            i1 = i0
    i0 = min(max(i0, 0), limit)
    return i0, min(max(i1, i0), limit)


def integer_box(box_xywh: Sequence[float], height: int, width: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` (exclusive ends) of a COCO ``[x, y, w, h]`` box's pixels, clipped to the image.

    Pixel-centre rule: pixel (row, col) is in when ``(col + 0.5, row + 0.5)`` lies in ``[x, x + w) x [y, y + h)``
    (the pixels pycocotools gives the box as a polygon). An axis holding no pixel centre (a box thinner than a
    pixel) with a positive size takes the one pixel holding the box's centre on that axis.
    """
    x, y, w, h = (float(v) for v in box_xywh)
    x0, x1 = _pixel_span(x, w, width)
    y0, y1 = _pixel_span(y, h, height)
    return x0, y0, x1, y1


def grabcut_crop(box: tuple[int, int, int, int], height: int, width: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of the image region GrabCut runs on for the pixel ``box`` (from ``integer_box``):
    the box plus ``max(GRABCUT_MARGIN_MIN, ceil(GRABCUT_MARGIN_FRAC * side))`` px on each side (the box's width
    left and right, its height above and below), clipped to the image."""
    x0, y0, x1, y1 = box
    mx = max(GRABCUT_MARGIN_MIN, int(math.ceil(GRABCUT_MARGIN_FRAC * (x1 - x0))))
    my = max(GRABCUT_MARGIN_MIN, int(math.ceil(GRABCUT_MARGIN_FRAC * (y1 - y0))))
    return max(x0 - mx, 0), max(y0 - my, 0), min(x1 + mx, width), min(y1 + my, height)


def box_fill_mask(box_xywh: Sequence[float], height: int, width: int) -> np.ndarray:
    """bool ``[H, W]``: the pixels of ``integer_box`` set."""
    x0, y0, x1, y1 = integer_box(box_xywh, height, width)
    m = np.zeros((height, width), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def box_ellipse_mask(box_xywh: Sequence[float], height: int, width: int) -> np.ndarray:
    """bool ``[H, W]``: pixel centres inside the ellipse inscribed in the COCO box, within ``integer_box``."""
    x, y, w, h = (float(v) for v in box_xywh)
    x0, y0, x1, y1 = integer_box(box_xywh, height, width)
    m = np.zeros((height, width), dtype=bool)
    if x1 <= x0 or y1 <= y0:
        return m
    cx, cy = x + w / 2, y + h / 2
    xs = (np.arange(x0, x1) + 0.5 - cx) / max(w / 2, 1e-9)
    ys = (np.arange(y0, y1) + 0.5 - cy) / max(h / 2, 1e-9)
    inside = ys[:, None] ** 2 + xs[None, :] ** 2 <= 1.0
    if not inside.any():
        inside[min(max(int(math.floor(cy)) - y0, 0), y1 - y0 - 1), min(max(int(math.floor(cx)) - x0, 0), x1 - x0 - 1)] = True
    m[y0:y1, x0:x1] = inside
    return m


def grabcut_mask(image: np.ndarray, box_xywh: Sequence[float], iterations: int = GRABCUT_ITERATIONS,
                 seed: int = 0, crop: bool = False) -> tuple[np.ndarray, str | None]:
    """GrabCut of ``image`` (uint8 RGB ``[H, W, 3]``) from the box; returns ``(mask, fallback_reason)``.

    ``crop``: run on ``grabcut_crop`` of the box and paste the result into a full-size mask (faster, lower mIoU
    on COCO: see the module docstring; the baseline rows use the whole image). ``fallback_reason`` is None
    when GrabCut ran, else ``"degenerate_box"`` or ``"error"`` and the mask is ``box_fill_mask``.
    """
    import cv2

    h, w = image.shape[:2]
    x0, y0, x1, y1 = integer_box(box_xywh, h, w)
    if x1 - x0 < GRABCUT_MIN_SIDE or y1 - y0 < GRABCUT_MIN_SIDE or (x0, y0, x1, y1) == (0, 0, w, h):
        return box_fill_mask(box_xywh, h, w), "degenerate_box"
    cx0, cy0, cx1, cy1 = grabcut_crop((x0, y0, x1, y1), h, w) if crop else (0, 0, w, h)
    bgr = np.ascontiguousarray(image[cy0:cy1, cx0:cx1, ::-1], dtype=np.uint8)
    mask = np.zeros(bgr.shape[:2], np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.setRNGSeed(int(seed))
        cv2.grabCut(bgr, mask, (x0 - cx0, y0 - cy0, x1 - x0, y1 - y0), bgd, fgd, int(iterations),
                    cv2.GC_INIT_WITH_RECT)
    except cv2.error:
        return box_fill_mask(box_xywh, h, w), "error"
    out = np.zeros((h, w), dtype=bool)
    out[cy0:cy1, cx0:cx1] = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    return out, None


# ------------------------------------------------------------------------------------------- collection


class Baselines:
    """Per-image hook of ``evaluate_instances`` (``instance_hook=``): scores each baseline on the same instances.

    Called as ``hook(sample, anns, gt)`` with the prompted annotations and their GT masks ``[K, H, W]``; returns
    a progress-bar postfix. ``summary()`` gives the JSON block.
    """

    def __init__(self, names: Sequence[str] = tuple(BASELINES), grabcut_iterations: int = GRABCUT_ITERATIONS):
        unknown = [n for n in names if n not in BASELINES]
        if unknown:
            raise ValueError(f"unknown baselines {unknown}; known: {list(BASELINES)}")
        self.names = list(names)
        self.iterations = int(grabcut_iterations)
        self.ious: dict[str, list[float]] = {n: [] for n in self.names}
        self.areas: list[float] = []
        self.seconds: dict[str, float] = {n: 0.0 for n in self.names}
        self.fallbacks: dict[str, int] = {"degenerate_box": 0, "error": 0}
        self.empty_masks = 0

    def _masks(self, name: str, image: np.ndarray, anns: Sequence[Mapping[str, Any]], h: int, w: int) -> np.ndarray:
        if name == "box_fill":
            return np.stack([box_fill_mask(a["bbox"], h, w) for a in anns])
        if name == "box_ellipse":
            return np.stack([box_ellipse_mask(a["bbox"], h, w) for a in anns])
        out = []
        for a in anns:
            m, reason = grabcut_mask(image, a["bbox"], self.iterations)
            if reason is not None:
                self.fallbacks[reason] += 1
            elif not m.any():
                self.empty_masks += 1
            out.append(m)
        return np.stack(out)

    def __call__(self, sample: Any, anns: Sequence[Mapping[str, Any]], gt: np.ndarray) -> dict[str, Any]:
        from benchmarks.toolkit.timing import Laps
        from litesam_pl.metrics.miou import mask_ious

        if anns:
            h, w = gt.shape[-2:]
            for name in self.names:
                laps = Laps()
                masks = self._masks(name, sample.image, anns, h, w)
                self.ious[name] += np.atleast_1d(mask_ious(masks, gt)).tolist()
                self.seconds[name] += laps.lap()
            self.areas += [float(a["area"]) for a in anns]
        return {"gc_fallback": sum(self.fallbacks.values())} if "grabcut" in self.names else {}

    def state(self) -> dict[str, Any]:
        """What ``load_states`` needs of this rank's collection (plain, picklable)."""
        return {"names": list(self.names), "iterations": self.iterations, "ious": self.ious, "areas": self.areas,
                "seconds": self.seconds, "fallbacks": self.fallbacks, "empty_masks": self.empty_masks}

    def load_states(self, states: Sequence[Mapping[str, Any]], per_rank_counts: Sequence[Sequence[int]]) -> None:
        """Replace this collection with the union of the ranks' ``state()`` (a torchrun run of
        ``benchmarks.coco`` / ``lvis``): IoUs and areas in the single-process image order
        (``_eval_dist.interleave``; ``per_rank_counts[r]``: instances per image of rank r), counters and
        seconds summed."""
        from benchmarks._eval_dist import interleave

        for st in states:
            if st["names"] != self.names or st["iterations"] != self.iterations:
                raise RuntimeError("the ranks ran different baselines")
        self.areas = [float(a) for a in interleave([st["areas"] for st in states], per_rank_counts)]
        self.ious = {n: interleave([st["ious"][n] for st in states], per_rank_counts) for n in self.names}
        self.seconds = {n: sum(st["seconds"][n] for st in states) for n in self.names}
        self.fallbacks = {k: sum(st["fallbacks"][k] for st in states) for k in self.fallbacks}
        self.empty_masks = sum(int(st["empty_masks"]) for st in states)

    def summary(self, areas: Sequence[float] | None = None) -> dict[str, dict[str, Any]]:
        """``{name: {miou_1box, miou_1box_small/medium/large (percent), instances(_small/...), seconds, ...}}``.

        ``areas``: the model run's per-instance areas, checked equal to the baselines' own (same instances).
        """
        from benchmarks._eval_score import miou_row
        from litesam_pl.metrics.miou import area_group

        if areas is not None and list(map(float, areas)) != self.areas:
            raise RuntimeError("the baselines were not scored on the model's instances")
        counts = {f"instances_{g}": int(m.sum()) for g, m in area_group(self.areas).items()}
        out: dict[str, dict[str, Any]] = {}
        for name in self.names:
            row: dict[str, Any] = miou_row(self.ious[name], self.areas)
            row.update(counts)
            row.update(instances=len(self.areas), seconds=round(self.seconds[name], 2), method=BASELINES[name])
            if name == "grabcut":
                row.update(iterations=self.iterations, fallbacks=sum(self.fallbacks.values()),
                           fallback_reasons=dict(self.fallbacks), empty_masks=self.empty_masks)
            out[name] = row
        return out


# --------------------------------------------------------------------------------------------- CLI / print


def add_baseline_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("classical baselines (1-box mIoU on the same instances)")
    g.add_argument("--no-baselines", action="store_true",
                   help="skip the box-fill and GrabCut reference rows (on by default; GrabCut takes ~0.5-4 s "
                        "per instance on a CPU)")
    g.add_argument("--baselines-only", action="store_true",
                   help="score only the baselines: no model, no --ckpt, no AP / AR")
    g.add_argument("--baselines", nargs="+", default=list(BASELINES), choices=list(BASELINES), metavar="NAME",
                   help=f"which baselines (default: all of {', '.join(BASELINES)})")


def check_baseline_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.baselines_only and args.no_baselines:
        p.error("--baselines-only and --no-baselines exclude each other")
    if args.baselines_only and args.ckpt:
        p.error("--baselines-only evaluates no model: drop --ckpt")


def make_baselines(args: argparse.Namespace) -> Baselines | None:
    return None if args.no_baselines else Baselines(list(dict.fromkeys(args.baselines)))


def baseline_rows(summary: Mapping[str, Mapping[str, Any]] | None) -> list[tuple[str, Mapping[str, Any]]]:
    """``(label, numbers)`` rows for ``_eval_score.format_table`` (only the 1-box column is filled)."""
    return [(LABELS[k], v) for k, v in (summary or {}).items()]


def format_baseline_table(summary: Mapping[str, Mapping[str, Any]], ours: Mapping[str, Any] | None = None,
                          label: str = "ours") -> str:
    """1-box mIoU overall and by COCO size group, the model (if any) and each baseline, same instances."""
    cols = [("all", "miou_1box"), ("small", "miou_1box_small"), ("medium", "miou_1box_medium"),
            ("large", "miou_1box_large")]
    rows: list[tuple[str, Mapping[str, Any], str]] = []
    if ours is not None:
        rows.append((label, ours, ""))
    for name, v in summary.items():
        note = ""
        if name == "grabcut":
            note = f"{v['fallbacks']} fell back to box fill, {v['empty_masks']} empty"
        rows.append((LABELS[name], v, note))
    title = "1-box mIoU, same instances"
    w0 = max(len(title), *(len(r[0]) for r in rows)) + 2
    fmt: Callable[[Any], str] = lambda x: "-" if x is None else f"{x:.1f}"  # noqa: E731
    head = f"{title:<{w0}}" + "".join(f"{c:>9}" for c, _ in cols) + "  notes"
    lines = [head, "-" * len(head)]
    for name, vals, note in rows:
        lines.append(f"{name:<{w0}}" + "".join(f"{fmt(vals.get(k)):>9}" for _, k in cols) + f"  {note}".rstrip())
    return "\n".join(lines)
