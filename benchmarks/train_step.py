"""Training-step cost of the paper recipes: ms per step, samples/s, peak memory and operations per step.

For each stage (``backbone`` = recipes/backbone_1box.yaml, ``autoppn``, ``litesam``) and each batch size, the recipe's
LightningModule is built from its YAML (its loss settings exactly; no ``init_from``), a few real training batches are
read from SA-1B-format shards through the recipe's ``SA1BDataModule`` settings and kept on the device, and the
optimizer step (``compute_losses`` -> backward -> Adam) is timed on them, so the figures are the model's and not the
loader's (``benchmarks.dataloader`` measures that). Per row: median ms per step and per phase (forward incl. the
losses, backward, optimizer), samples/s, peak device memory (CUDA), the MB one forward saves for backward (any device: the
activation memory, which decides the batch that fits) and, from the torch profiler over one step, the
number of ATen operations the step issues (all levels) and, on CUDA, the kernels it launches.

    python -m benchmarks.train_step --shards data/gpu_check/shards/train --device cuda --json results/train_step.json
    python -m benchmarks.train_step --shards data/smoke/shards/train --device cpu --img-size 192 --batch-sizes 2 8

``--compile`` wraps the image encoder and AutoPPN in ``torch.compile`` (both compile with no graph breaks);
``--channels-last`` puts the model and images in channels-last memory format.
"""
from __future__ import annotations

import argparse
import importlib
import os
import platform
import statistics
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Dict, List, Sequence

import torch
import yaml

from benchmarks.toolkit.results import error_text, write_json
from benchmarks.toolkit.timing import Laps, sync

ROOT = Path(__file__).resolve().parents[1]
STAGES = {"backbone": "recipes/backbone_1box.yaml", "autoppn": "recipes/autoppn.yaml", "litesam": "recipes/litesam.yaml"}


def recipe_parts(stage: str) -> tuple[type, Dict[str, Any], Dict[str, Any]]:
    """(LightningModule class, model init_args, data init_args) of a stage's paper recipe."""
    cfg = yaml.safe_load((ROOT / STAGES[stage]).read_text())
    mod_path, cls_name = cfg["model"]["class_path"].rsplit(".", 1)
    cls = getattr(importlib.import_module(mod_path), cls_name)
    return cls, dict(cfg["model"].get("init_args", {})), dict(cfg.get("data", {}))


def build_stage(stage: str, img_size: int, batch_size: int, shards: Sequence[str], max_masks: int | None,
          n_batches: int, device: torch.device, mask_loss_resolution: str | None = None):
    """The stage's module on ``device`` and ``n_batches`` training batches on ``device``."""
    from litesam_pl.cli.config import apply_data_links
    from litesam_pl.data.datamodule import SA1BDataModule
    from litesam_pl.data.transforms import normalize_batch

    cls, margs, dargs = recipe_parts(stage)
    margs.pop("init_from", None)
    if mask_loss_resolution:
        margs["mask_loss"] = {**dict(margs.get("mask_loss") or {}), "resolution": mask_loss_resolution}
    dargs.update(train_shards=list(shards), val_shards=None, batch_size=batch_size, num_workers=0, img_size=img_size,
                 epoch_samples=batch_size * n_batches, shuffle_buffer=0, pin_memory=False)
    if max_masks:
        dargs["max_masks"] = max_masks
    module = cls(**apply_data_links(margs, dargs)).to(device)  # image size, groups, point loss: the data's
    dm = SA1BDataModule(**dargs)
    dm.setup("fit")
    batches = []
    for b in dm.train_dataloader():
        b = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in b.items()}
        batches.append(normalize_batch(b))  # uint8 images normalised on the device (as on_after_batch_transfer)
        if len(batches) == n_batches:
            break
    if not batches:
        raise SystemExit(f"train_step: no training batch could be read from {list(shards)}")
    return module, batches


def time_steps(module, batches: List[dict], steps: int, warmup: int, device: torch.device, amp_dtype) -> Dict[str, Any]:
    """Median ms per step and per phase over ``steps`` optimizer steps after ``warmup`` ones."""
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=1e-5)
    amp = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype is not None else nullcontext
    module.train()
    phases: Dict[str, List[float]] = {"forward_ms": [], "backward_ms": [], "optimizer_ms": [], "step_ms": []}
    for i in range(warmup + steps):
        batch = batches[i % len(batches)]
        laps = Laps(device)
        with amp():
            loss = module.compute_losses(batch)["loss"]
        laps.lap("forward_ms")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        laps.lap("backward_ms")
        opt.step()
        laps.lap("optimizer_ms")
        if not torch.isfinite(loss.detach()):
            raise FloatingPointError(f"non-finite loss at step {i}")
        if i >= warmup:
            for k, v in {**laps.phases, "step_ms": laps.total}.items():
                phases[k].append(1000 * v)
    out = {k: round(statistics.median(v), 2) for k, v in phases.items()}
    out["loss_last"] = round(float(loss.detach()), 4)
    return out


