"""Metrics: arrays / COCO records in, numbers out. Shared by the LightningModules' validation and ``benchmarks/``.

Knows nothing of models: see ``miou`` (mask IoU, mIoU with the COCO size split), ``coco`` (COCO mask AP,
class-agnostic AR@k, LVIS AP) and ``detection`` (``MaskAP``, ``BoxRecall``: the same COCO numbers as torchmetrics
``Metric`` s that sync across DDP ranks).
"""
from .coco import (
    AP_KEYS,
    LVIS_AP_KEYS,
    coco_from_arrays,
    load_coco,
    lvis_ap,
    mask_ap,
    numpy_float_alias,
    proposal_recall,
    proposal_recall_coco,
    results_from_boxes,
    results_from_masks,
)
from .detection import BoxRecall, MaskAP
from .miou import COCO_AREA_RANGES, MIoU, area_group, mask_iou, mask_ious, summarize_miou

__all__ = [
    "AP_KEYS",
    "BoxRecall",
    "LVIS_AP_KEYS",
    "COCO_AREA_RANGES",
    "MIoU",
    "MaskAP",
    "area_group",
    "coco_from_arrays",
    "load_coco",
    "lvis_ap",
    "mask_ap",
    "mask_iou",
    "mask_ious",
    "numpy_float_alias",
    "proposal_recall",
    "proposal_recall_coco",
    "results_from_boxes",
    "results_from_masks",
    "summarize_miou",
]
