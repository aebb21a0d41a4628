"""The pycocotools boundary of the COCO / LVIS metrics: ground truth and results in, ``COCOeval`` numbers out.

- ground truth: ``load_coco`` (a file, a dict, a ``COCO`` or per-image arrays via ``coco_from_arrays``);
- results records: ``results_from_masks`` (compressed RLE, ``data.rle.encode_mask``), ``results_from_boxes``,
  ``normalise_results`` (records, a JSON file or per-image arrays), ``load_res`` (``COCO.loadRes`` that takes an
  empty list);
- reading an accumulated evaluation (pycocotools or faster_coco_eval): ``cocoeval_summary`` / ``mean_valid``.

``metrics.coco`` (mask AP), ``metrics.coco_recall`` (class-agnostic AR) and ``metrics.lvis_eval`` (LVIS AP) are
built on these; ``metrics.coco`` re-exports the public ones.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from litesam_pl.data.rle import encode_mask
from litesam_pl.metrics.miou import as_numpy

__all__ = [
    "AP_KEYS",
    "AREA_LABELS",
    "GtLike",
    "silence_prints",
    "load_json",
    "coco_from_dataset",
    "load_coco",
    "coco_from_arrays",
    "results_from_masks",
    "results_from_boxes",
    "results_from_arrays",
    "normalise_results",
    "load_res",
    "restrict_img_ids",
    "mean_valid",
    "cocoeval_summary",
]

AP_KEYS = ("ap", "ap50", "ap75", "ap_s", "ap_m", "ap_l")
AREA_LABELS = {"all": "all", "s": "small", "m": "medium", "l": "large"}

GtLike = Any  # str | os.PathLike | dict | COCO | Sequence[Mapping[str, array]]


# ------------------------------------------------------------------------------------- ground truth, results


@contextlib.contextmanager
def silence_prints(enabled: bool = True) -> Iterator[None]:
    """Silence pycocotools' prints ("Running per image evaluation...")."""
    if not enabled:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def load_json(path: str | os.PathLike) -> dict:
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


def coco_from_dataset(dataset: Mapping) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    with silence_prints():
        coco.createIndex()
    return coco


def load_coco(gt: GtLike) -> COCO:
    """A ``pycocotools.coco.COCO`` from a path, a dataset dict (deep-copied), a ``COCO`` (used as is) or arrays."""
    if isinstance(gt, COCO):
        return gt
    if isinstance(gt, (str, os.PathLike)):
        return coco_from_dataset(load_json(gt))
    if isinstance(gt, Mapping):
        return coco_from_dataset(copy.deepcopy(dict(gt)))
    if isinstance(gt, Sequence):
        return coco_from_dataset(coco_from_arrays(gt))
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
        masks = as_numpy(item["masks"]).astype(bool) if item.get("masks") is not None else None
        boxes = as_numpy(item["boxes"]) if item.get("boxes") is not None else None
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
        labels = as_numpy(item.get("labels", np.ones(n))).astype(np.int64).reshape(-1)
        crowd = as_numpy(item.get("iscrowd", np.zeros(n))).astype(np.int64).reshape(-1)
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
    m = as_numpy(masks).astype(bool)
    if m.ndim != 3:
        raise ValueError(f"masks must be [K, H, W], got {m.shape}")
    s = as_numpy(scores).astype(np.float64).reshape(-1)
    c = np.broadcast_to(as_numpy(category_ids).astype(np.int64).reshape(-1), (len(m),)) if len(m) else []
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
    b = _xyxy_to_xywh(as_numpy(boxes))
    s = as_numpy(scores).astype(np.float64).reshape(-1)
    if len(s) != len(b):
        raise ValueError(f"{len(b)} boxes but {len(s)} scores")
    c = np.broadcast_to(as_numpy(category_ids).astype(np.int64).reshape(-1), (len(b),)) if len(b) else []
    return [{"image_id": int(image_id), "category_id": int(c[k]), "bbox": [float(v) for v in b[k]],
             "score": float(s[k])} for k in range(len(b))]


def results_from_arrays(gt: COCO, predictions: Sequence[Mapping[str, Any]], iou_type: str) -> list[dict]:
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
        n = len(as_numpy(p[key]))
        if scores is None:  # rank order: first is best
            scores = np.linspace(1.0, 0.0, n, endpoint=False) if n else np.zeros(0)
        labels = p.get("labels", 1)
        if iou_type == "segm":
            out += results_from_masks(image_id, p["masks"], scores, labels)
        else:
            out += results_from_boxes(image_id, p["boxes"], scores, labels)
    return out


def normalise_results(gt: COCO, predictions: Any, iou_type: str) -> list[dict]:
    if isinstance(predictions, (str, os.PathLike)):
        with open(predictions) as f:
            predictions = json.load(f)
    predictions = list(predictions)
    if predictions and isinstance(predictions[0], Mapping) and ("masks" in predictions[0] or "boxes" in predictions[0]):
        return results_from_arrays(gt, predictions, iou_type)
    out = []
    for r in predictions:  # shallow copies: loadRes adds "area"/"id"/"bbox" in place
        r = dict(r)
        if iou_type == "segm":
            if "segmentation" not in r:
                raise ValueError("segm evaluation needs 'segmentation' in every prediction record")
            r.pop("bbox", None)  # pycocotools recomputes it from the mask (as detectron2 does)
        out.append(r)
    return out


def load_res(gt: COCO, results: list[dict]) -> COCO:
    """``gt.loadRes`` that also accepts an empty list (no detection: AP 0 where GT exists)."""
    if results:
        with silence_prints():
            return gt.loadRes(results)
    res = COCO()
    res.dataset = {"images": list(gt.dataset["images"]), "categories": copy.deepcopy(gt.dataset["categories"]),
                   "annotations": []}
    with silence_prints():
        res.createIndex()
    return res


def restrict_img_ids(gt_img_ids: Iterable[int], img_ids: Iterable[int] | None) -> list[int]:
    all_ids = sorted(int(i) for i in gt_img_ids)
    if img_ids is None:
        return all_ids
    wanted = sorted({int(i) for i in img_ids})
    unknown = set(wanted) - set(all_ids)
    if unknown:
        raise ValueError(f"{len(unknown)} image ids not in the ground truth, e.g. {sorted(unknown)[:5]}")
    return wanted


# ------------------------------------------------------------------------------- reading an evaluation


def mean_valid(x: np.ndarray) -> float:
    """pycocotools' summary: mean over entries > -1, ``nan`` (pycocotools prints -1) when none are."""
    v = x[x > -1]
    return float(v.mean()) if v.size else float("nan")


def cocoeval_summary(e: COCOeval | Any, max_det: int, cat_idx: Sequence[int] | None = None) -> dict[str, float]:
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
        return mean_valid(s)

    out = {"ap": ap(), "ap50": ap(t=t50), "ap75": ap(t=t75),
           "ap_s": ap("small"), "ap_m": ap("medium"), "ap_l": ap("large")}
    for k in p.maxDets:
        out[f"ar@{k}"] = mean_valid(rec[:, :, labels.index("all"), list(p.maxDets).index(k)])
    for short in ("s", "m", "l"):
        out[f"ar_{short}@{max_det}"] = mean_valid(rec[:, :, labels.index(AREA_LABELS[short]), m])
    return out
