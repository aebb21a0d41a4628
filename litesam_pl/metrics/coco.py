"""COCO / LVIS scoring: mask AP (Table 5), class-agnostic proposal recall AR@1000 (Table 6), LVIS AP_r/c/f.

Arrays or COCO-format records in, numbers out (fractions in [0, 1]; ``nan`` where a metric is undefined, e.g.
AP_S on a set without small objects). Everything runs on ``pycocotools`` (COCO), the official ``lvis`` API
(LVIS, with numpy-2 compatibility patched at the boundary) or ``faster_coco_eval``'s LVIS mode.

Main entry points (used by both the LightningModules' validation and ``benchmarks.coco`` / ``benchmarks.lvis``):

- ``mask_ap(gt, predictions)``: COCO AP, AP50, AP75, AP_S/M/L. ``gt`` is an annotation file, a COCO dict,
  a ``pycocotools.coco.COCO`` or per-image arrays; ``predictions`` COCO results records or per-image arrays.
- ``proposal_recall(gt, proposals, max_dets=(100, 1000), iou_type="bbox"|"segm")``: class-agnostic AR@k from
  per-image arrays (every instance one category, ``useCats=0``).
- ``proposal_recall_coco(gt, records)``: the same on an official annotation file (crowd regions ignored).
- ``lvis_ap(gt, predictions, max_dets=300, backend="lvis"|"faster")``: LVIS AP, AP_S/M/L, AP_r/c/f.
- ``results_from_masks(image_id, masks, scores, category_ids)``: COCO results records (compressed RLE).
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
from collections import defaultdict
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from litesam_pl.data.rle import encode_mask

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

AP_KEYS = ("ap", "ap50", "ap75", "ap_s", "ap_m", "ap_l")
LVIS_AP_KEYS = AP_KEYS + ("ap_r", "ap_c", "ap_f")
_AREA_LABELS = {"all": "all", "s": "small", "m": "medium", "l": "large"}

GtLike = Any  # str | os.PathLike | dict | COCO | Sequence[Mapping[str, array]]


# ----------------------------------------------------------------------------------------------- helpers


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _mean_valid(x: np.ndarray) -> float:
    """pycocotools' summary: mean over entries > -1, ``nan`` (pycocotools prints -1) when none are."""
    v = x[x > -1]
    return float(v.mean()) if v.size else float("nan")


@contextlib.contextmanager
def _quiet(enabled: bool = True) -> Iterator[None]:
    """Silence pycocotools' prints ("Running per image evaluation...")."""
    if not enabled:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _load_json(path: str | os.PathLike) -> dict:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"annotation file {path} is not valid JSON: {e}") from e
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise ValueError(f"{path} is not a COCO/LVIS instances file (needs 'images' and 'annotations')")
    return data


def _coco_from_dataset(dataset: Mapping) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    with _quiet():
        coco.createIndex()
    return coco


def load_coco(gt: GtLike) -> COCO:
    """A ``pycocotools.coco.COCO`` from a path, a dataset dict (deep-copied), a ``COCO`` (used as is) or arrays."""
    if isinstance(gt, COCO):
        return gt
    if isinstance(gt, (str, os.PathLike)):
        return _coco_from_dataset(_load_json(gt))
    if isinstance(gt, Mapping):
        return _coco_from_dataset(copy.deepcopy(dict(gt)))
    if isinstance(gt, Sequence):
        return _coco_from_dataset(coco_from_arrays(gt))
    raise TypeError(f"unsupported ground truth type {type(gt).__name__}")