def count_ops(module, batch: dict, device: torch.device, amp_dtype) -> Dict[str, int]:
    """ATen operations (all levels, as the profiler records them) and CUDA kernels of one training step."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    amp = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    with profile(activities=acts) as prof:
        with amp:
            loss = module.compute_losses(batch)["loss"]
        loss.backward()
        sync(device)
    module.zero_grad(set_to_none=True)
    events = prof.events()
    aten = sum(1 for e in events if e.name.startswith("aten::"))
    out = {"aten_ops": aten}
    if device.type == "cuda":
        out["cuda_kernels"] = sum(1 for e in events if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA)
    return out


def saved_tensor_mb(module, batch: dict, device: torch.device, amp_dtype) -> float:
    """MB that one forward keeps for backward (distinct storages of the autograd graph's saved tensors): the
    activation memory of a step, measured the same way on any device (a CPU estimate of what a GPU must hold)."""
    storages: Dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        storages[st.data_ptr()] = st.nbytes()
        return t

    amp = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), amp:
        loss = module.compute_losses(batch)["loss"]
    del loss
    return round(sum(storages.values()) / 2**20, 1)


def run_row(stage: str, batch_size: int, a, device: torch.device) -> Dict[str, Any]:
    amp_dtype = {"bf16": torch.bfloat16, "fp32": None}[a.precision]
    module, batches = build_stage(stage, a.img_size, batch_size, a.shards, a.max_masks, a.batches, device,
                            a.mask_loss_resolution)
    if a.channels_last:
        module = module.to(memory_format=torch.channels_last)
        for b in batches:
            b["image"] = b["image"].contiguous(memory_format=torch.channels_last)
    if a.compile:
        module.model.image_encoder = torch.compile(module.model.image_encoder)
        if getattr(module.model, "autoppn", None) is not None:
            module.model.autoppn = torch.compile(module.model.autoppn)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t = time_steps(module, batches, a.steps, a.warmup, device, amp_dtype)
    row: Dict[str, Any] = {"stage": stage, "batch_size": batch_size, "img_size": a.img_size, "precision": a.precision,
                           "compile": bool(a.compile), "channels_last": bool(a.channels_last),
                           "mask_loss_resolution": a.mask_loss_resolution or "recipe", **t,
                           "samples_per_s": round(1000 * batch_size / t["step_ms"], 2)}
    if device.type == "cuda":
        row["peak_mem_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    row["saved_for_backward_mb"] = saved_tensor_mb(module, batches[0], device, amp_dtype)
    if a.count_ops and not a.compile:
        try:
            row.update(count_ops(module, batches[0], device, amp_dtype))
        except Exception as e:  # noqa: BLE001 - a profiler that cannot start (no CUPTI) must not cost the timings
            row["ops_error"] = error_text(e)
    return row


def main(argv: Sequence[str] | None = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description="Training-step cost of the paper recipes (ms/step, samples/s, memory, ops).")
    p.add_argument("--shards", nargs="+", required=True, help="SA-1B-format training shards (dirs, globs, tars)")
    p.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[2, 8])
    p.add_argument("--img-size", type=int, default=640)
    p.add_argument("--max-masks", type=int, default=None, help="K masks per image (default: the recipe's)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--precision", choices=["bf16", "fp32"], default=None,
                   help="autocast dtype (default: bf16 on CUDA as the recipes, fp32 on CPU)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per row")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compile, cudnn, allocator)")
    p.add_argument("--batches", type=int, default=4, help="distinct batches cycled through")
    p.add_argument("--compile", action="store_true", help="torch.compile the image encoder and AutoPPN")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--mask-loss-resolution", choices=["full", "low", "points"], default=None,
                   help="override the recipe's (points: the point-sampled loss)")
    p.add_argument("--no-count-ops", dest="count_ops", action="store_false", help="skip the profiled step")
    p.add_argument("--threads", type=int, default=None, help="torch threads on CPU")
    p.add_argument("--json", type=Path, help="write {'rows': [...], 'meta': {...}} here")
    a = p.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("train_step: --device cuda but torch sees no CUDA device")
    a.precision = a.precision or ("bf16" if a.device == "cuda" else "fp32")
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    meta = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "cuda": torch.version.cuda, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "shards": a.shards, "steps": a.steps, "warmup": a.warmup}
    rows = []
    print("| stage | batch | ms/step | fwd | bwd | opt | samples/s | peak MB | saved MB | aten ops |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for stage in a.stages:
        for bs in a.batch_sizes:
            torch.manual_seed(0)
            r = run_row(stage, bs, a, device)
            rows.append(r)
            print(f"| {stage} | {bs} | {r['step_ms']:.1f} | {r['forward_ms']:.1f} | {r['backward_ms']:.1f} | "
                  f"{r['optimizer_ms']:.1f} | {r['samples_per_s']:.1f} | {r.get('peak_mem_mb', '-')} | "
                  f"{r['saved_for_backward_mb']} | "
                  f"{r.get('aten_ops', '-')} |", flush=True)
    ratios = {}
    for stage in a.stages:
        by_bs = {r["batch_size"]: r for r in rows if r["stage"] == stage and "aten_ops" in r}
        if len(by_bs) >= 2:
            lo, hi = min(by_bs), max(by_bs)
            ratios[f"{stage}_ops_b{hi}_over_b{lo}"] = round(by_bs[hi]["aten_ops"] / max(1, by_bs[lo]["aten_ops"]), 2)
    result = {"rows": rows, "ops_ratios": ratios, "meta": meta}
    if ratios:
        print("operations per step, largest over smallest batch:", ratios)
    if a.json:
        write_json(a.json, result)
        print(f"saved {a.json}")
    return result


if __name__ == "__main__":
    main()
