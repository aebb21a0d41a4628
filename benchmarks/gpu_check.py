"""The one-shot GPU check: what a person with one GPU and ten minutes runs after ``make install``.

    make gpu-check OUT=results/gpu_check                       (CUDA when torch sees a GPU, else the CPU mode)
    python -m benchmarks.gpu_check --out results/gpu_check --device cuda [--budget-s 540]
    python -m benchmarks.gpu_check --out /tmp/gc --device cpu   (the CPU mode: tiny sizes, a few minutes; CI runs it)

Steps, in order (each a subprocess in its own process group with a hard time limit, killed with SIGKILL when it
runs over, since Lightning ignores SIGTERM; a failing or timed-out step is recorded and the check goes on):

1. ``env``: driver and card (``nvidia-smi``), torch / CUDA versions and the wheel's GPU architectures, bf16 support,
   ``/dev/shm`` size, CPU count, OpenCV threads in the main process and inside a DataLoader worker.
2. ``data``: SA-1B-format synthetic tars (``data_prep.synthetic``) prepared to shards (``data_prep.sa1b``).
3. ``segevery_bf16`` / ``segevery_fp32``: ``benchmarks.segevery``: AutoPPN vs the 32x32 grid and SAM's generator
   (``SamAutomaticMaskGenerator``) on Lite-SAM, per phase, at 640 and 1024.
4. ``train_step``: ``benchmarks.train_step``: the three paper recipes at batch 2 and 8 (ms/step, phases, samples/s,
   peak memory, operations per step); ``train_step_compile``: the joint stage with ``torch.compile``.
5. ``fit_<stage>``: ``litesam fit`` with each paper recipe (a generated overlay: this device, no logger, no val) for
   a few dozen steps: samples/s and peak memory through the real Trainer; ``fit_litesam_find_unused``: the joint
   recipe with ``ddp_find_unused_parameters_true`` beside plain ``ddp``.
6. ``loader_sa1b``: ``benchmarks.dataloader`` on SA-1B-size synthetic photos (1500x2250) at 640.

Results: ``OUT/gpu_check.json`` (every step: status, seconds, its parsed JSON) and ``OUT/gpu_check.log`` (every
step's command and output). Work files (data, runs) go to ``--work`` (default ``/tmp/litesam_gpu_check``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import lightning.pytorch as pl
import torch

from benchmarks.toolkit.results import error_text, write_json

ROOT = Path(__file__).resolve().parents[1]

# sizes per mode: (the CUDA check, the CPU mode that CI runs)
SIZES = {
    "cuda": dict(images=64, hw=(480, 640), side=640, res=[640, 1024], seg_images=8, batches=[2, 8], steps=10,
                 warmup=3, fit_steps=30, fit_batch=8, workers=8, loader_images=12, loader_hw=(1500, 2250),
                 loader_workers=[0, 8], precision="bf16-mixed", accel="gpu"),
    "cpu": dict(images=8, hw=(96, 128), side=128, res=[128], seg_images=1, batches=[2], steps=2, warmup=1,
                fit_steps=3, fit_batch=2, workers=0, loader_images=4, loader_hw=(192, 256), loader_workers=[0],
                precision="32-true", accel="cpu"),
}
# per-step time limits in seconds (a step that runs over is killed and recorded as "timeout")
LIMITS = {"env": 60, "data": 90, "segevery_bf16": 100, "segevery_fp32": 100, "train_step": 120,
          "train_step_compile": 240, "fit": 75, "loader_sa1b": 120}


class FitProbe(pl.Callback):
    """Times training steps after ``warmup`` ones and records peak device memory; writes JSON at the end of fit.

    Used by the check's generated recipe overlays (``class_path: benchmarks.gpu_check.FitProbe``)."""

    def __init__(self, out: str, warmup: int = 5) -> None:
        self.out, self.warmup = out, int(warmup)
        self._times: List[float] = []
        self._t: Optional[float] = None
        self._wait: List[float] = []
        self._end: Optional[float] = None
        self._bs = 0

    def _sync(self, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._sync(pl_module)
        now = time.perf_counter()
        if self._end is not None and trainer.global_step > self.warmup:
            self._wait.append(now - self._end)  # time between steps: data loading not hidden by the workers
        self._t = now
        self._bs = int(batch["image"].shape[0])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._sync(pl_module)
        self._end = time.perf_counter()
        if trainer.global_step > self.warmup and self._t is not None:
            self._times.append(self._end - self._t)

    def on_train_end(self, trainer, pl_module) -> None:
        import statistics

        res: Dict[str, Any] = {"steps_timed": len(self._times), "batch_size": self._bs,
                               "world_size": trainer.world_size, "strategy": type(trainer.strategy).__name__}
        if self._times:
            step = statistics.median(self._times)
            wait = statistics.median(self._wait) if self._wait else 0.0
            res.update(step_ms=round(1000 * step, 2), between_steps_ms=round(1000 * wait, 2),
                       samples_per_s=round(self._bs * trainer.world_size / (step + wait), 2))
        if pl_module.device.type == "cuda":
            res["peak_mem_mb"] = round(torch.cuda.max_memory_allocated(pl_module.device) / 2**20, 1)
        Path(self.out).parent.mkdir(parents=True, exist_ok=True)
        write_json(self.out, res)


def _loader_worker_threads(_: int) -> int:
    import cv2

    return cv2.getNumThreads()


def env_report() -> Dict[str, Any]:
    """The environment as the check sees it (no subprocess of ours: nvidia-smi only)."""
    import cv2
    from torch.utils.data import DataLoader

    from litesam_pl.data.datamodule import single_thread_opencv

    rep: Dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(),
                           "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
                           "cuda_available": torch.cuda.is_available(), "lightning": pl.__version__}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        rep["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        rep["nvidia_smi"] = f"unavailable: {e}"
    if torch.cuda.is_available():
        rep.update(gpu=torch.cuda.get_device_name(0), capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                   arch_list=torch.cuda.get_arch_list(), bf16_supported=torch.cuda.is_bf16_supported(),
                   gpu_memory_gb=round(torch.cuda.get_device_properties(0).total_memory / 1e9, 1))
        a = torch.randn(256, 256, device="cuda", dtype=torch.bfloat16)
        rep["bf16_matmul_ok"] = bool(torch.isfinite((a @ a).float()).all())
    try:
        du = shutil.disk_usage("/dev/shm")
        rep["dev_shm_gb"] = {"total": round(du.total / 1e9, 2), "free": round(du.free / 1e9, 2)}
    except OSError as e:
        rep["dev_shm_gb"] = f"unavailable: {e}"
    rep["opencv"] = cv2.__version__
    rep["opencv_threads_main_before"] = cv2.getNumThreads()
    single_thread_opencv()  # what SA1BDataModule does before its workers start
    rep["opencv_threads_in_worker"] = [int(x) for x in DataLoader([0], batch_size=None, num_workers=1,
                                                                  collate_fn=_loader_worker_threads)]
    return rep


def _overlay(stage_recipe: str, mode: str, z: Dict[str, Any], work: Path, name: str, strategy: str) -> Path:
    """A recipe overlay for a short timed fit on this device (no logger, no validation, no checkpoints)."""
    import yaml

    run = work / "fit" / name
    steps = z["fit_steps"]
    ov = {
        "trainer": {"accelerator": z["accel"], "num_nodes": 1, "devices": 1, "strategy": strategy,
                    "precision": z["precision"], "max_steps": steps, "max_epochs": 1, "val_check_interval": None,
                    "check_val_every_n_epoch": None, "limit_val_batches": 0, "num_sanity_val_steps": 0,
                    "enable_checkpointing": False, "enable_progress_bar": False, "logger": False,
                    "default_root_dir": str(run),
                    "callbacks": [{"class_path": "benchmarks.gpu_check.FitProbe",
                                   "init_args": {"out": str(run / "probe.json"), "warmup": min(5, steps - 1)}}]},
        "model": {"init_args": {"init_from": None}},  # the model's img_size follows data.img_size (a CLI link)
        "data": {"train_shards": str(work / "shards"), "val_shards": None, "img_size": z["side"],
                 "batch_size": z["fit_batch"], "num_workers": z["workers"], "shuffle_buffer": 16,
                 "epoch_samples": z["fit_batch"] * (steps + 1)},
    }
    path = work / f"overlay_{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(ov, sort_keys=False))
    return path


def plan(mode: str, work: Path) -> List[Dict[str, Any]]:
    """The check's steps: name, command, time limit and the JSON each leaves."""
    z = SIZES[mode]
    py = [sys.executable]
    dev = "cuda" if mode == "cuda" else "cpu"
    res = [str(r) for r in z["res"]]
    steps: List[Dict[str, Any]] = [{"name": "env", "cmd": None, "limit": LIMITS["env"]}]
    raw, shards = work / "raw", work / "shards"
    steps.append({"name": "data", "limit": LIMITS["data"], "cmd": [
        py + ["-m", "data_prep.synthetic", "--out", str(raw), "--num-images", str(z["images"]), "--images-per-tar",
              "16", "--size", *map(str, z["hw"]), "--preset", "sa1b", "--seed", "0"],
        py + ["-m", "data_prep.sa1b", "--src", str(raw), "--out", str(shards), "--max-side", str(z["side"]),
              "--fraction", "1.0", "--shard-size", "16", "--workers", str(max(1, min(8, (os.cpu_count() or 2) - 1))),
              "--no-progress"]]})
    methods = ["litesam_autoppn", "litesam_grid32", "litesam_amg32"]
    for dt in ("bf16", "fp32") if mode == "cuda" else ("fp32",):  # autocast dtype is a CUDA setting
        name = f"segevery_{dt}" if mode == "cuda" else "segevery"
        steps.append({"name": name, "limit": LIMITS[f"segevery_{dt}"], "json": work / f"{name}.json",
                      "cmd": [py + ["-m", "benchmarks.segevery", "--device", dev, "--resolution", *res, "--methods",
                                    *methods, "--images", str(z["seg_images"]), "--dtype", dt, "--no-check-decoder",
                                    "--json", str(work / f"{name}.json")]]})
    ts = py + ["-m", "benchmarks.train_step", "--shards", str(shards), "--device", dev, "--img-size", str(z["side"]),
               "--steps", str(z["steps"]), "--warmup", str(z["warmup"])]
    steps.append({"name": "train_step", "limit": LIMITS["train_step"], "json": work / "train_step.json",
                  "cmd": [ts + ["--batch-sizes", *map(str, z["batches"]), "--json", str(work / "train_step.json")]]})
    if mode == "cuda":
        steps.append({"name": "train_step_compile", "limit": LIMITS["train_step_compile"],
                      "json": work / "train_step_compile.json",
                      "cmd": [ts + ["--stages", "litesam", "--batch-sizes", str(max(z["batches"])), "--compile",
                                    "--no-count-ops", "--json", str(work / "train_step_compile.json")]]})
    import yaml

    def strat(recipe: str) -> str:  # the recipe's own DDP flavour on one GPU (plain ``ddp`` fails where a stage
        # leaves parameters unused: the backbone stage); the CPU mode runs without DDP
        return yaml.safe_load((ROOT / recipe).read_text())["trainer"]["strategy"] if mode == "cuda" else "auto"

    fits = [(n, r, strat(r)) for n, r in (("backbone", "recipes/backbone_1box.yaml"), ("autoppn", "recipes/autoppn.yaml"),
                                          ("litesam", "recipes/litesam.yaml"))]
    if mode == "cuda":
        fits.append(("litesam_find_unused", "recipes/litesam.yaml", "ddp_find_unused_parameters_true"))
    for name, recipe, strategy in fits:
        ov = _overlay(recipe, mode, z, work, name, strategy)
        steps.append({"name": f"fit_{name}", "limit": LIMITS["fit"], "json": work / "fit" / name / "probe.json",
                      "cmd": [py + ["-m", "litesam_pl.cli", "fit", "--config", recipe, "--config", str(ov)]]})
    steps.append({"name": "loader_sa1b", "limit": LIMITS["loader_sa1b"], "json": work / "loader_sa1b.json",
                  "cmd": [py + ["-m", "benchmarks.dataloader", "--synthetic", str(work / "sa1b_size"), "--num-images",
                                str(z["loader_images"]), "--image-hw", *map(str, z["loader_hw"]), "--img-size",
                                str(z["side"]), "--workers", *map(str, z["loader_workers"]), "--batches", "6",
                                "--repeats", "1", "--json", str(work / "loader_sa1b.json")]]})
    # the most wanted figures first, so that a short budget still gets them
    order = ["env", "data", "segevery", "segevery_bf16", "train_step", "fit_backbone", "fit_autoppn", "fit_litesam",
             "fit_litesam_find_unused", "loader_sa1b", "segevery_fp32", "train_step_compile"]
    return sorted(steps, key=lambda s: order.index(s["name"]))


def _run(cmd: List[str], limit: float, log) -> tuple[str, int]:
    """Run one command in its own process group; SIGKILL the group after ``limit`` s. Returns (status, rc)."""
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    env = dict(os.environ, PYTHONUNBUFFERED="1", WANDB_MODE=os.environ.get("WANDB_MODE", "disabled"))
    env["PYTHONPATH"] = os.pathsep.join(x for x in (str(ROOT), env.get("PYTHONPATH", "")) if x)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        rc = proc.wait(timeout=max(1.0, limit))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return "timeout", -9
    return ("ok" if rc == 0 else "failed"), rc


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="One-shot GPU check (environment, SegEvery latency, training steps, "
                                            "loader), JSON under --out.")
    p.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and gpu_check.log")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto",
                   help="cuda: the full check; cpu: tiny sizes (CI); auto: cuda when torch sees a GPU")
    p.add_argument("--work", type=Path, default=Path("/tmp/litesam_gpu_check"), help="data and run files")
    p.add_argument("--budget-s", type=float, default=540.0, help="total time; steps left when it runs out are skipped")
    p.add_argument("--only", nargs="+", default=None, help="run only these steps (data is kept if present)")
    p.add_argument("--skip", nargs="+", default=[], help="leave these steps out")
    return p.parse_args(argv)