def _xyxy_to_xywh(b: np.ndarray) -> np.ndarray:
    b = b.astype(np.float64).reshape(-1, 4)
    return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def coco_from_arrays(images: Sequence[Mapping[str, Any]], category_names: Mapping[int, str] | None = None) -> dict:
    """A COCO instances dict from per-image arrays.

    Each element of ``images`` is a mapping with ``"masks"`` bool ``[N, H, W]`` and/or ``"boxes"`` float
    ``[N, 4]`` (xyxy pixels), optional ``"labels"`` int ``[N]`` (default 1), ``"iscrowd"`` ``[N]`` (default 0),
    ``"image_id"`` (default: its index) and ``"size"`` ``(H, W)`` (default: from the masks). ``area`` is the
    mask's pixel count when masks are given, else the box area.
    """
    out_images, anns, cats = [], [], set()
    ann_id = 1
    for idx, item in enumerate(images):
        if not isinstance(item, Mapping):
            raise TypeError(f"image {idx}: expected a mapping with 'masks' and/or 'boxes', got {type(item).__name__}")
        masks = _as_numpy(item["masks"]).astype(bool) if item.get("masks") is not None else None
        boxes = _as_numpy(item["boxes"]) if item.get("boxes") is not None else None
        if masks is None and boxes is None:
            raise ValueError(f"image {idx}: needs 'masks' or 'boxes'")
        if masks is not None and masks.ndim != 3:
            raise ValueError(f"image {idx}: masks must be [N, H, W], got {masks.shape}")
        n = len(masks) if masks is not None else len(boxes.reshape(-1, 4))
        if masks is not None:
            h, w = masks.shape[1:]
        elif item.get("size") is not None:
            h, w = (int(v) for v in item["size"])
        else:
            h = w = 0
        image_id = int(item.get("image_id", idx))
        labels = _as_numpy(item.get("labels", np.ones(n))).astype(np.int64).reshape(-1)
        crowd = _as_numpy(item.get("iscrowd", np.zeros(n))).astype(np.int64).reshape(-1)
        if len(labels) != n or len(crowd) != n:
            raise ValueError(f"image {idx}: labels/iscrowd length differ from the {n} instances")
        out_images.append({"id": image_id, "height": int(h), "width": int(w)})
        xywh = _xyxy_to_xywh(boxes) if boxes is not None else None
        for k in range(n):
            ann: dict[str, Any] = {"id": ann_id, "image_id": image_id, "category_id": int(labels[k]),
                                   "iscrowd": int(crowd[k])}
            if masks is not None:
                rle = encode_mask(masks[k])
                ann["segmentation"] = rle
                ann["area"] = float(masks[k].sum())
                ann["bbox"] = [float(v) for v in (xywh[k] if xywh is not None else mask_utils.toBbox(rle))]
            else:
                ann["bbox"] = [float(v) for v in xywh[k]]
                ann["area"] = float(max(xywh[k, 2], 0) * max(xywh[k, 3], 0))
            anns.append(ann)
            cats.add(int(labels[k]))
            ann_id += 1
    names = dict(category_names or {})
    cats |= set(names)
    if not cats:
        cats = {1}
    return {
        "images": out_images,
        "annotations": anns,
        "categories": [{"id": c, "name": names.get(c, str(c))} for c in sorted(cats)],
    }


def results_from_masks(image_id: int, masks: Any, scores: Any, category_ids: Any, with_bbox: bool = False
                       ) -> list[dict]:
    """COCO results records ``{"image_id", "category_id", "segmentation" (RLE, str counts), "score"}``.

    Args:
        masks: bool ``[K, H, W]`` at the image's original resolution.
        scores: ``[K]``; category_ids: ``[K]`` (or one int for all).
        with_bbox: add the mask's box. Off by default: ``COCO.loadRes`` takes a record's ``area`` from its
            ``bbox`` when one is present, so segm AP_S/M/L would then bin detections by box area; without it
            the area is the mask's, as in detectron2's evaluator, and plain pycocotools gives our numbers.
    """
    m = _as_numpy(masks).astype(bool)
    if m.ndim != 3:
        raise ValueError(f"masks must be [K, H, W], got {m.shape}")
    s = _as_numpy(scores).astype(np.float64).reshape(-1)
    c = np.broadcast_to(_as_numpy(category_ids).astype(np.int64).reshape(-1), (len(m),)) if len(m) else []
    if len(s) != len(m):
        raise ValueError(f"{len(m)} masks but {len(s)} scores")
    out = []
    for k in range(len(m)):
        rle = encode_mask(m[k])
        rec = {"image_id": int(image_id), "category_id": int(c[k]), "segmentation": rle, "score": float(s[k])}
        if with_bbox:
            rec["bbox"] = [float(v) for v in mask_utils.toBbox(rle)]
        out.append(rec)
    return out


def results_from_boxes(image_id: int, boxes: Any, scores: Any, category_ids: Any = 1) -> list[dict]:
    """COCO bbox results records from xyxy boxes ``[K, 4]`` and scores ``[K]``."""
    b = _xyxy_to_xywh(_as_numpy(boxes))
    s = _as_numpy(scores).astype(np.float64).reshape(-1)
    if len(s) != len(b):
        raise ValueError(f"{len(b)} boxes but {len(s)} scores")
    c = np.broadcast_to(_as_numpy(category_ids).astype(np.int64).reshape(-1), (len(b),)) if len(b) else []
    return [{"image_id": int(image_id), "category_id": int(c[k]), "bbox": [float(v) for v in b[k]],
             "score": float(s[k])} for k in range(len(b))]


