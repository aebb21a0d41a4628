"""The LightningModule shared by the three Lite-SAM training stages.

``LiteSAMTaskBase`` owns the network (``self.model``, built from the ``model`` part: ``litesam_pl.create_model``),
the optimizer and its learning-rate schedule (LightningCLI callables; Adam at 4e-5, constant, as the paper), the
optional ``init_from`` warm start, and the pieces every stage reuses:
prompted mask prediction + SAM's mask loss, AutoPPN forward + loss, and the validation metrics
(``val/miou_1box``, ``val/miou_1point``, ``val/ap_1box``; for models with AutoPPN ``val/ar100``, ``val/ar_top1000``
(mask AR of SegEvery), ``val/box_ar100``, ``val/box_ar_top1000`` (AutoPPN's boxes), ``val/point_precision`` and
``val/point_hit_rate``; see ``_eval_epoch_end`` and ``ValidationConfig``).
The stages (``backbone_box.py``, ``autoppn.py``, ``joint.py``) only choose which parts train and validate.

This file holds set-up, optimizer, prompts, losses, the training step and ``predict_step``; the validation / test
side (metrics, their updates and logging, the DDP buffer sync before evaluation) is ``EvaluationMixin`` in
``validation.py``, a base of ``LiteSAMTaskBase``.
"""
from __future__ import annotations

import copy
import re
import warnings
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from litesam_pl.inference.segevery import SegEvery
from litesam_pl.losses import MaskLoss, PPNLoss, predicted_mask_iou
from litesam_pl.mask_resampling import (block_downsample_masks, downsample_masks, point_sample_logits,
                                        point_sample_masks, uncertain_point_coords, upsample_prompt_logits)
from litesam_pl.models.checkpoint import load_init_weights
from litesam_pl.models.registry import create_model
from litesam_pl.models.prompt_forms import multimask_output_for
from litesam_pl.models.prompt_encoder import uses_box_mask

from .config import (PARTS, POINT_LOSS_FOR_TARGETS, ConfigError, MaskLossConfig, ModelSpec, PPNLossConfig,
                     PromptConfig, ValidationConfig, coerce, plain)
from .optim import optimization, upgraded_checkpoint
from .validation import EvaluationMixin

__all__ = ["LiteSAMTaskBase", "load_init_weights", "slice_prompts", "PROMPT_KEYS"]

# the per-prompt entries of a batch (``[B, K, ...]``, see docs/contracts.md)
PROMPT_KEYS = ("masks", "boxes", "gt_boxes", "points", "point_labels", "valid")


def slice_prompts(batch: Dict[str, Any], index: slice) -> Dict[str, Any]:
    """A copy of ``batch`` keeping the prompts ``index`` (a slice of the K axis) of every image."""
    return {**batch, **{key: batch[key][:, index] for key in PROMPT_KEYS}}


