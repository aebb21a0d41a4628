"""What a box-prompted model does wrong on COCO-format instances (docs/benchmarks.md, "Real photographs").

For every non-crowd instance, the GT box goes through the single-mask output (what box training supervises, as
``benchmarks.coco``); the logits are read directly, upsampled to the photo. Per size group (COCO areas) it reports:
mIoU at logit thresholds -3..+1 (``miou_t0`` is the benchmark's), the median predicted / GT area, the share of
predicted pixels inside the prompt box, the mIoU of each mask clipped to its box, box fill's mIoU on the same
instances and the mean predicted IoU. ``--img-size`` runs the checkpoint's weights at another input size (the
encoder is convolutional, SAM's decoder takes any grid).

    python -m benchmarks.box_diagnostics --ann ../shared/data/coco2017_subset/annotations/instances_val2017_subset.json \\
        --images ../shared/data/coco2017_subset/val2017 --ckpt runs/real-smoke/backbone/last.ckpt --limit 40 \\
        --json results/box_diagnostics.json
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List, Sequence

import numpy as np
import torch

from benchmarks.toolkit.results import write_json
from litesam_pl.data.coco import ann_masks

THRESHOLDS = (-3.0, -2.0, -1.0, 0.0, 1.0)
GROUPS = {"all": (0, float("inf")), "small": (0, 32 ** 2), "medium": (32 ** 2, 96 ** 2), "large": (96 ** 2, float("inf"))}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / max(float((a | b).sum()), 1.0)


def load_diagnosed_model(ckpt: str | None, img_size: int | None) -> torch.nn.Module:
    """The checkpoint's model (at ``img_size`` when given) or a seeded random ``litesam``."""
    from litesam_pl.models.checkpoint import load_model, load_or_random

    if ckpt and img_size:
        return load_model(ckpt, img_size=int(img_size))
    kw = {"img_size": int(img_size)} if img_size else {}
    return load_or_random(ckpt, **kw)[0].eval()


def instance_rows(model: torch.nn.Module, data: Any) -> List[Dict[str, float]]:
    from segment_anything import SamPredictor

    from litesam_pl.evaluation.prompting import boxes_from_annotations

    predictor = SamPredictor(model)
    rows: List[Dict[str, float]] = []
    with torch.inference_mode():
        for image_id in data.image_ids:
            sample = data.load(image_id)
            anns = [a for a in sample.annotations if not a.get("iscrowd", 0) and float(a.get("area", 0)) >= 1]
            if not anns:
                continue
            gt = ann_masks(anns, sample.height, sample.width)
            predictor.set_image(sample.image)
            boxes = predictor.transform.apply_boxes_torch(
                torch.as_tensor(boxes_from_annotations(anns), dtype=torch.float32), predictor.original_size)
            sparse, dense = model.prompt_encoder(points=None, boxes=boxes, masks=None)
            low, iou = model.mask_decoder(image_embeddings=predictor.features, image_pe=model.prompt_encoder.get_dense_pe(),
                                          sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                          multimask_output=False)
            logits = model.postprocess_masks(low, predictor.input_size, predictor.original_size)[:, 0].numpy()
            for k, a in enumerate(anns):
                g = gt[k]
                x, y, w, h = a["bbox"]
                fill = np.zeros_like(g)
                fill[int(y):int(np.ceil(y + h)), int(x):int(np.ceil(x + w))] = True
                pred = logits[k] > 0
                r = {"area": float(a["area"]), "box_fill": _iou(fill, g), "pred_iou": float(iou[k, 0]),
                     "area_ratio": float(pred.sum()) / max(float(g.sum()), 1.0),
                     "inside_box": float((pred & fill).sum()) / max(float(pred.sum()), 1.0),
                     "clipped": _iou(pred & fill, g)}
                r.update({f"t{t:+g}": _iou(logits[k] > t, g) for t in THRESHOLDS})
                rows.append(r)
    return rows


def summarise_boxes(rows: Sequence[Dict[str, float]]) -> Dict[str, Dict[str, float]]:
    out: Dict[str, Dict[str, float]] = {}
    for name, (lo, hi) in GROUPS.items():
        sel = [r for r in rows if lo <= r["area"] < hi] if name != "all" else list(rows)
        if not sel:
            continue
        mean = lambda k: round(100 * float(np.mean([r[k] for r in sel])), 1)  # noqa: E731
        out[name] = {"instances": len(sel), **{f"miou_t{t:+g}": mean(f"t{t:+g}") for t in THRESHOLDS},
                     "clipped_miou": mean("clipped"), "box_fill_miou": mean("box_fill"),
                     "inside_box_pct": mean("inside_box"), "pred_iou_pct": mean("pred_iou"),
                     "median_area_ratio": round(float(np.median([r["area_ratio"] for r in sel])), 2)}
    return out


def main(argv: Sequence[str] | None = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description="What a box-prompted model does wrong (see the module docstring).")
    p.add_argument("--ann", required=True, help="COCO instances JSON")
    p.add_argument("--images", required=True, help="image folder")
    p.add_argument("--ckpt", default=None, help="checkpoint or export (default: seeded random weights)")
    p.add_argument("--img-size", type=int, default=None, help="run the weights at this input size")
    p.add_argument("--limit", type=int, default=None, help="first N images")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    from litesam_pl.data.coco import CocoInstances

    model = load_diagnosed_model(a.ckpt, a.img_size)
    data = CocoInstances(a.ann, a.images, limit=a.limit)
    res = {"ckpt": a.ckpt, "img_size": int(model.image_encoder.img_size), "images": len(data.image_ids),
           "groups": summarise_boxes(instance_rows(model, data))}
    for name, g in res["groups"].items():
        print(name, " ".join(f"{k}={v}" for k, v in g.items()))
    if a.json:
        write_json(a.json, res)
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