def _results_from_arrays(gt: COCO, predictions: Sequence[Mapping[str, Any]], iou_type: str) -> list[dict]:
    """Per-image prediction arrays (aligned with the GT images' order unless they carry ``image_id``)."""
    img_ids = [img["id"] for img in gt.dataset["images"]]
    if len(predictions) != len(img_ids) and not all("image_id" in p for p in predictions):
        raise ValueError(f"{len(predictions)} prediction entries for {len(img_ids)} images; add 'image_id' to each")
    out: list[dict] = []
    for idx, p in enumerate(predictions):
        image_id = int(p.get("image_id", img_ids[idx]))
        scores = p.get("scores")
        key = "masks" if iou_type == "segm" else "boxes"
        if p.get(key) is None:
            raise ValueError(f"prediction {idx}: iou_type {iou_type!r} needs {key!r}")
        n = len(_as_numpy(p[key]))
        if scores is None:  # rank order: first is best
            scores = np.linspace(1.0, 0.0, n, endpoint=False) if n else np.zeros(0)
        labels = p.get("labels", 1)
        if iou_type == "segm":
            out += results_from_masks(image_id, p["masks"], scores, labels)
        else:
            out += results_from_boxes(image_id, p["boxes"], scores, labels)
    return out


def _normalise_results(gt: COCO, predictions: Any, iou_type: str) -> list[dict]:
    if isinstance(predictions, (str, os.PathLike)):
        with open(predictions) as f:
            predictions = json.load(f)
    predictions = list(predictions)
    if predictions and isinstance(predictions[0], Mapping) and ("masks" in predictions[0] or "boxes" in predictions[0]):
        return _results_from_arrays(gt, predictions, iou_type)
    out = []
    for r in predictions:  # shallow copies: loadRes adds "area"/"id"/"bbox" in place
        r = dict(r)
        if iou_type == "segm":
            if "segmentation" not in r:
                raise ValueError("segm evaluation needs 'segmentation' in every prediction record")
            r.pop("bbox", None)  # pycocotools recomputes it from the mask (as detectron2 does)
        out.append(r)
    return out


def _load_res(gt: COCO, results: list[dict]) -> COCO:
    """``gt.loadRes`` that also accepts an empty list (no detection: AP 0 where GT exists)."""
    if results:
        with _quiet():
            return gt.loadRes(results)
    res = COCO()
    res.dataset = {"images": list(gt.dataset["images"]), "categories": copy.deepcopy(gt.dataset["categories"]),
                   "annotations": []}
    with _quiet():
        res.createIndex()
    return res


def _restrict_img_ids(gt_img_ids: Iterable[int], img_ids: Iterable[int] | None) -> list[int]:
    all_ids = sorted(int(i) for i in gt_img_ids)
    if img_ids is None:
        return all_ids
    wanted = sorted({int(i) for i in img_ids})
    unknown = set(wanted) - set(all_ids)
    if unknown:
        raise ValueError(f"{len(unknown)} image ids not in the ground truth, e.g. {sorted(unknown)[:5]}")
    return wanted


def _summary(e: COCOeval | Any, max_det: int, cat_idx: Sequence[int] | None = None) -> dict[str, float]:
    """AP/AR numbers from an accumulated (pycocotools or faster_coco_eval) ``COCOeval``."""
    p = e.params
    prec = e.eval["precision"]  # [T, R, K, A, M]
    rec = e.eval["recall"]  # [T, K, A, M]
    m = list(p.maxDets).index(max_det)
    labels = list(p.areaRngLbl)
    t50 = int(np.argmin(np.abs(p.iouThrs - 0.5)))
    t75 = int(np.argmin(np.abs(p.iouThrs - 0.75)))

    def ap(a: str = "all", t: int | None = None, cats: Sequence[int] | None = cat_idx) -> float:
        s = prec[:, :, :, labels.index(a), m]
        if t is not None:
            s = s[t : t + 1]
        if cats is not None:
            s = s[:, :, list(cats)]
        return _mean_valid(s)

    out = {"ap": ap(), "ap50": ap(t=t50), "ap75": ap(t=t75),
           "ap_s": ap("small"), "ap_m": ap("medium"), "ap_l": ap("large")}
    for k in p.maxDets:
        out[f"ar@{k}"] = _mean_valid(rec[:, :, labels.index("all"), list(p.maxDets).index(k)])
    for short in ("s", "m", "l"):
        out[f"ar_{short}@{max_det}"] = _mean_valid(rec[:, :, labels.index(_AREA_LABELS[short]), m])
    return out


