"""Class-agnostic proposal recall AR@k (Lite-SAM Table 6, SAM's object-proposal protocol) with pycocotools.

- ``proposal_recall(gt, proposals, max_dets=(100, 1000), iou_type="bbox"|"segm")``: from per-image arrays (every
  instance one category, ``useCats=0``);
- ``proposal_recall_coco(gt, records)``: the same on an official annotation file (crowd regions ignored).

Both are re-exported by ``litesam_pl.metrics.coco`` (and ``litesam_pl.metrics``).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from litesam_pl.metrics.cocotools import (
    GtLike,
    coco_from_arrays,
    coco_from_dataset,
    load_coco,
    load_res,
    normalise_results,
    restrict_img_ids,
    results_from_arrays,
    silence_prints,
    cocoeval_summary,
)

__all__ = ["proposal_recall", "proposal_recall_coco"]


def _agnostic_recall(
    coco_gt: COCO, results: list[dict], iou_type: str, img_ids: list[int], max_dets: Sequence[int], quiet: bool
) -> dict[str, float]:
    cat_ids = coco_gt.getCatIds()
    if not cat_ids:
        raise ValueError("ground truth has no categories")
    agnostic_cat = int(min(cat_ids))
    for r in results:  # useCats=0 still indexes detections by a GT category id
        r["category_id"] = agnostic_cat
    coco_dt = load_res(coco_gt, results)
    with silence_prints(quiet):
        e = COCOeval(coco_gt, coco_dt, iou_type)
        e.params.imgIds = img_ids
        e.params.useCats = 0
        e.params.maxDets = sorted(int(k) for k in max_dets)
        e.evaluate()
        e.accumulate()
    s = cocoeval_summary(e, e.params.maxDets[-1])
    return {k: v for k, v in s.items() if k.startswith("ar")}


def proposal_recall(
    gt: Sequence[Any],
    proposals: Sequence[Any],
    max_dets: Sequence[int] = (100, 1000),
    iou_type: str = "bbox",
    quiet: bool = True,
) -> dict[str, float]:
    """Class-agnostic average recall AR@k (IoU 0.5:0.95), SAM's object-proposal protocol, from arrays.

    Args:
        gt: per image, GT boxes ``[N, 4]`` xyxy (``iou_type="bbox"``) or masks ``[N, H, W]`` (``"segm"``), or a
            mapping ``{"boxes"|"masks", "iscrowd"?}``.
        proposals: per image, boxes ``[M, 4]`` / masks ``[M, H, W]`` ranked best first, or a mapping
            ``{"boxes"|"masks", "scores"}``.
        max_dets: the k of AR@k.

    Returns:
        ``{"ar@100", "ar@1000", "ar_s@1000", "ar_m@1000", "ar_l@1000"}`` (for the default max_dets), in [0, 1].
    """
    if iou_type not in ("segm", "bbox"):
        raise ValueError(f"iou_type must be 'segm' or 'bbox', got {iou_type!r}")
    if len(gt) != len(proposals):
        raise ValueError(f"{len(gt)} GT entries but {len(proposals)} proposal entries")
    key = "masks" if iou_type == "segm" else "boxes"

    def wrap(x: Any, i: int) -> dict:
        d = dict(x) if isinstance(x, Mapping) else {key: x}
        d.setdefault("image_id", i)
        d.pop("labels", None)
        return d

    gts = [wrap(g, i) for i, g in enumerate(gt)]
    for d in gts:
        if d.get(key) is None:
            raise ValueError(f"iou_type {iou_type!r} needs GT {key!r}")
        if key == "boxes" and d.get("masks") is not None:
            d.pop("masks")  # area from boxes in bbox mode
    coco_gt = coco_from_dataset(coco_from_arrays(gts))
    results = results_from_arrays(coco_gt, [wrap(p, i) for i, p in enumerate(proposals)], iou_type)
    return _agnostic_recall(coco_gt, results, iou_type, sorted(d["image_id"] for d in gts), max_dets, quiet)


def proposal_recall_coco(
    gt: GtLike,
    proposals: Any,
    *,
    img_ids: Iterable[int] | None = None,
    max_dets: Sequence[int] = (100, 1000),
    iou_type: str = "segm",
    quiet: bool = True,
) -> dict[str, float]:
    """Class-agnostic AR@k on an official annotation file (``useCats=0``; ``iscrowd`` regions ignored).

    ``proposals`` are COCO results records (``image_id``, ``segmentation`` RLE or ``bbox``, ``score``); their
    ``category_id`` is ignored. Proposals beyond ``max(max_dets)`` per image (by score) do not count.
    """
    coco_gt = load_coco(gt)
    results = normalise_results(coco_gt, proposals, iou_type)
    return _agnostic_recall(coco_gt, results, iou_type, restrict_img_ids(coco_gt.getImgIds(), img_ids),
                            max_dets, quiet)
