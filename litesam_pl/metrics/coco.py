"""COCO / LVIS scoring: mask AP (Table 5), class-agnostic proposal recall AR@1000 (Table 6), LVIS AP_r/c/f.

Arrays or COCO-format records in, numbers out (fractions in [0, 1]; ``nan`` where a metric is undefined, e.g.
AP_S on a set without small objects). Everything runs on ``pycocotools`` (COCO), the official ``lvis`` API
(LVIS, with numpy-2 compatibility patched at the boundary) or ``faster_coco_eval``'s LVIS mode.

Main entry points (used by both the LightningModules' validation and ``benchmarks.coco`` / ``benchmarks.lvis``),
all importable from here:

- ``mask_ap(gt, predictions)``: COCO AP, AP50, AP75, AP_S/M/L. ``gt`` is an annotation file, a COCO dict,
  a ``pycocotools.coco.COCO`` or per-image arrays; ``predictions`` COCO results records or per-image arrays.
- ``mask_ap_from_ious(items)``: the same numbers from per-image detection x GT IoU matrices (no masks).
- ``proposal_recall(gt, proposals, max_dets=(100, 1000), iou_type="bbox"|"segm")``: class-agnostic AR@k from
  per-image arrays (every instance one category, ``useCats=0``); ``proposal_recall_coco(gt, records)``: the same
  on an official annotation file (crowd regions ignored). Home: ``metrics.coco_recall``.
- ``lvis_ap(gt, predictions, max_dets=300, backend="lvis"|"faster")``: LVIS AP, AP_S/M/L, AP_r/c/f. Home:
  ``metrics.lvis_eval``.
- ``results_from_masks(image_id, masks, scores, category_ids)``: COCO results records (compressed RLE); with
  ``load_coco`` / ``coco_from_arrays`` / ``results_from_boxes`` at home in ``metrics.cocotools``.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from litesam_pl.metrics.coco_recall import proposal_recall, proposal_recall_coco
from litesam_pl.metrics.cocotools import (
    AP_KEYS,
    GtLike,
    coco_from_arrays,
    load_coco,
    load_res,
    normalise_results,
    restrict_img_ids,
    results_from_boxes,
    results_from_masks,
    silence_prints,
    cocoeval_summary,
)
from litesam_pl.metrics.lvis_eval import LVIS_AP_KEYS, lvis_ap, numpy_float_alias

__all__ = [
    "load_coco",
    "coco_from_arrays",
    "mask_ap_from_ious",
    "results_from_masks",
    "results_from_boxes",
    "mask_ap",
    "proposal_recall",
    "proposal_recall_coco",
    "lvis_ap",
    "numpy_float_alias",
    "AP_KEYS",
    "LVIS_AP_KEYS",
]


def mask_ap(
    gt: GtLike,
    predictions: Any,
    *,
    iou_type: str = "segm",
    img_ids: Iterable[int] | None = None,
    max_dets: Sequence[int] = (1, 10, 100),
    quiet: bool = True,
) -> dict[str, float]:
    """COCO AP with ``pycocotools.cocoeval.COCOeval`` (exactly its numbers, computed without ``summarize``).

    Args:
        gt: annotation file, COCO dict, ``COCO`` object, or per-image arrays (see ``coco_from_arrays``).
        predictions: COCO results records (list or a JSON file) or per-image arrays ``{"masks"|"boxes",
            "scores", "labels", "image_id"}``.
        iou_type: ``"segm"`` (mask AP, Table 5) or ``"bbox"``.
        img_ids: evaluate only these images (e.g. the ones a ``--limit`` run processed); default all.
        max_dets: COCOeval ``maxDets``; AP is read at the last one (100, as the COCO standard).

    Returns:
        ``{"ap", "ap50", "ap75", "ap_s", "ap_m", "ap_l", "ar@<k>"..., "ar_s@<k>", ...}``, fractions in [0, 1].
    """
    if iou_type not in ("segm", "bbox"):
        raise ValueError(f"iou_type must be 'segm' or 'bbox', got {iou_type!r}")
    coco_gt = load_coco(gt)
    results = normalise_results(coco_gt, predictions, iou_type)
    coco_dt = load_res(coco_gt, results)
    with silence_prints(quiet):
        e = COCOeval(coco_gt, coco_dt, iou_type)
        e.params.imgIds = restrict_img_ids(coco_gt.getImgIds(), img_ids)
        e.params.maxDets = sorted(int(k) for k in max_dets)
        e.evaluate()
        e.accumulate()
    return cocoeval_summary(e, e.params.maxDets[-1])


class _PrecomputedIoUEval(COCOeval):
    """``COCOeval`` whose IoUs come from per-image matrices given in advance (no masks needed)."""

    def __init__(self, coco_gt: COCO, coco_dt: COCO, ious: Mapping[int, np.ndarray]) -> None:
        super().__init__(coco_gt, coco_dt, "bbox")  # the geometry is never read: computeIoU is replaced
        self._pre = ious

    def computeIoU(self, imgId: int, catId: int):  # noqa: N802 (COCOeval's name)
        gt, dt = self._gts[imgId, catId], self._dts[imgId, catId]
        if len(gt) == 0 and len(dt) == 0:
            return []
        order = np.argsort([-d["score"] for d in dt], kind="mergesort")  # as COCOeval.computeIoU
        dt = [dt[i] for i in order][: self.params.maxDets[-1]]
        full = self._pre[imgId]
        return full[np.ix_([d["k"] for d in dt], [g["k"] for g in gt])]


def mask_ap_from_ious(items: Sequence[Mapping[str, Any]], max_dets: Sequence[int] = (1, 10, 100),
                      quiet: bool = True) -> dict[str, float]:
    """COCO AP (one class) from per-image IoU matrices instead of masks: the same numbers as ``mask_ap`` on the
    masks those IoUs came from (pycocotools' matching, area ranges and accumulation; ``tests/metrics/test_coco.py``),
    from a few numbers per image, so distributed validation gathers these and not full-resolution masks.

    Args:
        items: per image ``{"ious": [D, G] (detection x GT mask IoU), "scores": [D], "gt_areas": [G],
            "dt_areas": [D]}`` (areas in pixels, for COCO's small / medium / large ranges).
    Returns:
        as ``mask_ap``.
    """
    images, gts, dts, pre = [], [], [], {}
    for img_id, it in enumerate(items):
        ious = np.asarray(it["ious"], dtype=np.float64).reshape(len(it["scores"]), len(it["gt_areas"]))
        pre[img_id] = ious
        images.append({"id": img_id})
        for k, a in enumerate(np.asarray(it["gt_areas"], dtype=float)):
            gts.append({"id": len(gts) + 1, "image_id": img_id, "category_id": 1, "area": float(a), "iscrowd": 0,
                        "bbox": [0.0, 0.0, 1.0, 1.0], "k": k})
        for k, (sc, a) in enumerate(zip(np.asarray(it["scores"], dtype=float), np.asarray(it["dt_areas"], dtype=float))):
            dts.append({"id": len(dts) + 1, "image_id": img_id, "category_id": 1, "area": float(a), "score": float(sc),
                        "bbox": [0.0, 0.0, 1.0, 1.0], "k": k})
    if not gts:
        return {"ap": float("nan"), "ap50": float("nan")}
    cats = [{"id": 1, "name": "1"}]
    coco_gt, coco_dt = COCO(), COCO()
    with silence_prints(quiet):
        coco_gt.dataset = {"images": images, "annotations": gts, "categories": cats}
        coco_gt.createIndex()
        coco_dt.dataset = {"images": images, "annotations": dts, "categories": cats}
        coco_dt.createIndex()
        e = _PrecomputedIoUEval(coco_gt, coco_dt, pre)
        e.params.imgIds = [im["id"] for im in images]
        e.params.maxDets = sorted(int(k) for k in max_dets)
        e.evaluate()
        e.accumulate()
    return cocoeval_summary(e, e.params.maxDets[-1])
