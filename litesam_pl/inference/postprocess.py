"""SegEvery post-processing on the device: stability score, mask/box NMS, boxes, RLE and AMG-style records.

Everything works on whole batches of masks (no Python loop per mask). Conventions follow
``segment_anything.utils.amg`` so that our records match ``SamAutomaticMaskGenerator``'s:
boxes are ``(x0, y0, x1, y1)`` with inclusive max pixel indices, ``bbox`` is ``box_xyxy_to_xywh`` of that
(``w = x1 - x0``), ``area`` is the pixel count, ``crop_box`` is ``[0, 0, W, H]``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import Tensor

from segment_anything.utils.amg import (
    batched_mask_to_box,
    calculate_stability_score,
    mask_to_rle_pytorch,
)

from ..data.rle import decode_rle, rle_to_json  # the RLE helpers; decode_rle re-exported for SegEvery's record readers

__all__ = [
    "stability_score",
    "mask_iou_matrix",
    "greedy_nms_from_iou",
    "mask_nms",
    "box_nms",
    "masks_to_boxes",
    "encode_rle",
    "decode_rle",
    "build_records",
    "OUTPUT_MODES",
]

OUTPUT_MODES = ("binary_mask", "coco_rle", "uncompressed_rle", "tensors")


def stability_score(logits: Tensor, mask_threshold: float = 0.0, offset: float = 1.0) -> Tensor:
    """SAM's stability score: IoU of the masks thresholded at ``t + offset`` and ``t - offset``.

    ``logits [K, H, W]`` -> ``[K]`` (1.0 for a mask empty at both thresholds is impossible: the union is
    empty then and SAM's formula gives nan; we return 0 there)."""
    if logits.shape[0] == 0:
        return logits.new_zeros(0)
    s = calculate_stability_score(logits, mask_threshold, offset)
    return torch.nan_to_num(s, nan=0.0)


def mask_iou_matrix(masks: Tensor, chunk: int = 512) -> Tensor:
    """Pairwise IoU of binary masks: bool ``[K, H, W]`` (or ``[K, P]``) -> float ``[K, K]``.

    One matrix product per ``chunk`` rows (intersections), areas from row sums."""
    k = masks.shape[0]
    flat = masks.reshape(k, -1)
    f = flat.to(torch.float32)  # 0/1 products summed in float32: exact counts up to 2**24 pixels
    area = flat.sum(1).to(torch.float32)
    inter = torch.empty(k, k, dtype=torch.float32, device=masks.device)
    for i in range(0, k, chunk):
        inter[i : i + chunk] = f[i : i + chunk] @ f.t()
    union = area[:, None] + area[None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-6), torch.zeros_like(inter))


def greedy_nms_from_iou(iou: Tensor, threshold: float, max_iter: Optional[int] = None) -> Tensor:
    """Exact greedy NMS given a pairwise IoU matrix of items already sorted by descending score.

    Item ``i`` survives iff no SURVIVING item ``j < i`` has ``iou[i, j] > threshold``. Instead of a loop over
    items, iterate ``keep <- not any_j<i (keep_j and iou_ij > t)`` to its fixed point: after ``r`` rounds the
    first ``r`` items (and every item whose suppressor chain is shorter than ``r``) are final, so the result is
    exactly greedy NMS and typically needs a handful of rounds. Returns bool ``[K]``.
    """
    k = iou.shape[0]
    if k == 0:
        return torch.zeros(0, dtype=torch.bool, device=iou.device)
    over = torch.tril(iou > threshold, diagonal=-1).to(torch.float32)  # over[i, j]: j < i suppresses i
    keep = torch.ones(k, dtype=torch.bool, device=iou.device)
    for _ in range(max_iter or k):
        new = (over @ keep.to(torch.float32)) == 0
        if torch.equal(new, keep):
            break
        keep = new
    return keep


def mask_nms(masks: Tensor, scores: Tensor, threshold: float) -> Tensor:
    """Greedy NMS on mask IoU. ``masks`` bool ``[K, H, W]``, ``scores`` ``[K]`` -> kept indices ``[K']``,
    ordered by descending score."""
    if masks.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=masks.device)
    order = torch.argsort(scores, descending=True, stable=True)
    iou = mask_iou_matrix(masks[order])
    keep = greedy_nms_from_iou(iou, threshold)
    return order[keep]


