"""Table 2 (AutoPPN ablations) at smoke scale: train the eight combinations, print paper vs ours.

    python -m benchmarks.table2 [--steps N] [--only COMBO ...] [--force] [--json results/table2.json]
    make table2-smoke            (after `make smoke`: the runs start from runs/smoke/backbone/last.ckpt)

Each combination ``stem-{conv,mspm}_gt-{gaussian,distance}_groups-{1,3}`` is the AutoPPN paper recipe, the
combination's overlay and the AutoPPN smoke-scale overlay, plus a small per-run overlay written into the run
directory (``runs/table2/<combo>/run.yaml``)::

    litesam fit --config recipes/autoppn.yaml --config recipes/ablations/table2/<combo>.yaml \\
                --config recipes/smoke/autoppn.yaml --config runs/table2/<combo>/run.yaml

The per-run overlay moves the run directory (default_root_dir, loggers, checkpoints) from ``runs/smoke/autoppn`` to
``runs/table2/<combo>``. The switches are one setting each: ``model.kwargs.ppn_stem``, ``data.target_mode`` (the
point loss follows) and ``data.num_groups`` (the model's groups follow); were the scale overlay to set
``model.kwargs`` too, the overlay would repeat the merged dict (jsonargparse replaces a dict value as a whole).
``tests/test_recipes.py`` checks that the result is the combination with only scale settings changed.

A combination whose ``metrics.json`` exists is not trained again (``--force`` retrains). The metric is the
``MetricsJSON`` callback's ``val/ar_top1000`` (mask AR of SegEvery), or ``val/ar100`` where the former is absent.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml

from benchmarks.toolkit.paper import TABLE2_MASK_AR1000 as PAPER_AR  # in the paper's row order
from benchmarks.toolkit.results import write_json

REPO = Path(__file__).resolve().parents[1]
BASE = "recipes/autoppn.yaml"
SCALE = "recipes/smoke/autoppn.yaml"
COMBO_DIR = "recipes/ablations/table2"
SMOKE_RUN = "runs/smoke/autoppn"  # the run directory the smoke overlay writes to (moved per combination)
METRICS = ("val/ar_top1000", "val/ar100")  # first present wins
BOX_METRIC = "val/box_ar_top1000"  # AutoPPN's boxes alone, printed beside the mask AR

# the three improvements of Table 2 and the value of each switch without / with it
FACTORS = (
    ("stem", "stem conv->MSPM", ("conv", "mspm")),
    ("gt", "new GT & loss", ("gaussian", "distance")),
    ("groups", "object grouping", (1, 3)),
)

COMBOS = tuple(PAPER_AR)


def combo_name(combo: Sequence[Any]) -> str:
    stem, gt, groups = combo
    return f"stem-{stem}_gt-{gt}_groups-{groups}"


def parse_combo(name: str) -> tuple:
    for combo in COMBOS:
        if combo_name(combo) == name:
            return combo
    raise ValueError(f"unknown Table 2 combination {name!r}; choose from {', '.join(combo_name(c) for c in COMBOS)}")


def _load(path: Path) -> Dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def run_overlay(combo: Sequence[Any], run_dir: str, repo: Path = REPO) -> Dict[str, Any]:
    """The per-run overlay: the smoke overlay's run directory moved to ``run_dir`` (and the merged ``model.kwargs``
    when the smoke overlay sets any)."""
    scale = _load(repo / SCALE)
    ablation = _load(repo / COMBO_DIR / f"{combo_name(combo)}.yaml")
    trainer = {k: copy.deepcopy(scale["trainer"][k]) for k in ("default_root_dir", "logger", "callbacks")
               if k in scale.get("trainer", {})}
    text = yaml.safe_dump(trainer, sort_keys=False).replace(SMOKE_RUN, run_dir)
    trainer = yaml.safe_load(text)
    for logger in trainer.get("logger") or []:
        if logger.get("class_path", "").endswith("WandbLogger"):
            logger.setdefault("init_args", {})["name"] = f"table2-{combo_name(combo)}"
    out: Dict[str, Any] = {"trainer": trainer}
    spec = lambda cfg: ((cfg.get("model") or {}).get("init_args") or {}).get("model") or {}  # noqa: E731
    if "kwargs" in spec(scale):
        kwargs = {**(spec(ablation).get("kwargs") or {}), **(spec(scale)["kwargs"] or {})}
        out["model"] = {"init_args": {"model": {"kwargs": kwargs}}}
    return out


def fit_args(combo: Sequence[Any], run_dir: str, steps: Optional[int] = None, repo: Path = REPO,
             extra: Sequence[str] = ()) -> List[str]:
    """``litesam`` arguments (after the program name) that train ``combo`` at smoke scale into ``run_dir``."""
    args = ["fit", "--config", BASE, "--config", f"{COMBO_DIR}/{combo_name(combo)}.yaml", "--config", SCALE,
            "--config", f"{run_dir}/run.yaml"]
    if steps is not None:  # a quick run: one epoch of exactly `steps` batches, validated at its end
        batch = int(_load(repo / SCALE)["data"]["batch_size"])
        args += ["--trainer.max_epochs", "1", "--trainer.max_steps", str(steps), "--trainer.val_check_interval", "null",
                 "--trainer.check_val_every_n_epoch", "1", "--data.epoch_samples", str(steps * batch)]
    return args + list(extra)


def read_metric(run_dir: Path) -> Dict[str, Any]:
    """``{"value": AR in %, "metric": key, "global_step": n}`` from ``run_dir/metrics.json`` (value None if absent)."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return {"value": None, "metric": None, "global_step": None, "box": None}
    data = json.loads(path.read_text())
    box = data.get(BOX_METRIC)
    box = 100.0 * float(box) if isinstance(box, (int, float)) and math.isfinite(box) else None
    for key in METRICS:
        v = data.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v):
            return {"value": 100.0 * float(v), "metric": key, "global_step": data.get("global_step"), "box": box}
    return {"value": None, "metric": None, "global_step": data.get("global_step"), "box": box}