def _run_step(step: Dict[str, Any], limit: float, t0: float, log) -> Dict[str, Any]:
    """Run one ``plan`` step started at ``t0`` within ``limit`` seconds (output to ``log``); its record, less
    ``seconds``."""
    rec: Dict[str, Any] = {}
    if step["cmd"] is None:
        try:
            rec = {"status": "ok", "result": env_report()}
        except Exception as e:  # noqa: BLE001 - recorded, the check goes on
            rec = {"status": "failed", "error": error_text(e)}
    else:
        status, rc = "ok", 0
        for cmd in step["cmd"]:
            status, rc = _run(cmd, limit - (time.perf_counter() - t0), log)
            if status != "ok":
                break
        rec = {"status": status, "rc": rc}
        js = step.get("json")
        if js is not None and Path(js).exists():
            try:
                rec["result"] = json.loads(Path(js).read_text())
            except ValueError as e:
                rec["result_error"] = str(e)
        elif status == "ok" and js is not None:
            rec["status"], rec["error"] = "failed", f"no result file {js}"
    return rec


def main(argv: Sequence[str] | None = None) -> Dict[str, Any]:
    a = _parse_args(argv)
    mode = a.device if a.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if mode == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: --device cuda but torch sees no CUDA device (use --device cpu for the CPU mode)")
    a.out.mkdir(parents=True, exist_ok=True)
    a.work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    report: Dict[str, Any] = {"mode": mode, "sizes": SIZES[mode], "steps": {},
                              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    out_json = a.out / "gpu_check.json"

    def save() -> None:  # after every step: a killed check still leaves what it measured
        report["total_s"] = round(time.perf_counter() - t_start, 1)
        write_json(out_json, report)

    with open(a.out / "gpu_check.log", "w") as log:
        for step in plan(mode, a.work):
            name = step["name"]
            if (a.only and name not in a.only and not (name == "data" and not (a.work / "shards").exists())) \
                    or name in a.skip:
                continue
            left = a.budget_s - (time.perf_counter() - t_start)
            if left < 10:
                report["steps"][name] = {"status": "skipped", "reason": "budget spent"}
                print(f"[gpu_check] {name}: skipped (budget spent)", flush=True)
                save()
                continue
            limit = min(step["limit"], left)
            t0 = time.perf_counter()
            log.write(f"\n===== {name} (limit {limit:.0f} s)\n")
            rec = _run_step(step, limit, t0, log)
            rec["seconds"] = round(time.perf_counter() - t0, 1)
            report["steps"][name] = rec
            print(f"[gpu_check] {name}: {rec['status']} in {rec['seconds']} s", flush=True)
            save()
    bad = [n for n, r in report["steps"].items() if r["status"] != "ok"]
    report["failed_steps"] = bad
    save()
    print(f"[gpu_check] {len(report['steps']) - len(bad)}/{len(report['steps'])} steps ok"
          + (f"; not ok: {', '.join(bad)}" if bad else "") + f"; results saved to {out_json}")
    return report


if __name__ == "__main__":
    main()