def box_nms(boxes: Tensor, scores: Tensor, threshold: float) -> Tensor:
    """SAM AMG's box NMS (``torchvision.ops.batched_nms``, one category) -> kept indices by descending score."""
    from torchvision.ops import batched_nms

    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    return batched_nms(boxes.float(), scores.float(), torch.zeros_like(scores, dtype=torch.long), threshold)


def masks_to_boxes(masks: Tensor) -> Tensor:
    """bool ``[K, H, W]`` -> ``[K, 4]`` xyxy with inclusive max indices (SAM ``batched_mask_to_box``; 0s if empty)."""
    if masks.shape[0] == 0:
        return torch.zeros(0, 4, dtype=torch.float32, device=masks.device)
    return batched_mask_to_box(masks).to(torch.float32)


def encode_rle(masks: Tensor, compressed: bool = True) -> List[Dict[str, Any]]:
    """bool ``[K, H, W]`` -> COCO RLEs (``{"size": [h, w], "counts": str}`` when ``compressed``, else SAM's
    uncompressed ``{"size", "counts": [int]}``). The run-length scan runs on the device, batched; the compression
    is ``data.rle.rle_to_json``."""
    if masks.shape[0] == 0:
        return []
    rles = mask_to_rle_pytorch(masks)
    return [rle_to_json(rle) for rle in rles] if compressed else rles


def build_records(
    masks: Tensor,
    iou_preds: Tensor,
    stability: Tensor,
    boxes: Tensor,
    points: Tensor,
    image_size: Sequence[int],
    output_mode: str = "binary_mask",
    ppn_scores: Optional[Tensor] = None,
) -> List[Dict[str, Any]]:
    """``SamAutomaticMaskGenerator``-format records (segmentation, area, bbox XYWH, predicted_iou,
    point_coords, stability_score, crop_box) for ``K`` final masks at image resolution, plus ``ppn_score``
    (float) when ``ppn_scores`` is given.

    Args:
        masks: bool ``[K, H, W]``; iou_preds, stability: ``[K]``; boxes: xyxy ``[K, 4]`` (inclusive);
        points: ``[K, 2]`` xy in image pixels; image_size: ``(H, W)``;
        output_mode: ``binary_mask`` (numpy bool), ``coco_rle`` or ``uncompressed_rle``;
        ppn_scores: ``[K]`` AutoPPN score of each mask's prompt (None: no ``ppn_score`` key, SAM's exact format).
    """
    if output_mode not in ("binary_mask", "coco_rle", "uncompressed_rle"):
        raise ValueError(f"build_records: output_mode must be binary_mask|coco_rle|uncompressed_rle, got {output_mode!r}")
    k = masks.shape[0]
    if k == 0:
        return []
    h, w = int(image_size[0]), int(image_size[1])
    areas = masks.flatten(1).sum(1).cpu().tolist()
    xywh = boxes.clone()
    xywh[:, 2] = boxes[:, 2] - boxes[:, 0]
    xywh[:, 3] = boxes[:, 3] - boxes[:, 1]
    xywh = xywh.round().to(torch.int64).cpu().tolist()
    ious = iou_preds.float().cpu().tolist()
    stabs = stability.float().cpu().tolist()
    pts = points.float().cpu().tolist()
    if output_mode == "binary_mask":
        segs: List[Any] = list(masks.cpu().numpy())
    else:
        segs = encode_rle(masks, compressed=(output_mode == "coco_rle"))
    records = [
        {
            "segmentation": segs[i],
            "area": int(areas[i]),
            "bbox": xywh[i],
            "predicted_iou": float(ious[i]),
            "point_coords": [pts[i]],
            "stability_score": float(stabs[i]),
            "crop_box": [0, 0, w, h],
        }
        for i in range(k)
    ]
    if ppn_scores is not None:
        for r, s in zip(records, ppn_scores.float().cpu().tolist()):
            r["ppn_score"] = float(s)
    return records