# --------------------------------------------------------------------------------------------- COCO mask AP


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
    results = _normalise_results(coco_gt, predictions, iou_type)
    coco_dt = _load_res(coco_gt, results)
    with _quiet(quiet):
        e = COCOeval(coco_gt, coco_dt, iou_type)
        e.params.imgIds = _restrict_img_ids(coco_gt.getImgIds(), img_ids)
        e.params.maxDets = sorted(int(k) for k in max_dets)
        e.evaluate()
        e.accumulate()
    return _summary(e, e.params.maxDets[-1])


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
    masks those IoUs came from (pycocotools' matching, area ranges and accumulation; ``tests/test_metrics_coco.py``),
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
    with _quiet(quiet):
        coco_gt.dataset = {"images": images, "annotations": gts, "categories": cats}
        coco_gt.createIndex()
        coco_dt.dataset = {"images": images, "annotations": dts, "categories": cats}
        coco_dt.createIndex()
        e = _PrecomputedIoUEval(coco_gt, coco_dt, pre)
        e.params.imgIds = [im["id"] for im in images]
        e.params.maxDets = sorted(int(k) for k in max_dets)
        e.evaluate()
        e.accumulate()
    return _summary(e, e.params.maxDets[-1])


# ------------------------------------------------------------------------------- class-agnostic proposal AR


def _agnostic_recall(
    coco_gt: COCO, results: list[dict], iou_type: str, img_ids: list[int], max_dets: Sequence[int], quiet: bool
) -> dict[str, float]:
    cat_ids = coco_gt.getCatIds()
    if not cat_ids:
        raise ValueError("ground truth has no categories")
    agnostic_cat = int(min(cat_ids))
    for r in results:  # useCats=0 still indexes detections by a GT category id
        r["category_id"] = agnostic_cat
    coco_dt = _load_res(coco_gt, results)
    with _quiet(quiet):
        e = COCOeval(coco_gt, coco_dt, iou_type)
        e.params.imgIds = img_ids
        e.params.useCats = 0
        e.params.maxDets = sorted(int(k) for k in max_dets)
        e.evaluate()
        e.accumulate()
    s = _summary(e, e.params.maxDets[-1])
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
    coco_gt = _coco_from_dataset(coco_from_arrays(gts))
    results = _results_from_arrays(coco_gt, [wrap(p, i) for i, p in enumerate(proposals)], iou_type)
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
    results = _normalise_results(coco_gt, proposals, iou_type)
    return _agnostic_recall(coco_gt, results, iou_type, _restrict_img_ids(coco_gt.getImgIds(), img_ids),
                            max_dets, quiet)


# ------------------------------------------------------------------------------------------------- LVIS AP


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
        data = _load_json(gt)
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
    from lvis import LVIS, LVISEval, LVISResults

    lvis_gt = LVIS.__new__(LVIS)
    lvis_gt.dataset = data
    lvis_gt.logger = logging.getLogger("lvis.lvis")
    lvis_gt._create_index()
    if results:
        with _quiet():
            lvis_dt = LVISResults(lvis_gt, results, max_dets=max_dets)
    else:  # LVISResults indexes results[0]; an empty result set is simply no detection
        lvis_dt = LVISResults.__new__(LVISResults)
        lvis_dt.dataset = copy.deepcopy(data)
        lvis_dt.dataset["annotations"] = []
        lvis_dt.logger = lvis_gt.logger
        lvis_dt._create_index()
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
        "ap": _mean_valid(prec[..., a]), "ap50": _mean_valid(prec[t50, ..., a]), "ap75": _mean_valid(prec[t75, ..., a]),
        "ap_s": _mean_valid(prec[..., lbl.index("small")]), "ap_m": _mean_valid(prec[..., lbl.index("medium")]),
        "ap_l": _mean_valid(prec[..., lbl.index("large")]),
    }
    for name, group in zip(("ap_r", "ap_c", "ap_f"), e.freq_groups):
        out[name] = _mean_valid(prec[:, :, group, a])
    out[f"ar@{max_dets}"] = _mean_valid(rec[..., a])
    for short in ("s", "m", "l"):
        out[f"ar_{short}@{max_dets}"] = _mean_valid(rec[..., lbl.index(_AREA_LABELS[short])])
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
    out = _summary(e, e.params.maxDets[0])
    out = {k: v for k, v in out.items() if k.startswith("ap")}
    prec = e.eval["precision"]
    a = e.params.areaRngLbl.index("all")
    for name, group in zip(("ap_r", "ap_c", "ap_f"), e.freq_groups):
        out[name] = _mean_valid(prec[:, :, group, a, 0])
    rec = e.eval["recall"]
    out[f"ar@{max_dets}"] = _mean_valid(rec[:, :, a, 0])
    for short in ("s", "m", "l"):
        out[f"ar_{short}@{max_dets}"] = _mean_valid(rec[:, :, e.params.areaRngLbl.index(_AREA_LABELS[short]), 0])
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
    ids = _restrict_img_ids((img["id"] for img in data["images"]), img_ids)
    if backend == "lvis":
        return _lvis_official(data, results, iou_type, ids, max_dets)
    if backend == "faster":
        return _lvis_faster(data, results, iou_type, ids, max_dets)
    raise ValueError(f"backend must be 'lvis' or 'faster', got {backend!r}")
