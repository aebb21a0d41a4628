"""LVIS AP (federated: negative / not-exhaustive categories), AP_S/M/L and AP_r/c/f.

``lvis_ap(gt, predictions, max_dets=300, backend="lvis"|"faster")`` runs the official ``lvis`` API (with numpy-2
compatibility patched at the boundary: ``numpy_float_alias``) or ``faster_coco_eval``'s LVIS mode (tested equal).
Re-exported by ``litesam_pl.metrics.coco`` (and ``litesam_pl.metrics``).
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
from collections import defaultdict
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from litesam_pl.metrics.cocotools import (
    AP_KEYS,
    AREA_LABELS,
    load_json,
    mean_valid,
    restrict_img_ids,
    silence_prints,
    cocoeval_summary,
)

__all__ = ["LVIS_AP_KEYS", "lvis_ap", "numpy_float_alias"]

LVIS_AP_KEYS = AP_KEYS + ("ap_r", "ap_c", "ap_f")


@contextlib.contextmanager
def numpy_float_alias() -> Iterator[None]:
    """Temporarily restore ``np.float`` (removed in numpy 1.24) for ``lvis==0.5.3``'s ``LVISEval.accumulate``."""
    added = "float" not in np.__dict__
    if added:
        np.float = float  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if added:
            del np.float  # type: ignore[attr-defined]


def _lvis_dataset(gt: Any) -> dict:
    """A fresh LVIS dataset dict (LVISEval rewrites GT segmentations in place, so never share one)."""
    if isinstance(gt, (str, os.PathLike)):
        data = load_json(gt)
    elif isinstance(gt, Mapping):
        data = copy.deepcopy(dict(gt))
    elif hasattr(gt, "dataset"):
        data = copy.deepcopy(gt.dataset)
    else:
        raise TypeError(f"unsupported LVIS ground truth type {type(gt).__name__}")
    for key in ("categories",):
        if key not in data:
            raise ValueError(f"LVIS ground truth lacks {key!r}")
    if data["images"] and "neg_category_ids" not in data["images"][0]:
        raise ValueError("not an LVIS file: images lack 'neg_category_ids' / 'not_exhaustive_category_ids'")
    return data


def _limit_per_image(results: list[dict], max_dets: int) -> list[dict]:
    """LVIS' rule (``LVISResults.limit_dets_per_image``): keep each image's top ``max_dets`` by score."""
    if max_dets < 0:
        return results
    by_img: dict[int, list[dict]] = defaultdict(list)
    for r in results:
        by_img[int(r["image_id"])].append(r)
    out: list[dict] = []
    for anns in by_img.values():
        if len(anns) > max_dets:
            anns = sorted(anns, key=lambda a: a["score"], reverse=True)[:max_dets]
        out += anns
    return out


def _lvis_official(data: dict, results: list[dict], iou_type: str, img_ids: list[int], max_dets: int) -> dict:
    from lvis import LVISEval, LVISResults

    from litesam_pl.compat import empty_lvis_results, lvis_from_dict

    lvis_gt = lvis_from_dict(data)
    if results:
        with silence_prints():
            lvis_dt = LVISResults(lvis_gt, results, max_dets=max_dets)
    else:  # LVISResults indexes results[0]; an empty result set is simply no detection
        lvis_dt = empty_lvis_results(lvis_gt)
    e = LVISEval(lvis_gt, lvis_dt, iou_type)
    e.params.img_ids = img_ids
    with numpy_float_alias():
        e.evaluate()
        e.accumulate()
    prec = e.eval["precision"]  # [T, R, K, A]
    rec = e.eval["recall"]  # [T, K, A]
    lbl = e.params.area_rng_lbl
    t50 = int(np.argmin(np.abs(e.params.iou_thrs - 0.5)))
    t75 = int(np.argmin(np.abs(e.params.iou_thrs - 0.75)))
    a = lbl.index("all")
    out = {
        "ap": mean_valid(prec[..., a]), "ap50": mean_valid(prec[t50, ..., a]), "ap75": mean_valid(prec[t75, ..., a]),
        "ap_s": mean_valid(prec[..., lbl.index("small")]), "ap_m": mean_valid(prec[..., lbl.index("medium")]),
        "ap_l": mean_valid(prec[..., lbl.index("large")]),
    }
    for name, group in zip(("ap_r", "ap_c", "ap_f"), e.freq_groups):
        out[name] = mean_valid(prec[:, :, group, a])
    out[f"ar@{max_dets}"] = mean_valid(rec[..., a])
    for short in ("s", "m", "l"):
        out[f"ar_{short}@{max_dets}"] = mean_valid(rec[..., lbl.index(AREA_LABELS[short])])
    return out


