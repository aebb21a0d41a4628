"""``make bench-ci``: a fast CPU regression guard for SegEvery speed (well under 3 minutes).

Runs Lite-SAM (random weights, ``--img-size`` 256 by default, one CPU thread) on a few real photographs through
our SegEvery pipeline twice per image: AutoPPN prompts (top 256) and a 32x32 point grid (1024 prompts) on the
SAME model with the same filters. Runs are interleaved (AutoPPN, grid, grid, AutoPPN, ...) over ``--rounds``
rounds, and the medians are compared: the guard fails (exit status 1) when AutoPPN is not at least
``--min-speedup`` (2.5) times faster than grid search. The expected ratio is about 4x (four times fewer
prompts through the same decoder), so machine noise cannot trip the 2.5x guard; a regression that makes the
AutoPPN path do grid-sized work can.

Writes ``--json`` (``results/bench-ci.json``) and ``--md`` (``results/bench-ci.md``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from benchmarks._wandb import publish


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ci", description=__doc__.split("\n\n")[0])
    p.add_argument("--img-size", type=int, default=256, help="model input side (default 256)")
    p.add_argument("--images", type=int, default=3, help="photographs (default 3)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds over the images (default 3)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: stable on shared CPUs)")
    p.add_argument("--min-speedup", type=float, default=2.5, help="fail below this grid/AutoPPN ratio (2.5)")
    p.add_argument("--top-n", type=int, default=256)
    p.add_argument("--points-per-side", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="results/bench-ci.json")
    p.add_argument("--md", default="results/bench-ci.md")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    import litesam_pl
    from benchmarks.segevery import load_photos
    from litesam_pl.inference.segevery import segment_everything

    t_start = time.perf_counter()
    torch.manual_seed(args.seed)
    model = litesam_pl.create_model("litesam", img_size=args.img_size).eval()
    shared = Path(os.environ.get("LITESAM_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data"
    photos = load_photos(args.images, args.img_size, shared if shared.is_dir() else None)
    kw = {
        "autoppn": dict(prompts="autoppn", top_n=args.top_n, score_threshold=0.0),
        "grid": dict(prompts="grid", points_per_side=args.points_per_side),
    }

    def run(method: str, img: np.ndarray) -> Dict[str, Any]:
        phases: Dict[str, float] = {}
        stats: Dict[str, Any] = {}
        t0 = time.perf_counter()
        recs = segment_everything(model, img, timings=phases, stats=stats, **kw[method])
        return {"ms": (time.perf_counter() - t0) * 1e3, "prompts": stats["prompts"][0], "masks": len(recs),
                "phases": {k: v * 1e3 for k, v in phases.items()}}

    for m in kw:  # warm-up
        run(m, photos[0][1])
    results: Dict[str, List[Dict[str, Any]]] = {m: [] for m in kw}
    k = 0
    for _ in range(args.rounds):
        for _, img in photos:
            order = ["autoppn", "grid"] if k % 2 == 0 else ["grid", "autoppn"]
            k += 1
            for m in order:
                results[m].append(run(m, img))
    med = {m: float(np.median([r["ms"] for r in rs])) for m, rs in results.items()}
    ratio = med["grid"] / med["autoppn"]
    ok = ratio >= args.min_speedup
    out = {
        "ok": ok,
        "speedup_grid_over_autoppn": ratio,
        "min_speedup": args.min_speedup,
        "rows": [
            {
                "method": f"litesam_{'autoppn' if m == 'autoppn' else 'grid' + str(args.points_per_side)}",
                "resolution": args.img_size,
                "device": "cpu",
                "threads": args.threads,
                "runs": len(rs),
                "median_ms": med[m],
                "p90_ms": float(np.quantile([r["ms"] for r in rs], 0.9)),
                "prompts": int(np.median([r["prompts"] for r in rs])),
                "masks": float(np.median([r["masks"] for r in rs])),
                "phases": {p: float(np.median([r["phases"].get(p, 0.0) for r in rs]))
                           for p in sorted({q for r in rs for q in r["phases"]})},
            }
            for m, rs in results.items()
        ],
        "images": [n for n, _ in photos],
        "wall_s": time.perf_counter() - t_start,
        "torch": torch.__version__,
    }
    lines = [
        "# bench-ci: AutoPPN vs grid search (same model, CPU)",
        "",
        f"Lite-SAM random weights, r{args.img_size}, {args.threads} thread(s), {len(photos)} images x "
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
    md = "\n".join(lines) + "\n"
    for path, text in ((args.json, json.dumps(out, indent=1)), (args.md, md)):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
    print(md)
    publish("bench-ci", out)
    if not ok:
        print(f"bench-ci: FAIL: AutoPPN is only {ratio:.2f}x faster than grid search (< {args.min_speedup}x)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
