"""The closing report of ``make demo``: where everything the demo made lives, and what to run next.

    python -m benchmarks.demo_report --run runs/demo --segevery runs/demo/segevery --bench runs/demo/bench-ci.json

The demo writes only under its run folder (``runs/demo/``, the Makefile's ``DEMO_RUN``): ``make smoke``'s
``runs/smoke/`` is read (its AutoPPN run, when there is one), never written.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional, Sequence

DEMO_RUN = Path("runs/demo")


def _metrics_lines(run: Path) -> List[str]:
    path = run / "metrics.json"
    if not path.is_file():
        return [f"  (no {path}: did training finish?)"]
    metrics = json.loads(path.read_text())
    keys = [k for k in sorted(metrics) if k.startswith("val/")]
    return [f"  {k:<24} {metrics[k]:.4f}" for k in keys if isinstance(metrics[k], (int, float))]


def _latency_lines(bench: Path) -> List[str]:
    if not bench.is_file():
        return [f"  (no {bench})"]
    data = json.loads(bench.read_text())
    lines = [f"  {'method':<18} {'prompts':>7} {'median ms':>10} {'p90 ms':>9}"]
    for row in data.get("rows", []):
        lines.append(f"  {row['method']:<18} {row['prompts']:>7} {row['median_ms']:>10.0f} {row['p90_ms']:>9.0f}")
    ratio = data.get("speedup_grid_over_autoppn")
    if ratio is not None:
        lines.append(f"  grid search / AutoPPN = {ratio:.2f}x on the same model")
    return lines


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def report(run: Path, segevery: Path, bench: Path) -> str:
    overlays = sorted(segevery.glob("*_overlay.png")) if segevery.is_dir() else []
    wandb_runs = sorted(run.glob("**/wandb/offline-run-*"))
    ckpt = run / "last.ckpt"
    lines = [
        "",
        "=" * 78,
        "litesam-pl demo: done",
        "=" * 78,
        f"trained model      {ckpt}" + ("" if ckpt.is_file() else "  (missing)"),
        "  what it is: a few CPU minutes of training on synthetic shapes (flat-coloured ellipses, boxes and stars).",
        "  It segments shapes like those; on real photographs its masks follow few edges. That is expected.",
        f"validation metrics {run / 'metrics.json'} (held-out synthetic shards)",
        *_metrics_lines(run),
        f"SegEvery overlays  {segevery}/ ({len(overlays)} images: *_overlay.png, masks as RLE in *_masks.json)",
        *[f"  {p.name}" for p in overlays[:8]],
        f"latency table      {bench} and {bench.with_suffix('.md')}",
        *_latency_lines(bench),
        f"CSV log            {run}/csv/",
        "wandb offline run  " + (str(wandb_runs[-1]) if wandb_runs else "(none)")
        + ("\n                   upload later with: wandb sync <that folder>" if wandb_runs else ""),
        *([f"everything above is under {run}/ (a make smoke result in runs/smoke/ is left as it was)"]
          if _inside(segevery, run) and _inside(bench, run) else []),
        "",
        "Use the model from Python (README: 'Python API', 'Weights'):",
        f"  .venv/bin/litesam export --ckpt {ckpt} --out litesam.pt",
        "  then litesam_pl.load_model('litesam.pt'), or litesam segment-everything PHOTO --ckpt litesam.pt --out DIR",
        "",
        "A model that segments photographs:",
        "  make real-smoke   BSDS500 + COCO train photos from ../shared/data (or DATA=), the same three recipes on",
        "                    a CPU (about 30 min; see docs/benchmarks.md for what it reaches), runs/real-smoke/",
        "  SA-1B training    the paper recipes on GPUs (README: 'Training on SA-1B'):",
        "  .venv/bin/python -m data_prep.sa1b --src '/data/sa1b/sa_*.tar' --out /data/sa1b_640/train --max-side 640 "
        "--hash-range 0 0.18",
        "  srun .venv/bin/litesam fit --config recipes/litesam.yaml --data.train_shards /data/sa1b_640/train "
        "--data.val_shards /data/sa1b_640/val --trainer.num_nodes N --trainer.devices G",
        "=" * 78,
    ]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=DEMO_RUN,
                        help=f"training run directory (last.ckpt, metrics.json; default {DEMO_RUN})")
    parser.add_argument("--segevery", type=Path, help="segment-everything output directory (default RUN/segevery)")
    parser.add_argument("--bench", type=Path, help="bench-ci JSON (default RUN/bench-ci.json)")
    args = parser.parse_args(argv)
    print(report(args.run, args.segevery or args.run / "segevery", args.bench or args.run / "bench-ci.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