class LiteSAMTaskBase(EvaluationMixin, pl.LightningModule):
    """Shared training/validation logic; subclasses set what trains (``train_masks``, ``train_ppn``).

    The configuration comes in typed parts (``litesam_pl.modules.config``; each documents its fields), a recipe's
    ``model.init_args`` blocks of the same names:

    Args:
        model: the network (``ModelSpec``: registry name, ``create_model`` kwargs; ``img_size`` and ``ppn_groups``
            linked from ``data.img_size`` / ``data.num_groups`` by ``litesam fit``).
        mask_loss: ``L_mask`` (``MaskLossConfig``: focal/dice/IoU weights, focal alpha/gamma, loss resolution,
            minimum mask area, weight in ``L_total``).
        ppn_loss: ``L_ppn`` (``PPNLossConfig``: heatmap/box weights, point loss (linked from ``data.target_mode``),
            hard negatives, Smooth-L1 beta/unit/weighting, weight in ``L_total``).
        optimizer: the optimizer of the trainable parameters (``OptimizerCallable``: a recipe's ``{class_path:
            torch.optim.Adam, init_args: {lr: 4.0e-5}}``; any ``torch.optim`` class, e.g. ``torch.optim.AdamW``).
            ``None`` (the default): the paper's Adam, lr 4e-5 (betas (0.9, 0.999), no weight decay).
        lr_scheduler: the learning-rate schedule, stepped every optimizer step (``LRSchedulerCallable``, e.g.
            ``litesam_pl.modules.schedules.WarmupCosine``: warm-up, then constant or cosine; given no
            ``total_steps``, it ends at the trainer's ``estimated_stepping_batches``). Default: none (constant, as
            the paper).
        prompts: training prompts (``PromptConfig``: point / box loss weights, prompts per image).
        validation: validation metrics (``ValidationConfig``: ``val/ap_1box`` on or off, AutoPPN top-N, score
            threshold).
        init_from: checkpoint (Lightning ``.ckpt`` or export) to warm-start ``self.model`` from (shape-matching keys),
            loaded at the start of ``fit`` (not when resuming with ``--ckpt_path``); ``apply_init_from()`` by hand.

    Each part may also be given as a dict of its fields, the callables as ``{class_path, init_args}`` (or
    ``optimizer`` as the optimizer part of older checkpoints: ``optim.upgrade_optimizer``). ``self.cfg`` holds the
    parts; ``self.hparams`` (and a checkpoint's ``hyper_parameters``) holds them as plain dicts, the callables as
    ``{class_path, init_args}``. A bad value of either stops the start-up (``optim.optimization``).
    """

    train_masks: bool = True
    train_ppn: bool = True
    val_masks: bool = True
    val_ppn: bool = True
    # the prompt form SegEvery gives AutoPPN's proposals in validation (``val/ar100``): one this stage's decoder
    # was trained on (the backbone stage trains boxes; the joint stage overrides it with SegEvery's default form)
    val_prompt_form: str = "box"

    def __init__(
        self,
        model: ModelSpec = ModelSpec(),
        mask_loss: MaskLossConfig = MaskLossConfig(),
        ppn_loss: PPNLossConfig = PPNLossConfig(),
        optimizer: Optional[OptimizerCallable] = None,
        lr_scheduler: Optional[LRSchedulerCallable] = None,
        prompts: PromptConfig = PromptConfig(),
        validation: ValidationConfig = ValidationConfig(),
        init_from: Optional[str] = None,
    ) -> None:
        super().__init__()
        given = dict(model=model, mask_loss=mask_loss, ppn_loss=ppn_loss, prompts=prompts, validation=validation)
        self.cfg = SimpleNamespace(**{key: coerce(PARTS[key], value, key) for key, value in given.items()})
        optim = optimization(optimizer, lr_scheduler)  # None: the paper's Adam at 4e-5 (optim.PAPER_OPTIMIZER)
        self.optimizer_factory = optim.make_optimizer
        # a schedule that leaves the lr as it is (WarmupCosine, constant, no warm-up) is left out, as no schedule
        self.lr_scheduler_factory = optim.make_lr_scheduler
        self.save_hyperparameters()
        for key, part in vars(self.cfg).items():  # each part whole, as a plain dict (YAML, weights_only checkpoints)
            self._hparams[key] = plain(part)
        self._hparams["optimizer"], self._hparams["lr_scheduler"] = optim.optimizer, optim.lr_scheduler
        self._hparams_initial = copy.deepcopy(self._hparams)
        spec, ml, ppn = self.cfg.model, self.cfg.mask_loss, self.cfg.ppn_loss
        self.model_name = spec.name
        self.model = create_model(spec.name, **spec.create_kwargs())
        self.init_report: Optional[Dict[str, List[str]]] = None  # set by apply_init_from()
        self.mask_loss = MaskLoss(ml.focal_weight, ml.dice_weight, ml.iou_weight, ml.focal_alpha, ml.focal_gamma)
        self.ppn_loss = PPNLoss(ppn.heatmap_weight, ppn.box_weight, ppn.point_loss, ppn.neg_ratio,
                                box_beta=ppn.box_beta, box_unit=ppn.box_unit, box_weighting=ppn.box_weighting)
        self.last_loss_terms: Dict[str, Tensor] = {}
        self.configure_trainable()
        self.init_eval_metrics()  # val_miou_1box, val_map, ... (EvaluationMixin, validation.py)

    # ------------------------------------------------------------------------------------------------------------
    # set-up
    # ------------------------------------------------------------------------------------------------------------
    @property
    def has_ppn(self) -> bool:
        return getattr(self.model, "autoppn", None) is not None

    @property
    def img_size(self) -> int:
        return int(self.model.image_encoder.img_size)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> Any:
        """Lightning's, on the checkpoint with older hyper-parameters upgraded (``optim.upgraded_checkpoint``)."""
        return super().load_from_checkpoint(upgraded_checkpoint(checkpoint_path), *args, **kwargs)

    def configure_trainable(self) -> None:
        """Freeze what this stage does not train (keeps DDP free of unused parameters and Adam of dead state)."""
        if not self.train_ppn and self.has_ppn:
            self.model.autoppn.requires_grad_(False)
        if not self.train_masks:
            self.model.prompt_encoder.requires_grad_(False)
            self.model.mask_decoder.requires_grad_(False)
        # SAM's mask-prompt branch is fed only the box masks of a BoxMaskPromptEncoder: otherwise keep it out of the
        # optimizer
        if hasattr(self.model.prompt_encoder, "mask_downscaling") and not uses_box_mask(self.model.prompt_encoder):
            self.model.prompt_encoder.mask_downscaling.requires_grad_(False)

    def apply_init_from(self) -> Optional[Dict[str, List[str]]]:
        """Load ``init_from`` into ``self.model`` (shape-matching keys); a missing file is a clear error."""
        if self.hparams.init_from:
            self.init_report = load_init_weights(self.model, self.hparams.init_from)
            return self.init_report
        return None

    def setup(self, stage: str) -> None:
        self.quiet_batch_transfer_notice()
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is not None:
            self.check_datamodule(datamodule)
        # warm start only when fitting from scratch: a resumed run (--ckpt_path) or validate/test loads its own
        # weights afterwards, and a checkpoint loaded elsewhere must not need the init_from file
        if stage == "fit" and self.hparams.init_from and self.init_report is None:
            if not getattr(self.trainer, "ckpt_path", None):
                self.apply_init_from()
                rep = self.init_report
                self.print(f"init_from {self.hparams.init_from}: {len(rep['loaded'])} tensors loaded, "
                           f"{len(rep['missing'])} kept their initialisation, {len(rep['skipped'])} skipped")

    def check_datamodule(self, datamodule: Any) -> None:
        """``ConfigError`` (one line naming both options) where the data contradicts the model or the loss: the
        input size, and for a stage that runs AutoPPN its size groups, grid stride and target form (``data.
        target_mode`` <-> ``ppn_loss.point_loss``). ``litesam`` links the data's size, groups and target form into
        the model (set once, in ``data``) and the model's grid stride into the data (``cli.config.MODEL_LINKS``),
        and calls this before it runs; ``setup`` calls it for any Trainer."""
        linked = "set it once, in {0} (litesam links it into {1})"
        checks = [("data.img_size", getattr(datamodule, "img_size", None), "model.img_size", self.img_size, linked)]
        if self.has_ppn and (self.train_ppn or self.val_ppn):
            ppn, mode = self.model.autoppn, (getattr(datamodule, "hparams", None) or {}).get("target_mode")
            groups = getattr(datamodule, "num_groups", None)
            checks += [
                ("data.num_groups", groups, "model.ppn_groups", ppn.num_groups, linked),
                ("data.ppn_stride", getattr(datamodule, "ppn_stride", None), "model.kwargs.ppn_kwargs.stride",
                 ppn.stride, "set it once, in {1} (litesam links it into {0})"),
                ("data.target_mode", POINT_LOSS_FOR_TARGETS.get(mode, mode), "ppn_loss.point_loss",
                 self.cfg.ppn_loss.point_loss, linked),
            ]
        for data_key, data_value, model_key, model_value, hint in checks:
            if data_value is not None and data_value != model_value:
                shown = f"{mode!r} (trained with {data_value!r})" if data_key == "data.target_mode" else data_value
                raise ConfigError(f"{data_key}={shown} contradicts {model_key}={model_value!r}: "
                                  + hint.format(data_key, model_key))

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        """Name the network in the checkpoint under its own key (``litesam_pl.models.checkpoint``: what
        ``load_model`` reads), independent of this module's argument names."""
        from litesam_pl.models.checkpoint import write_model_entry

        write_model_entry(checkpoint, self.model)

    def configure_optimizers(self):
        """``optimizer`` over the trainable parameters and ``lr_scheduler`` on it, stepped every optimizer step; a
        ``WarmupCosine`` without ``total_steps`` ends at the trainer's ``estimated_stepping_batches`` (read once its
        cosine has begun)."""
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            raise ValueError("nothing to train: every parameter is frozen")
        opt = self.optimizer_factory(params)
        if self.lr_scheduler_factory is None:
            return opt
        sched = self.lr_scheduler_factory(opt)
        if hasattr(sched, "total_steps_from"):  # WarmupCosine: read only when its own total_steps is null
            sched.total_steps_from(lambda: self.trainer.estimated_stepping_batches)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------------------------------------------------
    # forward pieces
    # ------------------------------------------------------------------------------------------------------------
    @staticmethod
    def quiet_batch_transfer_notice() -> None:
        """Silence Lightning's ``You have overridden `on_after_batch_transfer` in `LightningModule` but have passed
        in a `LightningDataModule`...``, printed on every fit: using this module's hook is the intent (it normalises
        the loader's uint8 images on the device, below; SA1BDataModule has no such hook). Only that one message (its
        text, category and Lightning's module): the same notice about another hook, or about a hook both override,
        still shows. ``setup`` calls it (every fit / validate / test / predict, before the first batch): a filter
        set at import would be lost where a ``warnings.catch_warnings`` block was open around the import."""
        warnings.filterwarnings(
            "ignore", category=UserWarning, module=r"lightning\.pytorch\.",
            message=re.escape("You have overridden `on_after_batch_transfer` in `LightningModule` but have passed in "
                              "a `LightningDataModule`. It will use the implementation from `LightningModule` instance."))

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Normalise the loader's uint8 ``image`` on the device (``litesam_pl.data.transforms.normalize_batch``):
        the float32 ``(x - mean) / std``, zero-padded outside ``input_size``, that the model reads (identical to
        ``Sam.preprocess``). Float images (hand-built batches) pass unchanged. The batch crosses /dev/shm and PCIe
        as uint8, 4x smaller (docs/contracts.md, "Samples"). Lightning's notice that this hook is used instead of
        the datamodule's is silenced (intended): ``quiet_batch_transfer_notice``."""
        from litesam_pl.data.transforms import normalize_batch

        return normalize_batch(batch)

    def check_batch(self, batch: Dict[str, Any]) -> None:
        """Clear error when the data's geometry does not match the model's."""
        S = batch["image"].shape[-1]
        if batch["image"].shape[-2] != S or S != self.img_size:
            raise ValueError(
                f"batch images are {tuple(batch['image'].shape[-2:])} but the model's img_size is {self.img_size}: "
                "set data.img_size (litesam links it into model.img_size)"
            )

    def encode(self, image: Tensor) -> Tensor:
        """``[B, 3, S, S]`` -> image embedding ``[B, 256, S/16, S/16]``."""
        return self.model.image_encoder(image)

    def predict(
        self,
        embeddings: Tensor,
        boxes: Optional[Tensor] = None,
        points: Optional[Tuple[Tensor, Tensor]] = None,
        multimask_output: bool = False,
    ) -> Tuple[Tensor, Tensor]:
        """Prompted masks: boxes ``[B, K, 4]`` or points ``([B, K, n, 2], [B, K, n])`` ->
        ``(low_res_logits [B, K, M, h, w], iou_pred [B, K, M])``."""
        return self.model.predict_masks(embeddings, points=points, boxes=boxes, multimask_output=multimask_output)

    def select_prompts(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        """Training prompts: drop masks under ``mask_loss.min_train_mask_area`` and keep at most
        ``prompts.max_per_image`` per image."""
        out = dict(batch)
        min_area = int(self.cfg.mask_loss.min_train_mask_area)
        if min_area > 0:
            out["valid"] = batch["valid"] & (batch["masks"].flatten(2).sum(-1) >= min_area)
        k = self.cfg.prompts.max_per_image
        if k and batch["masks"].shape[1] > k:
            out = slice_prompts(out, slice(0, k))
        return out

    def _loss_pair(self, logits: Tensor, masks: Tensor, targets: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        """Logits and targets at the loss resolution (``mask_loss.resolution``); ``targets`` caches the last."""
        if self.cfg.mask_loss.resolution == "full":
            S = masks.shape[-1]
            return upsample_prompt_logits(logits, S), masks.float() if targets is None else targets
        return logits, downsample_masks(masks, tuple(logits.shape[-2:])) if targets is None else targets

    def _point_sampled_loss(self, logits: Tensor, iou: Tensor, masks: Tensor, valid: Tensor,
                            low_targets: Optional[Tensor]) -> Tuple[Dict[str, Tensor], Tensor]:
        """The mask loss on sampled points (``mask_loss.resolution: points``): logits ``[B, K, M, h, w]``, masks
        ``[B, K, S, S]`` bool. Returns ``MaskLoss``'s dict and the S/4 targets (cached across prompt forms)."""
        B, K, M, h, w = logits.shape
        S = masks.shape[-1]
        P = int(self.cfg.mask_loss.points)
        flat = logits.float().reshape(B * K * M, h, w)
        coords = uncertain_point_coords(flat, P)  # [B*K*M, P, 2]
        point_logits = point_sample_logits(flat, coords).view(B, K, M, 1, P)
        point_targets = point_sample_masks(masks.reshape(B * K, S, S), coords.view(B * K, M * P, 2))
        if low_targets is None:
            low_targets = block_downsample_masks(masks.bool(), (h, w))
        actual = predicted_mask_iou(logits, low_targets.unsqueeze(2))  # [B, K, M]
        r = self.mask_loss(point_logits, iou, point_targets.view(B, K, M, 1, P), valid, actual_iou=actual)
        return r, low_targets

    def mask_losses(self, embeddings: Tensor, batch: Dict[str, Any], forms: Sequence[str]) -> Dict[str, Tensor]:
        """SAM mask loss for each prompt form of ``forms`` on every prompt of ``batch`` (see
        ``litesam_pl.models.prompt_forms``: a box or a point and a box read the single-mask output, a point the
        three outputs, of which the min-loss one is back-propagated). Terms are logged per form:
        ``mask_{box,point,pointbox}`` and their ``focal_*``, ``dice_*``, ``iou_*`` parts."""
        out: Dict[str, Tensor] = {}
        total = embeddings.new_zeros(())
        valid = batch["valid"]
        targets = None
        for form in forms:
            boxes = batch["boxes"] if "box" in form.split("+") else None
            points = (batch["points"], batch["point_labels"]) if "point" in form.split("+") else None
            logits, iou = self.predict(embeddings, boxes=boxes, points=points, multimask_output=multimask_output_for(form))
            if self.cfg.mask_loss.resolution == "points":
                r, targets = self._point_sampled_loss(logits, iou, batch["masks"], valid, targets)
            else:
                logits, targets = self._loss_pair(logits, batch["masks"], targets)
                r = self.mask_loss(logits, iou, targets, valid)
            weight = self.cfg.prompts.box_weight if boxes is not None else self.cfg.prompts.point_weight
            total = total + weight * r["loss"]
            tag = form.replace("+", "")
            out.update({f"mask_{tag}": r["loss"], f"focal_{tag}": r["focal"], f"dice_{tag}": r["dice"],
                        f"iou_{tag}": r["iou"]})
        out["mask"] = total
        return out

    def ppn_forward(self, embeddings: Tensor) -> Dict[str, Tensor]:
        if not self.has_ppn:
            raise ValueError(f"model {self.model_name!r} has no AutoPPN head (model.kwargs disable it?)")
        return self.model.autoppn(embeddings)

    def ppn_losses(self, ppn_out: Dict[str, Tensor], batch: Dict[str, Any]) -> Dict[str, Tensor]:
        r = self.ppn_loss(ppn_out, batch)
        out = {"ppn": r["loss"], "ppn_point": r["point"], "ppn_box": r["box"]}
        out.update({f"ppn_{k}": v for k, v in r.items() if k.startswith(("point_g", "box_g"))})
        return out

    # ------------------------------------------------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------------------------------------------------
    def train_prompt_forms(self) -> Tuple[str, ...]:
        """The prompt forms (``litesam_pl.models.prompt_forms``) whose masks this stage trains."""
        return ("box", "point")

    def train_mask_losses(self, embeddings: Tensor, batch: Dict[str, Any]) -> Dict[str, Tensor]:
        """The training mask loss on the selected prompts (every prompt in each form of ``train_prompt_forms``)."""
        return self.mask_losses(embeddings, batch, self.train_prompt_forms())

    def compute_losses(self, batch: Dict[str, Any]) -> Dict[str, Tensor]:
        self.check_batch(batch)
        emb = self.encode(batch["image"])
        terms: Dict[str, Tensor] = {}
        loss = emb.new_zeros(())
        if self.train_ppn:
            terms.update(self.ppn_losses(self.ppn_forward(emb), batch))
            loss = loss + self.cfg.ppn_loss.weight * terms["ppn"]
        if self.train_masks:
            b = self.select_prompts(batch)
            terms.update(self.train_mask_losses(emb, b))
            loss = loss + self.cfg.mask_loss.weight * terms["mask"]
        terms["loss"] = loss
        return terms

    def training_step(self, batch: Dict[str, Any], batch_idx: int) -> Tensor:
        terms = self.compute_losses(batch)
        self.last_loss_terms = {k: v.detach() for k, v in terms.items()}
        bs = batch["image"].shape[0]
        for k, v in terms.items():
            name = "train/loss" if k == "loss" else f"train/loss_{k}"
            v = v.detach().float()
            # per step: this rank's value, no cross-rank sync (Lightning would sync each on_step value at once: a
            # barrier and an all-reduce per term and step); per epoch: the mean over all ranks and steps, synced
            # once at the epoch's end. The names are the ones Lightning gives on_step + on_epoch logging.
            self.log(f"{name}_step", v, on_step=True, on_epoch=False, batch_size=bs, prog_bar=k == "loss")
            self.log(f"{name}_epoch", v, on_step=False, on_epoch=True, batch_size=bs, sync_dist=True,
                     prog_bar=k == "loss")
        return terms["loss"]

    # ------------------------------------------------------------------------------------------------------------
    # prediction (validation / test: EvaluationMixin, validation.py)
    # ------------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_step(self, batch: Dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> List[Dict[str, Any]]:
        """SegEvery on the batch's images (``litesam predict`` / ``trainer.predict`` on SA-1B-format shards).

        Runs ``SegEvery`` with its defaults (those of ``litesam segment-everything``): AutoPPN prompts in
        the form ``val_prompt_form`` for stages that train or validate AutoPPN, a 32 x 32 point grid for the
        backbone stage (its AutoPPN head is untrained). Returns one dict per image: ``key``, ``original_size``
        ``(H, W)``, ``records`` (``SamAutomaticMaskGenerator``-style records, masks as COCO RLE at the original
        image size) and ``filters`` (its ``SegEveryResult.stats["filters"]`` entry: prompts, what each filter
        removed, thresholds).

        This step writes nothing; ``litesam_pl.modules.SegEveryWriter`` (a ``BasePredictionWriter``) writes
        ``litesam segment-everything``'s files from these dicts: ``<key>_masks.json`` (+ ``<key>_overlay.png``) per
        image, each rank its own images, then ``results.json`` / ``images.json`` over all ranks. ``litesam predict
        --config R.yaml --ckpt_path X.ckpt --data.predict_shards DIR`` adds one (unless the recipe's callbacks
        have a prediction writer) into ``--out DIR``, else a new ``runs/predict/predict<N>``; ``--overlays false``
        skips the PNGs. From Python, pass ``callbacks=[SegEveryWriter(...)]`` to the Trainer, or use what
        ``trainer.predict`` returns. For folders of photos use ``litesam segment-everything``.
        """
        self.check_batch(batch)
        images = self.batch_photos(batch)
        sizes = [tuple(int(x) for x in batch["original_size"][i]) for i in range(len(images))]
        autoppn = self.has_ppn and self.val_ppn
        kw: Dict[str, Any] = {"prompts": "autoppn", "prompt_type": self.val_prompt_form} if autoppn else {"prompts": "grid"}
        result = SegEvery(self.model, output_mode="coco_rle", **kw).run(images, sizes, collect_timings=False)
        keys = batch.get("key", [None] * len(images))
        return [{"key": k, "original_size": s, "records": r, "filters": f}
                for k, s, r, f in zip(keys, sizes, result.masks, result.stats["filters"])]
