"""``make bench-ci``: a fast CPU regression guard for SegEvery speed (well under 3 minutes).

Runs Lite-SAM (random weights, ``--img-size`` 256 by default, one CPU thread) on a few real photographs through
our SegEvery pipeline twice per image: AutoPPN prompts (top 256) and a 32x32 point grid (1024 prompts) on the
SAME model with the same filters. Runs are interleaved (AutoPPN, grid, grid, AutoPPN, ...) over ``--rounds``
rounds, and the medians are compared: the guard fails (exit status 1) when AutoPPN is not at least
``--min-speedup`` (2.5) times faster than grid search. The expected ratio is about 4x (four times fewer
prompts through the same decoder), so machine noise cannot trip the 2.5x guard; a regression that makes the
AutoPPN path do grid-sized work can. The runs are ``benchmarks.segevery``'s ``litesam_autoppn`` and
``litesam_grid32`` rows (``run_config``), with ``--rounds`` passes and a warm-up at the timed settings.

Writes ``--json`` (``results/bench-ci.json``) and ``--md`` (``results/bench-ci.md``).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch

from benchmarks._wandb import publish
from litesam_pl.inference.segevery_options import add_option_flags
from benchmarks.toolkit.results import write_json
from benchmarks.toolkit.timing import Laps


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ci", description=__doc__.split("\n\n")[0])
    p.add_argument("--img-size", type=int, default=256, help="model input side (default 256)")
    p.add_argument("--images", type=int, default=3, help="photographs (default 3)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds over the images (default 3)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: stable on shared CPUs)")
    p.add_argument("--min-speedup", type=float, default=2.5, help="fail below this grid/AutoPPN ratio (2.5)")
    add_option_flags(p, ("top_n", "points_per_side"))  # the AutoPPN row's prompts, the grid row's side
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="results/bench-ci.json")
    p.add_argument("--md", default="results/bench-ci.md")
    return p


def markdown(out: Dict[str, Any], args: argparse.Namespace, n_images: int) -> str:
    """The ``--md`` report (also printed): the two rows with their phases, the ratio and PASS/FAIL."""
    ratio, ok = out["speedup_grid_over_autoppn"], out["ok"]
    lines = [
        "# bench-ci: AutoPPN vs grid search (same model, CPU)",
        "",
        f"Lite-SAM random weights, r{args.img_size}, {args.threads} thread(s), {n_images} images x "
        f"{args.rounds} interleaved rounds, medians.",
        "",
        "| method | prompts | median ms | p90 ms | encoder | prompts | decoder | postprocess |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in out["rows"]:
        ph = r["phases"]
        lines.append(f"| {r['method']} | {r['prompts']} | {r['median_ms']:.0f} | {r['p90_ms']:.0f} | "
                     f"{ph.get('encoder', 0):.0f} | {ph.get('prompts', 0):.0f} | {ph.get('decoder', 0):.0f} | "
                     f"{ph.get('postprocess', 0):.0f} |")
    lines += ["", f"**grid / AutoPPN = {ratio:.2f}x** (guard: >= {args.min_speedup}x) -> "
                  f"{'PASS' if ok else 'FAIL'}; wall {out['wall_s']:.0f} s"]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    from benchmarks import segevery
    from benchmarks.segevery_measure import load_photos

    laps = Laps()
    shared = Path(os.environ.get("LITESAM_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data"
    photos = load_photos(args.images, args.img_size, shared if shared.is_dir() else None)
    # segevery's two Lite-SAM rows on the same seeded model (random weights: the top-N AutoPPN prompts)
    bench_args = segevery.build_parser().parse_args([
        "--resolution", str(args.img_size), "--images", str(args.images), "--threads", str(args.threads),
        "--top-n", str(args.top_n), "--seed", str(args.seed), "--methods", "litesam_autoppn", "litesam_grid32"])
    rows = segevery.run_config(bench_args, torch.device("cpu"), args.img_size, photos=photos, rounds=args.rounds,
                               points_per_side=args.points_per_side, full_warmup=True)
    failed = [f"{r['method']}: {r['error']}" for r in rows if r.get("error")]
    if failed:
        print(f"bench-ci: FAIL: {'; '.join(failed)}", file=sys.stderr)
        return 1
    by = {r["method"]: r for r in rows}
    ratio = by["litesam_grid32"]["median_ms"] / by["litesam_autoppn"]["median_ms"]
    ok = ratio >= args.min_speedup
    out = {
        "ok": ok,
        "speedup_grid_over_autoppn": ratio,
        "min_speedup": args.min_speedup,
        "rows": [
            {
                "method": "litesam_autoppn" if m == "litesam_autoppn" else f"litesam_grid{args.points_per_side}",
                "resolution": args.img_size,
                "device": "cpu",
                "threads": args.threads,
                "runs": by[m]["images"],
                **{k: by[m][k] for k in ("median_ms", "p90_ms", "prompts", "masks", "phases")},
            }
            for m in ("litesam_autoppn", "litesam_grid32")
        ],
        "images": [n for n, _ in photos],
        "wall_s": laps.lap(),
        "torch": torch.__version__,
    }
    md = markdown(out, args, len(photos))
    if args.json:
        write_json(args.json, out)
    if args.md:
        Path(args.md).parent.mkdir(parents=True, exist_ok=True)
        Path(args.md).write_text(md)
    print(md)
    publish("bench-ci", out)
    if not ok:
        print(f"bench-ci: FAIL: AutoPPN is only {ratio:.2f}x faster than grid search (< {args.min_speedup}x)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
