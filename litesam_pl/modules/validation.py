"""The validation and test side of ``LiteSAMTaskBase`` (``litesam_pl.modules.base``), as a mixin.

``EvaluationMixin`` owns the validation metrics (``init_eval_metrics``: ``val_miou_1box``, ``val_miou_1point``,
``val_map``, ``val_box_recall``, ``val_mask_recall``, ``val_point_precision`` and its chance level
``val_point_chance``, ``val_point_hit``, ``val_loss_*``),
their updates (``eval_masks``, ``eval_ppn``, ``eval_segevery``), the DDP buffer sync before an evaluation epoch, the
logged ``val/*`` / ``test/*`` values (``_eval_epoch_end``), Lightning's validation / test hooks and ``batch_photos``
(the batch as photos, for SegEvery here and in ``predict_step``, which stays in ``base.py``). It reads the rest from
the module it is mixed into: ``cfg``, ``model``, ``has_ppn``, ``val_masks`` / ``val_ppn`` / ``val_prompt_form``,
``check_batch``, ``encode``, ``predict``, ``ppn_forward``, ``ppn_losses``, ``mask_losses``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
from torch import Tensor
from torchmetrics import MeanMetric

from litesam_pl.compat import ddp_sync_buffers
from litesam_pl.inference.segevery import segment_everything
from litesam_pl.mask_resampling import upsample_prompt_logits
from litesam_pl.metrics.detection import BoxRecall, MaskAP
from litesam_pl.metrics.miou import MIoU, mask_ious
from litesam_pl.metrics.recall import MaskRecall, PointPrecision, pred_gt_iou_matrix
from litesam_pl.models.prompt_forms import multimask_output_for

__all__ = ["EvaluationMixin"]


class EvaluationMixin:
    """Validation / test of a ``LiteSAMTaskBase`` (see the module docstring for what it reads)."""

    def init_eval_metrics(self) -> None:
        """The validation metrics (torchmetrics: synced across DDP ranks at compute time); ``__init__`` calls it."""
        self.val_miou_1box = MIoU()  # the benchmarks' mIoU (summed IoUs and counts), overall
        self.val_miou_1point = MIoU()
        self.val_point_hit = MeanMetric()
        self.val_point_precision = PointPrecision()
        self.val_point_chance = MeanMetric()  # what a random point scores: the image's share of GT-covered pixels
        top = max(int(self.cfg.validation.top_n), 100)
        self.val_mask_recall = MaskRecall(max_dets=(100, top))
        self.val_box_recall = BoxRecall(max_dets=(100, top))  # AutoPPN's boxes (pycocotools' box AR, synced as sums)
        self.val_map = MaskAP()  # 1-box masks scored by the IoU head (pycocotools' AP; per-mask numbers, no masks)
        # validation losses, batch-size weighted: synced at epoch end like the metrics above, never per step (a
        # rank with fewer or no validation batches must not leave the others waiting in a collective)
        self.val_loss_ppn = MeanMetric(nan_strategy="disable")  # a NaN loss shows as NaN (and no host sync)
        self.val_loss_mask_box = MeanMetric(nan_strategy="disable")

    @torch.no_grad()
    def eval_masks(self, emb: Tensor, batch: Dict[str, Any]) -> None:
        S = batch["image"].shape[-1]
        valid = batch["valid"].bool()
        gt = batch["masks"].bool()
        box_logits, box_iou = self.predict(emb, boxes=batch["gt_boxes"], multimask_output=multimask_output_for("box"))
        box_masks = upsample_prompt_logits(box_logits, S)[:, :, 0] > 0  # [B, K, S, S]
        pt_logits, pt_iou = self.predict(emb, points=(batch["points"], batch["point_labels"]),
                                         multimask_output=multimask_output_for("point"))
        best = pt_iou.argmax(-1)  # SAM's choice among the 3 outputs: the highest predicted IoU
        pt_logits = pt_logits.gather(2, best[:, :, None, None, None].expand(-1, -1, 1, *pt_logits.shape[-2:]))
        pt_masks = upsample_prompt_logits(pt_logits, S)[:, :, 0] > 0
        for i in range(gt.shape[0]):
            h, w = (int(x) for x in batch["input_size"][i])
            v = valid[i]
            if not v.any():
                continue
            g = gt[i, v, :h, :w]
            bm = box_masks[i, v, :h, :w]
            pm = pt_masks[i, v, :h, :w]
            self.val_miou_1box.update(mask_ious(bm, g))  # the overall mean only: validation logs no size groups
            self.val_miou_1point.update(mask_ious(pm, g))
            if self.cfg.validation.compute_map:  # IoUs, scores and areas: a few numbers per mask, never the masks
                self.val_map.update(pred_gt_iou_matrix(bm, g), box_iou[i, v, 0].float(), g.flatten(1).sum(1),
                                    bm.flatten(1).sum(1))

    @torch.no_grad()
    def eval_ppn(self, ppn_out: Dict[str, Tensor], batch: Dict[str, Any]) -> None:
        """AutoPPN's proposals against the GT of each image: box AR against every GT box (``val_box_recall``); point
        precision (top-k points, k = the image's number of loaded GT masks) and the top-100 hit rate, a point
        counting as a hit when its pixel lies in one of those masks (``val_max_masks`` should cover every mask of an
        image; images with more masks are scored against the first ``val_max_masks``). Beside the precision, its
        chance level ``val_point_chance``: the share of the image's pixels inside those masks, what a point dropped
        anywhere in the image scores (near 1 on fully annotated photos such as BSDS, where a high precision says
        nothing)."""
        S = batch["image"].shape[-1]
        dec = self.model.autoppn.decode(
            {"heatmap_logits": ppn_out["heatmap_logits"].float(), "boxes": ppn_out["boxes"].float()}, img_size=S,
            top_n=self.cfg.validation.top_n, score_threshold=self.cfg.validation.ppn_score_threshold,
            input_sizes=batch["input_size"],
        )
        gt_masks = batch["masks"].bool() & batch["valid"].bool()[:, :, None, None]
        covered = gt_masks.any(1)  # [B, S, S]: the pixel lies in some GT mask
        for i in range(covered.shape[0]):
            v = dec["valid"][i].bool()
            boxes, scores, points = dec["boxes"][i][v].float(), dec["scores"][i][v].float(), dec["points"][i][v].float()
            gt_boxes = torch.as_tensor(batch["all_boxes"][i]).float().reshape(-1, 4)
            self.val_box_recall.update(boxes, gt_boxes, scores)
            pix = points.long().clamp(0, S - 1)
            inside = covered[i, pix[:, 1], pix[:, 0]]  # ranked by score (decode's order)
            num_gt = int(batch["valid"][i].sum())
            self.val_point_precision.update(inside, num_gt)
            if num_gt > 0:
                h, w = (int(x) for x in batch["input_size"][i])
                self.val_point_chance.update(covered[i, :h, :w].float().mean())
            if len(inside):
                self.val_point_hit.update(inside[:100].float())

    def batch_photos(self, batch: Dict[str, Any]) -> List[Any]:
        """The batch's images as uint8 ``HxWx3`` arrays at their resized size (de-normalised, padding cut off):
        what ``segment_everything`` takes, as a user passes photos."""
        mean = self.model.pixel_mean.view(3, 1, 1)
        std = self.model.pixel_std.view(3, 1, 1)
        out = []
        for i in range(batch["image"].shape[0]):
            h, w = (int(x) for x in batch["input_size"][i])
            pix = (batch["image"][i, :, :h, :w].float() * std + mean).round().clamp(0, 255)
            out.append(pix.permute(1, 2, 0).to(torch.uint8).cpu().numpy())
        return out

    @torch.no_grad()
    def eval_segevery(self, batch: Dict[str, Any]) -> None:
        """Mask AR of SegEvery as users run it (``segment_everything``: AutoPPN prompts in the form
        ``val_prompt_form``, SegEvery's default for the joint stage, top ``validation.top_n``, the IoU and stability
        filters off, mask NMS as by default) against the image's GT masks."""
        images = self.batch_photos(batch)
        gts = [batch["masks"][i, batch["valid"][i].bool(), :im.shape[0], :im.shape[1]] for i, im in enumerate(images)]
        was_training = self.model.training
        results = segment_everything(
            self.model, images, prompts="autoppn", prompt_type=self.val_prompt_form,
            top_n=int(self.cfg.validation.top_n), score_threshold=float(self.cfg.validation.ppn_score_threshold),
            pred_iou_thresh=0.0, stability_score_thresh=0.0, output_mode="tensors",
        )
        self.model.train(was_training)
        for res, gt in zip(results, gts):
            self.val_mask_recall.update(pred_gt_iou_matrix(res["masks"], gt.to(res["masks"].device)))

    def _eval_step(self, batch: Dict[str, Any], prefix: str) -> None:
        # No collective op in here (no self.log(sync_dist=True), no DDP buffer broadcast: see
        # _sync_buffers_before_eval): ranks may run different numbers of validation batches, or none.
        self.check_batch(batch)
        bs = batch["image"].shape[0]
        emb = self.encode(batch["image"])
        if self.val_ppn and self.has_ppn:
            ppn_out = self.ppn_forward(emb)
            r = self.ppn_losses(ppn_out, batch)
            self.val_loss_ppn.update(r["ppn"].detach().float(), bs)
            self.eval_ppn(ppn_out, batch)
            self.eval_segevery(batch)
        if self.val_masks:
            r = self.mask_losses(emb, batch, ("box",))
            self.val_loss_mask_box.update(r["mask"].detach().float(), bs)
            self.eval_masks(emb, batch)

    def _ddp_wrapper(self) -> Optional[torch.nn.parallel.DistributedDataParallel]:
        """The trainer's DDP wrapper of this module, if any (only ``fit`` wraps the model)."""
        trainer = self._trainer
        model = getattr(getattr(trainer, "strategy", None), "model", None) if trainer is not None else None
        return model if isinstance(model, torch.nn.parallel.DistributedDataParallel) else None

    def _sync_buffers_before_eval(self) -> None:
        """Broadcast rank 0's module buffers now, on every rank, and keep DDP from doing it in ``validation_step``.

        DDP re-broadcasts the buffers in the first no-grad forward after a training forward (and in the very first
        forward), i.e. inside the first ``validation_step``. A rank that has fewer validation batches, or none,
        then leaves the others waiting in that broadcast for good (a hang, not an error). This
        hook runs on every rank at the start of each validation/test epoch whatever its batches, does the same
        broadcast (``DistributedDataParallel._sync_buffers``, through ``litesam_pl.compat.ddp_sync_buffers``; rank 0
        authoritative) and clears the flag that would make the next forward repeat it. Stock DDP clears that flag after its no-grad forward too, so training
        afterwards behaves exactly as before.
        """
        ddp = self._ddp_wrapper()
        if ddp is None:
            return
        # exactly the decision (flag, broadcast_buffers / forward_sync_buffers, any buffers) and the broadcast
        # (rank 0 authoritative, coalesced) of DDP's own pre-forward
        if ddp.will_sync_module_buffers():
            ddp_sync_buffers(ddp)
        ddp.require_forward_param_sync = False

    def on_validation_epoch_start(self) -> None:
        self._sync_buffers_before_eval()

    def on_test_epoch_start(self) -> None:
        self._sync_buffers_before_eval()

    def _eval_epoch_end(self, prefix: str) -> None:
        # no rank-dependent branches here: every rank computes (and so syncs) the same metrics, in the same order,
        # whether or not it had validation batches (torchmetrics syncs every state, zero on a rank without updates)
        if self.val_ppn and self.has_ppn:
            self.log(f"{prefix}/loss_ppn", self.val_loss_ppn.compute(), sync_dist=True)
        if self.val_masks:
            self.log(f"{prefix}/loss_mask_box", self.val_loss_mask_box.compute(), sync_dist=True)
        if self.val_masks:
            self.log(f"{prefix}/miou_1box", self.val_miou_1box.compute()["miou"].float(), sync_dist=True)
            self.log(f"{prefix}/miou_1point", self.val_miou_1point.compute()["miou"].float(), sync_dist=True)
            if self.cfg.validation.compute_map:
                # one-class AP of the 1-box masks at the input size S on these shards (not the benchmarks' official
                # per-category COCO AP at image size): the name says "1-box", as miou_1box
                res = self.val_map.compute()  # float64, synced: the same on every rank
                self.log(f"{prefix}/ap_1box", res["ap"].float(), sync_dist=True)
                self.log(f"{prefix}/ap50_1box", res["ap50"].float(), sync_dist=True)
        if self.val_ppn and self.has_ppn:
            top = max(int(self.cfg.validation.top_n), 100)
            res = self.val_box_recall.compute()  # NaN without any GT box, as before
            box_ar100, box_ar_top = float(res["ar@100"]), float(res[f"ar@{top}"])
            ar100, ar_top = self.val_mask_recall.compute().tolist()
            # ar100: the 100 best-ranked proposals; ar_top<N>: all of them, from AutoPPN's top N = validation.top_n
            # prompts (not the paper's AR@1000 protocol of benchmarks/coco.py: 256 prompts, SAM's ranking and box NMS)
            pairs = [("ar100", ar100), ("box_ar100", box_ar100)]
            if top != 100:
                pairs += [(f"ar_top{top}", ar_top), (f"box_ar_top{top}", box_ar_top)]
            for name, value in pairs:
                self.log(f"{prefix}/{name}", torch.tensor(value, device=self.device), sync_dist=True)
            self.log(f"{prefix}/point_precision", self.val_point_precision.compute(), sync_dist=True)
            self.log(f"{prefix}/point_precision_chance", self.val_point_chance.compute(), sync_dist=True)
            self.log(f"{prefix}/point_hit_rate", self.val_point_hit.compute(), sync_dist=True)
        for m in (self.val_miou_1box, self.val_miou_1point, self.val_point_hit, self.val_point_precision,
                  self.val_point_chance, self.val_mask_recall, self.val_box_recall, self.val_map, self.val_loss_ppn,
                  self.val_loss_mask_box):
            m.reset()

    def validation_step(self, batch: Dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: Dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")
