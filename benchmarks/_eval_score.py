"""Scoring and printing of a COCO / LVIS benchmark run: mIoU (overall, small / medium / large by annotation area),
AP (pycocotools, or the official LVIS evaluator), class-agnostic AR@100/1000 (COCOeval, useCats=0), in percent;
``format_table`` prints them beside the paper's Table 5/6 rows (``benchmarks.toolkit.paper``: ``TABLE5_6``,
``TABLE5_6_R1024``).
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping, Sequence

from benchmarks.toolkit.paper import TABLE5_6, TABLE5_6_R1024

__all__ = ["miou_row", "score", "format_table"]


def _pct(x: float | None) -> float | None:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return 100.0 * float(x)


def miou_row(ious: Sequence[float], areas: Sequence[float], name: str = "1box") -> dict[str, Any]:
    """``miou_<name>`` and ``miou_<name>_<small|medium|large>`` in percent (None for an empty group), the key names
    of the benchmarks' tables and JSON, from per-instance IoUs and annotation areas."""
    from litesam_pl.metrics.miou import summarize_miou

    s = summarize_miou(ious, areas)
    return {f"miou_{name}": _pct(s["miou"]), **{f"miou_{name}_{g}": _pct(s[f"miou_{g}"])
                                                for g in ("small", "medium", "large")}}


def score(dataset_kind: str, gt: str | os.PathLike | dict, run: Mapping[str, Any], *, max_proposals: int = 1000,
          lvis_backend: str = "lvis") -> dict[str, Any]:
    """The Table-5/6 numbers (percent) of an ``evaluate_instances`` run.

    ``gt`` is the annotation file (read afresh: the evaluators rewrite GT records in place) or its dict (copied).
    """
    from litesam_pl.metrics.coco import lvis_ap, mask_ap, proposal_recall_coco
    from litesam_pl.metrics.miou import summarize_miou

    out: dict[str, Any] = {}
    for name, ious in (("1box", run["box_ious"]), ("1point", run["point_ious"])):
        out.update(miou_row(ious, run["areas"], name))
    counts = summarize_miou(run["box_ious"], run["areas"])
    for g in ("small", "medium", "large"):
        out[f"instances_{g}"] = counts[f"n_{g}"]
    img_ids = run["image_ids"]
    if dataset_kind == "lvis":
        ap = lvis_ap(gt, run["results"], img_ids=img_ids, max_dets=300, backend=lvis_backend)
        keys = ("ap", "ap50", "ap75", "ap_s", "ap_m", "ap_l", "ap_r", "ap_c", "ap_f")
    else:
        ap = mask_ap(gt, run["results"], img_ids=img_ids)
        keys = ("ap", "ap50", "ap75", "ap_s", "ap_m", "ap_l")
    for k in keys:
        out[k] = _pct(ap[k])
    if run.get("proposals_evaluated"):
        if dataset_kind == "lvis":  # pycocotools wants iscrowd; LVIS has no crowd regions
            if not isinstance(gt, Mapping):
                with open(gt) as f:
                    gt = json.load(f)
            gt = {**gt, "annotations": [{**a, "iscrowd": 0} for a in gt["annotations"]]}
        dets = sorted({100, max_proposals})
        ar = proposal_recall_coco(gt, run["proposals"], img_ids=img_ids, max_dets=dets, iou_type="segm")
        out["ar1000" if max_proposals == 1000 else f"ar{max_proposals}"] = _pct(ar[f"ar@{max_proposals}"])
        out["ar100"] = _pct(ar["ar@100"])
        for g in ("s", "m", "l"):
            out[f"ar1000_{g}" if max_proposals == 1000 else f"ar{max_proposals}_{g}"] = _pct(ar[f"ar_{g}@{max_proposals}"])
    else:
        out["ar1000"] = None
    return out


# ------------------------------------------------------------------------------------------------- output


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.1f}"


def format_table(dataset_kind: str, ours: Mapping[str, Any] | None, label: str,
                 extra_rows: Sequence[tuple[str, Mapping[str, Any]]] = ()) -> str:
    """A Table-5-shaped block (mIoU 1-box / 1-point, AP, AP_S/M/L) plus Table 6's Mask AR@1000; ``extra_rows``
    (the classical baselines, ``benchmarks.baselines.baseline_rows``) follow ours (None: no row of ours)."""
    cols = [("1-box mIoU", "miou_1box"), ("1-point mIoU", "miou_1point"), ("AP", "ap"), ("AP_S", "ap_s"),
            ("AP_M", "ap_m"), ("AP_L", "ap_l"), ("AR@1000", "ar1000")]
    if dataset_kind == "lvis":
        cols += [("AP_r", "ap_r"), ("AP_c", "ap_c"), ("AP_f", "ap_f")]
    rows = [("Lite-SAM (paper, r640)", TABLE5_6[dataset_kind]),
            ("Lite-SAM (paper, r1024)", TABLE5_6_R1024[dataset_kind])]
    rows += ([(label, ours)] if ours is not None else []) + list(extra_rows)
    w0 = max(len(r[0]) for r in rows) + 2
    title = {"coco": "MSCOCO 2017 val", "lvis": "LVIS val"}[dataset_kind]
    head = f"{'Model':<{w0}}" + "".join(f"{c:>14}" for c, _ in cols)
    lines = [f"Table 5/6 ({title}; percent; AR@1000 is Table 6, class-agnostic SegEvery proposals)", head,
             "-" * len(head)]
    for name, vals in rows:
        lines.append(f"{name:<{w0}}" + "".join(f"{_fmt(vals.get(k)):>14}" for _, k in cols))
    return "\n".join(lines)
