"""Training callbacks that record a run: ``MetricsJSON`` (the ``metrics.json`` / ``*.validate.json`` files),
``Throughput`` (``train/samples_per_sec``, ``train/num_skipped``) and ``ImageLogger`` (a picture of the predictions
every N steps). Recipes name them as ``litesam_pl.modules.callbacks.<Name>`` (re-exported there).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_only

from ..files import write_json

__all__ = ["MetricsJSON", "Throughput", "ImageLogger"]


class MetricsJSON(pl.Callback):
    """Write the latest validation (and test) metrics as a flat JSON object: every logged ``val/*`` (``test/*``)
    metric as a float (NaN / inf as ``null``: strict JSON, ``litesam_pl.files.write_json``), plus ``global_step``
    and ``epoch``; written atomically. Rank 0 only; the sanity-check pass is skipped.

    Where (so that ``litesam validate`` never overwrites a training run's ``metrics.json``):

    - ``fit``: ``<dirpath>/metrics.json`` after each validation (the training run's record).
    - ``validate`` / ``test`` of a checkpoint (``trainer.ckpt_path``): beside it,
      ``<ckpt_dir>/<ckpt_stem>.validate.json`` (``.test.json``), with the checkpoint's ``global_step`` / ``epoch``
      and ``ckpt_path`` (in the run dir for a remote or read-only checkpoint).
    - ``validate`` / ``test`` without a checkpoint: ``<dirpath>/validate_random_weights.json``
      (``test_random_weights.json``) and a one-line warning on stderr; when this trainer trained the module (its
      ``global_step`` > 0) or an ``init_from`` warm start was applied, ``<dirpath>/validate_in_memory.json``
      (``test_in_memory.json``) without the warning.

    Args:
        dirpath: the run directory; defaults to ``trainer.default_root_dir``.
    """

    def __init__(self, dirpath: Optional[str] = None) -> None:
        self.dirpath = dirpath
        self._ckpt_meta: Optional[Dict[str, Any]] = None  # global_step / epoch of the checkpoint restored

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._ckpt_meta = None

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: Dict[str, Any]) -> None:
        # called after setup when fit / validate / test restore ``ckpt_path`` (Lightning 2.6 restores callbacks
        # in every stage) for a checkpoint with callback states, i.e. any trainer-saved one
        self._ckpt_meta = {k: checkpoint.get(k) for k in ("global_step", "epoch")}

    def _run_dir(self, trainer: pl.Trainer) -> Path:
        return Path(self.dirpath or trainer.default_root_dir)

    def _eval_target(self, trainer: pl.Trainer, pl_module: pl.LightningModule, kind: str):
        """``(path, extra keys, warning or None)`` for a validate / test run (``kind``: ``validate`` / ``test``)."""
        ckpt = trainer.ckpt_path
        if ckpt:
            ckpt = str(ckpt)
            meta = self._ckpt_meta or {}
            extra = {"ckpt_path": ckpt, "weights": "checkpoint",
                     "global_step": meta.get("global_step"), "epoch": meta.get("epoch")}
            name = f"{Path(ckpt.split('://', 1)[-1]).stem}.{kind}.json"
            beside = Path(ckpt).parent if "://" not in ckpt else None
            if beside is not None and os.access(beside, os.W_OK):
                return beside / name, extra, None
            return self._run_dir(trainer) / name, extra, None  # a remote or read-only checkpoint: the run dir
        trained = int(trainer.global_step) > 0 or getattr(pl_module, "init_report", None) is not None
        if trained:
            return self._run_dir(trainer) / f"{kind}_in_memory.json", {"ckpt_path": None, "weights": "in_memory"}, None
        path = self._run_dir(trainer) / f"{kind}_random_weights.json"
        warning = (f"WARNING: {kind} without a checkpoint: these metrics score RANDOM (untrained) weights; written to "
                   f"{path}, not metrics.json (pass --ckpt_path PATH / ckpt_path=...)")
        return path, {"ckpt_path": None, "weights": "random"}, warning

    def _write(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prefix: str, kind: str) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        out: Dict[str, Any] = {}
        for k, v in trainer.callback_metrics.items():
            if k.startswith(prefix + "/"):
                out[k] = float(v)
        out["global_step"] = int(trainer.global_step)
        out["epoch"] = int(trainer.current_epoch)
        warning = None
        if trainer.state.fn == TrainerFn.FITTING:
            path = self._run_dir(trainer) / ("metrics.json" if prefix == "val" else "test_metrics.json")
        else:
            path, extra, warning = self._eval_target(trainer, pl_module, kind)
            out.update(extra)  # a checkpoint's step (null when it has none), not the evaluating trainer's 0
        write_json(path, out, indent=2, sort_keys=True, newline=False)  # atomic; a NaN metric as null
        if warning:
            sys.stderr.write(warning + "\n")
            sys.stderr.flush()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer, pl_module, "val", "validate")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer, pl_module, "test", "test")


class Throughput(pl.Callback):
    """Log ``train/samples_per_sec`` (global, all ranks) and ``train/num_skipped`` (bad samples skipped by the
    data workers so far, from the batch's ``num_skipped``).

    Args:
        window: average the rate over this many steps.
    """

    def __init__(self, window: int = 10) -> None:
        self.window = max(1, int(window))
        self._t0: Optional[float] = None
        self._samples = 0
        self._steps = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0, self._samples, self._steps = None, 0, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        bs = int(batch["image"].shape[0]) if isinstance(batch, Mapping) else 0
        if isinstance(batch, Mapping) and "num_skipped" in batch:
            skipped = torch.as_tensor(batch["num_skipped"]).max().float().to(pl_module.device)
            pl_module.log("train/num_skipped", skipped, on_step=True, on_epoch=False, reduce_fx="max", batch_size=bs)
        if self._t0 is None:  # the first step includes start-up: start the clock after it
            self._t0 = now
            return
        self._samples += bs * trainer.world_size
        self._steps += 1
        if self._steps >= self.window:
            rate = self._samples / max(now - self._t0, 1e-9)
            pl_module.log("train/samples_per_sec", float(rate), on_step=True, on_epoch=False, batch_size=bs, rank_zero_only=True)
            self._t0, self._samples, self._steps = now, 0, 0


def _render(image: np.ndarray, masks: np.ndarray, boxes: np.ndarray, heat: Optional[np.ndarray], points: Optional[np.ndarray]) -> np.ndarray:
    """A figure (RGB uint8) of the image with predicted masks + prompt boxes and, if given, the AutoPPN heatmap
    (max over groups) with the proposed points."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cols = 2 if heat is not None else 1
    fig, axes = plt.subplots(1, cols, figsize=(4.5 * cols, 4.5), dpi=80)
    axes = np.atleast_1d(axes)
    ax = axes[0]
    ax.imshow(image)
    rng = np.random.default_rng(0)
    overlay = np.zeros((*image.shape[:2], 4), dtype=np.float32)
    for m, b in zip(masks, boxes):
        c = rng.uniform(0.2, 1.0, 3)
        overlay[m] = [*c, 0.5]
        ax.add_patch(plt.Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, color=c, lw=1))
    ax.imshow(overlay)
    ax.set_title("box prompts -> masks")
    ax.axis("off")
    if heat is not None:
        ax = axes[1]
        ax.imshow(image)
        h, w = image.shape[:2]
        ax.imshow(heat, alpha=0.6, cmap="magma", extent=(0, w, h, 0), vmin=0, vmax=1)
        if points is not None and len(points):
            ax.scatter(points[:, 0], points[:, 1], s=8, c="cyan", marker="x")
        ax.set_title(f"AutoPPN heatmap, top {0 if points is None else len(points)} points")
        ax.axis("off")
    fig.tight_layout()
    fig.canvas.draw()
    arr = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return arr


class ImageLogger(pl.Callback):
    """Every ``every_n_steps`` training steps, draw the first image of the batch with its box-prompted masks and
    the AutoPPN heatmap + top proposals; save a PNG under ``<default_root_dir>/images/`` and send it to every
    logger that takes images (W&B ``log_image``, TensorBoard ``add_image``). Rank 0 only.

    Args:
        every_n_steps: period in optimizer steps (0 disables).
        max_prompts: masks drawn.
        top_n: AutoPPN proposals drawn.
    """

    def __init__(self, every_n_steps: int = 500, max_prompts: int = 8, top_n: int = 50) -> None:
        self.every_n_steps = int(every_n_steps)
        self.max_prompts = int(max_prompts)
        self.top_n = int(top_n)

    @rank_zero_only
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps <= 0 or trainer.global_step % self.every_n_steps != 0:
            return
        try:
            arr = self.render(pl_module, batch)
        except Exception as e:  # a picture must never stop a run
            pl_module.print(f"ImageLogger: could not render a picture at step {trainer.global_step}: {e}")
            return
        self.emit(trainer, arr, trainer.global_step)

    @torch.no_grad()
    def render(self, pl_module: pl.LightningModule, batch: Mapping[str, Any]) -> np.ndarray:
        model = pl_module.model
        was_training = model.training
        model.eval()
        try:
            img = batch["image"][:1]
            h, w = (int(x) for x in batch["input_size"][0])
            emb = model.image_encoder(img)
            k = min(self.max_prompts, int(batch["valid"][0].sum()))
            boxes = batch["boxes"][:1, :k]
            masks = np.zeros((0, h, w), dtype=bool)
            if k > 0:
                logits, _ = model.predict_masks(emb, boxes=boxes, multimask_output=False)
                S = img.shape[-1]
                up = torch.nn.functional.interpolate(logits[0, :, :1].float(), size=(S, S), mode="bilinear", align_corners=False)
                masks = (up[:, 0, :h, :w] > 0).cpu().numpy()
            heat = points = None
            if getattr(model, "autoppn", None) is not None:
                out = model.autoppn(emb)
                S = img.shape[-1]
                hm = out["heatmap_logits"][0].float().sigmoid().amax(0)[None, None]
                hm = torch.nn.functional.interpolate(hm, size=(S, S), mode="nearest")[0, 0, :h, :w]
                heat = hm.cpu().numpy()
                dec = model.autoppn.decode(
                    {kk: v.float() for kk, v in out.items()}, img_size=S, top_n=self.top_n,
                    input_sizes=batch["input_size"][:1],  # no proposal in the zero padding
                )
                points = dec["points"][0][dec["valid"][0]].cpu().numpy()
            mean = model.pixel_mean.view(3, 1, 1)
            std = model.pixel_std.view(3, 1, 1)
            rgb = (img[0].float() * std + mean).clamp(0, 255)[:, :h, :w].permute(1, 2, 0).byte().cpu().numpy()
            return _render(rgb, masks, boxes[0].cpu().numpy(), heat, points)
        finally:
            model.train(was_training)

    def emit(self, trainer: pl.Trainer, arr: np.ndarray, step: int) -> None:
        d = Path(trainer.default_root_dir) / "images"
        d.mkdir(parents=True, exist_ok=True)
        try:
            from PIL import Image

            Image.fromarray(arr).save(d / f"step_{step:07d}.png")
        except Exception:
            pass
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):  # WandbLogger
                logger.log_image(key="train/visual", images=[arr], step=step)
            elif hasattr(getattr(logger, "experiment", None), "add_image"):  # TensorBoard
                logger.experiment.add_image("train/visual", arr, step, dataformats="HWC")
