"""LiteViT encoder forward on CPU with MSPM's pooling as ``mixers.box_mean`` (the CPU default) vs ``F.avg_pool2d``.

    python -m benchmarks.pooling --resolution 192 640 --batch 4 --threads 1 --json results/pooling.json

Both paths give the same values (tests/models/test_models.py); this measures only the time. The two kernels run in
turn, round by round (``benchmarks.toolkit.timing.interleaved``: the order alternates), after one warm-up forward;
medians over the rounds.
"""
from __future__ import annotations

import argparse
import statistics

import torch

import litesam_pl
from benchmarks.toolkit.results import write_json
from benchmarks.toolkit.timing import Laps, interleaved
from litesam_pl.models.mixers import cpu_pooling


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, nargs="+", default=[192, 640])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for res in args.resolution:
        enc = litesam_pl.create_model("litesam", img_size=res, autoppn=False).image_encoder.eval()
        x = torch.randn(args.batch, 3, res, res)
        times = {"box_mean": [], "avg_pool2d": []}
        with torch.no_grad():
            enc(x)  # warm-up
            for _, name in interleaved(range(args.rounds), list(times)):
                with cpu_pooling(name):
                    laps = Laps()
                    enc(x)
                    times[name].append(1e3 * laps.lap())
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append({"resolution": res, "batch": args.batch, "threads": args.threads, "box_mean_ms": med["box_mean"],
                     "avg_pool2d_ms": med["avg_pool2d"], "speedup": med["avg_pool2d"] / med["box_mean"]})
        print(f"r{res} batch {args.batch}: box_mean {med['box_mean']:.0f} ms, avg_pool2d {med['avg_pool2d']:.0f} ms, "
              f"{rows[-1]['speedup']:.2f}x")
    out = {"benchmark": "pooling", "rows": rows}
    if args.json:
        write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