def effects(rows: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """For each improvement: the mean AR change (paper, ours) over the pairs of combinations differing only in it."""
    by_combo = {tuple(r["combo"]): r for r in rows}
    out = {}
    for i, (key, label, (off, on)) in enumerate(FACTORS):
        paper, ours = [], []
        for combo in COMBOS:
            if combo[i] != off:
                continue
            with_it = tuple(on if j == i else v for j, v in enumerate(combo))
            paper.append(PAPER_AR[with_it] - PAPER_AR[combo])
            a, b = by_combo.get(combo, {}).get("ours"), by_combo.get(with_it, {}).get("ours")
            if a is not None and b is not None:
                ours.append(b - a)
        p = sum(paper) / len(paper)
        o = sum(ours) / len(ours) if ours else None
        out[key] = {
            "label": label, "paper_mean_delta": p, "ours_mean_delta": o, "pairs": len(ours),
            "ours_raised": None if o is None else o > 0,
            "same_direction_as_paper": None if o is None else (o > 0) == (p > 0),
        }
    return out


def format_ablation_table(rows: List[Dict[str, Any]], eff: Dict[str, Dict[str, Any]]) -> str:
    metrics = sorted({r["metric"] for r in rows if r["metric"]})
    head = ("stem conv->MSPM", "new GT & loss", "object grouping", "paper AR@1000 %", "ours %", "ours box AR %", "run")
    lines = [f"Table 2 (AutoPPN ablations): paper Mask AR@1000 on COCO vs ours at smoke scale "
             f"({', '.join(metrics) or 'no metrics.json yet'})"]
    widths = [len(h) for h in head[:6]]
    lines.append(" | ".join(h.center(w) for h, w in zip(head, widths)) + " | " + head[6])
    lines.append("-+-".join("-" * w for w in widths) + "-+-" + "-" * 3)
    for r in rows:
        marks = ["x" if r["combo"][i] == on else "-" for i, (_, _, (_, on)) in enumerate(FACTORS)]
        ours = "n/a" if r["ours"] is None else f"{r['ours']:.1f}"
        box = "n/a" if r.get("box") is None else f"{r['box']:.1f}"
        cells = [*marks, f"{r['paper']:.1f}", ours, box]
        lines.append(" | ".join(c.center(w) for c, w in zip(cells, widths)) + " | " + r["run_dir"])
    lines.append("")
    lines.append("Does adding each improvement raise AR? (mean change over the combinations that differ only in it)")
    for e in eff.values():
        if e["ours_mean_delta"] is None:
            verdict, ours = "not measured", "n/a"
        else:
            ours = f"{e['ours_mean_delta']:+.1f}"
            verdict = ("raised" if e["ours_raised"] else "did not raise") + (
                ", as in the paper" if e["same_direction_as_paper"] else ", unlike the paper")
        lines.append(f"  {e['label']:<16} paper {e['paper_mean_delta']:+.1f}, ours {ours} "
                     f"({e['pairs']}/4 pairs): {verdict}")
    return "\n".join(lines)


def collect_runs(run_root: Path, combos: Sequence[tuple] = COMBOS, repo: Path = REPO) -> List[Dict[str, Any]]:
    rows = []
    for combo in combos:
        run_dir = run_root / combo_name(combo)
        m = read_metric(run_dir if run_dir.is_absolute() else repo / run_dir)
        rows.append({"combo": list(combo), "name": combo_name(combo), "paper": PAPER_AR[combo], "ours": m["value"],
                     "box": m["box"], "metric": m["metric"], "global_step": m["global_step"], "run_dir": run_dir.as_posix()})
    return rows


def _train(combo: tuple, run_dir: Path, args: argparse.Namespace) -> bool:
    abs_dir = run_dir if run_dir.is_absolute() else REPO / run_dir
    abs_dir.mkdir(parents=True, exist_ok=True)
    (abs_dir / "run.yaml").write_text(
        f"# written by benchmarks/table2.py: the run directory of {combo_name(combo)} at smoke scale\n"
        + yaml.safe_dump(run_overlay(combo, run_dir.as_posix()), sort_keys=False))
    cmd = [sys.executable, "-m", "litesam_pl.cli",
           *fit_args(combo, run_dir.as_posix(), steps=args.steps, extra=args.fit_args)]
    print(f"== {combo_name(combo)}: litesam {' '.join(cmd[3:])}", flush=True)
    if args.dry_run:
        return True
    env = dict(os.environ)
    env.setdefault("WANDB_MODE", "offline")
    t0 = time.time()
    with open(abs_dir / "fit.log", "w") as log:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=None if args.verbose else log,
                              stderr=subprocess.STDOUT if not args.verbose else None)
    ok = proc.returncode == 0 and (abs_dir / "metrics.json").is_file()
    print(f"   {'done' if ok else 'FAILED'} in {time.time() - t0:.0f} s" + ("" if ok or args.verbose else
          f" (log: {(run_dir / 'fit.log').as_posix()})"), flush=True)
    if not ok and not args.verbose:
        print("".join((abs_dir / "fit.log").read_text().splitlines(keepends=True)[-20:]), file=sys.stderr)
    return ok


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.table2", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-root", default="runs/table2", help="one run directory per combination under it")
    p.add_argument("--only", nargs="+", metavar="COMBO", help="train only these combinations (names as the yaml files)")
    p.add_argument("--steps", type=int, default=None,
                   help="quick run: one epoch of STEPS steps instead of the smoke schedule (validated at its end)")
    p.add_argument("--force", action="store_true", help="retrain combinations whose metrics.json exists")
    p.add_argument("--report-only", action="store_true", help="train nothing, read the existing metrics.json files")
    p.add_argument("--dry-run", action="store_true", help="print the commands, train nothing")
    p.add_argument("--verbose", action="store_true", help="stream training output instead of writing <run>/fit.log")
    p.add_argument("--json", default=None, help="write the table and the effects as JSON here")
    p.add_argument("fit_args", nargs="*", help="after --: extra `litesam fit` arguments for every run")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.steps is not None and args.steps < 1:
        raise SystemExit("--steps must be >= 1")
    combos = COMBOS if not args.only else tuple(parse_combo(n) for n in args.only)
    run_root = Path(args.run_root)
    failed = []
    if not (args.report_only or args.dry_run):
        init_from = _load(REPO / SCALE)["model"]["init_args"].get("init_from")
        if init_from and not (REPO / init_from).is_file():
            raise SystemExit(f"{init_from} not found: the Table 2 runs start from the backbone smoke run "
                             "(make smoke, or its first stage: litesam fit --config recipes/backbone_1box.yaml "
                             "--config recipes/smoke/backbone_1box.yaml)")
    if not args.report_only:
        for combo in combos:
            run_dir = run_root / combo_name(combo)
            done = ((run_dir if run_dir.is_absolute() else REPO / run_dir) / "metrics.json").is_file()
            if done and not args.force:
                print(f"== {combo_name(combo)}: {run_dir.as_posix()}/metrics.json exists, skipped (--force retrains)")
                continue
            if not _train(combo, run_dir, args):
                failed.append(combo_name(combo))
    if args.dry_run:
        return 0
    rows = collect_runs(run_root)
    eff = effects(rows)
    print(format_ablation_table(rows, eff))
    if args.json:
        out = write_json(args.json, {"metric_preference": list(METRICS), "steps": args.steps, "rows": rows,
                                     "effects": eff, "failed": failed})
        print(f"wrote {out}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