def _lvis_faster(data: dict, results: list[dict], iou_type: str, img_ids: list[int], max_dets: int) -> dict:
    from faster_coco_eval import COCO as FCOCO
    from faster_coco_eval import COCOeval_faster

    results = _limit_per_image(results, max_dets)
    logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)
    coco_gt = FCOCO(data)
    if results:
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
    else:
        coco_dt = FCOCO({**{k: v for k, v in data.items() if k != "annotations"}, "annotations": []})
    e = COCOeval_faster(coco_gt, coco_dt, iou_type, lvis_style=True, print_function=lambda *a, **k: None)
    e.params.imgIds = img_ids
    # LVIS caps detections per image (above), not per (image, category): no per-category cut here.
    e.params.maxDets = [max_dets if max_dets > 0 else max(_count_per_image(results).values(), default=1)]
    e.evaluate()
    e.accumulate()
    out = cocoeval_summary(e, e.params.maxDets[0])
    out = {k: v for k, v in out.items() if k.startswith("ap")}
    prec = e.eval["precision"]
    a = e.params.areaRngLbl.index("all")
    for name, group in zip(("ap_r", "ap_c", "ap_f"), e.freq_groups):
        out[name] = mean_valid(prec[:, :, group, a, 0])
    rec = e.eval["recall"]
    out[f"ar@{max_dets}"] = mean_valid(rec[:, :, a, 0])
    for short in ("s", "m", "l"):
        out[f"ar_{short}@{max_dets}"] = mean_valid(rec[:, :, e.params.areaRngLbl.index(AREA_LABELS[short]), 0])
    return out


def _count_per_image(results: list[dict]) -> dict[int, int]:
    c: dict[int, int] = defaultdict(int)
    for r in results:
        c[int(r["image_id"])] += 1
    return c


def lvis_ap(
    gt: Any,
    predictions: Any,
    *,
    img_ids: Iterable[int] | None = None,
    max_dets: int = 300,
    iou_type: str = "segm",
    backend: str = "lvis",
) -> dict[str, float]:
    """LVIS AP (federated: negative / not-exhaustive categories), AP_S/M/L and AP_r/c/f.

    Args:
        gt: LVIS annotation file, its dict, or an ``lvis.LVIS`` (its dataset is copied, never modified).
        predictions: results records (``image_id``, ``category_id``, ``segmentation`` RLE / ``bbox``, ``score``).
        img_ids: evaluate only these images; default all.
        max_dets: detections kept per image, by score (LVIS: 300).
        backend: ``"lvis"`` runs the official ``lvis.LVISEval`` (with ``np.float`` restored for the call);
            ``"faster"`` runs ``faster_coco_eval`` with ``lvis_style=True`` (tested equal to ``"lvis"``).

    Returns:
        ``{"ap", "ap50", "ap75", "ap_s", "ap_m", "ap_l", "ap_r", "ap_c", "ap_f", "ar@<max_dets>", ...}``.
    """
    if iou_type not in ("segm", "bbox"):
        raise ValueError(f"iou_type must be 'segm' or 'bbox', got {iou_type!r}")
    data = _lvis_dataset(gt)
    if isinstance(predictions, (str, os.PathLike)):
        with open(predictions) as f:
            predictions = json.load(f)
    results = []
    for r in predictions:
        r = dict(r)
        if iou_type == "segm":
            if "segmentation" not in r:
                raise ValueError("segm evaluation needs 'segmentation' in every prediction record")
            r.pop("bbox", None)
        results.append(r)
    ids = restrict_img_ids((img["id"] for img in data["images"]), img_ids)
    if backend == "lvis":
        return _lvis_official(data, results, iou_type, ids, max_dets)
    if backend == "faster":
        return _lvis_faster(data, results, iou_type, ids, max_dets)
    raise ValueError(f"backend must be 'lvis' or 'faster', got {backend!r}")
