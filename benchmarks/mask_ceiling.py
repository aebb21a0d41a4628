"""The mask-AR ceiling of a checkpoint: SegEvery's mask AR next to the AR of masks decoded from the exact GT prompts.

If every GT mask is decoded from its own exact GT box (or GT box + interior point), the proposals are as good as
proposals can be, so the mask AR of those masks bounds what any AutoPPN can reach with this decoder; the gap between
it and ``val/ar100`` is what better proposals could still win. Prints and saves JSON.

    python -m benchmarks.mask_ceiling --ckpt runs/smoke/litesam/last.ckpt --shards data/smoke/shards/val \\
        --img-size 192 --json results/mask_ceiling.json
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from litesam_pl.data.datamodule import SA1BDataModule
from litesam_pl.data.transforms import normalize_batch
from litesam_pl.mask_resampling import upsample_prompt_logits
from litesam_pl.metrics.recall import MaskRecall, pred_gt_iou_matrix
from litesam_pl.models.checkpoint import load_model
from litesam_pl.models.registry import ModelError
from benchmarks.toolkit.results import write_json

FORMS = ("box", "point+box")


@torch.no_grad()
def mask_ceiling(model: nn.Module, loader, img_size: int) -> dict:
    """Per prompt form: mask AR@100 of the GT-prompted masks, their mIoU and the share above IoU 0.75 / 0.9.
    ``model``: the network (``load_model``: ``image_encoder`` and ``predict_masks``)."""
    recall = {f: MaskRecall(max_dets=(100, 1000)) for f in FORMS}
    ious = {f: [] for f in FORMS}
    for batch in loader:
        batch = normalize_batch(batch)  # the loader's uint8 images -> the model's float input (as on_after_batch_transfer)
        emb = model.image_encoder(batch["image"])
        for form in FORMS:
            points = (batch["points"], batch["point_labels"]) if "point" in form else None
            logits, _ = model.predict_masks(emb, points=points, boxes=batch["gt_boxes"], multimask_output=False)
            masks = upsample_prompt_logits(logits, img_size)[:, :, 0] > 0
            for i in range(masks.shape[0]):
                h, w = (int(x) for x in batch["input_size"][i])
                v = batch["valid"][i].bool()
                m = pred_gt_iou_matrix(masks[i, v, :h, :w], batch["masks"][i, v, :h, :w])
                recall[form].update(m)
                ious[form].append(m.diag())
    out = {}
    for form in FORMS:
        d = torch.cat(ious[form]) if ious[form] else torch.zeros(0)
        out[form] = {"gt_prompt_mask_ar100": float(recall[form].compute()[0]), "miou": float(d.mean()),
                     "share_iou_above_0.75": float((d > 0.75).float().mean()),
                     "share_iou_above_0.9": float((d > 0.9).float().mean()), "masks": int(d.numel())}
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True, help="a Lightning checkpoint (litesam fit) or a litesam export")
    p.add_argument("--shards", required=True, help="validation shards (SA-1B format)")
    p.add_argument("--img-size", type=int, required=True)
    p.add_argument("--max-masks", type=int, default=64, help="GT masks per image (cover them all)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    if not Path(a.ckpt).is_file():
        p.error(f"no checkpoint at {a.ckpt}")
    try:
        model = load_model(a.ckpt)  # the network the checkpoint names (older checkpoints too), in eval mode
    except ModelError as err:  # not a litesam-pl file, or weights that do not fit: its one line
        p.error(str(err))
    dm = SA1BDataModule(train_shards=None, val_shards=a.shards, batch_size=a.batch_size, num_workers=0,
                        img_size=a.img_size, max_masks=a.max_masks)
    dm.setup("validate")
    res = {"ckpt": a.ckpt, "shards": a.shards, "forms": mask_ceiling(model, dm.val_dataloader(), a.img_size)}
    for form, r in res["forms"].items():
        print(f"{form:10s} GT-prompt mask AR@100 {r['gt_prompt_mask_ar100']:.3f}  mIoU {r['miou']:.3f}  "
              f"IoU>0.75 {r['share_iou_above_0.75']:.2f}  IoU>0.9 {r['share_iou_above_0.9']:.2f}  ({r['masks']} masks)")
    if a.json:
        write_json(a.json, res)
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
