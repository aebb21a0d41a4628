"""Data-loading throughput: samples/s of ``SA1BDataModule`` training batches (with prompts and AutoPPN targets).

Measures 0, 1 and 2 DataLoader workers (``--workers``) on the given shards, or on SA-1B-like synthetic shards it
writes first (``--synthetic DIR``: ``data_prep.synthetic``'s ``dense`` preset, 1024-pixel long side, 50-100
overlapping masks per image with SA-1B-style part/whole nesting and irregular outlines), prints a table and writes JSON
``{"rows": [{"workers", "samples_per_s", "cpu_ms_per_sample", "runs"}], "config": {...}}``. ``cpu_ms_per_sample`` is
the CPU time of the main process plus the workers per sample: on a busy machine it tells what free cores would give
(``cores * 1000 / cpu_ms_per_sample`` at best). ``--phases`` adds, for 0 workers, the CPU ms per sample of each phase
of ``SampleProcessor`` (``parse`` json, ``decode`` jpg, ``resize``, ``rle`` parse + boxes, ``grid`` sampling of every
mask, AutoPPN ``targets``, the K ``masks``, ``prompts``, ``pad``: the uint8 image into its batch slot) and ``other``
(tar reading, shuffling, collating). Batches carry uint8 images; their normalisation runs on the training device
(``LiteSAMTaskBase.on_after_batch_transfer``) and is not part of the loader's CPU time.

    python -m benchmarks.dataloader --synthetic /tmp/sa1b_bench --json results/dataloader.json
    python -m benchmarks.dataloader --shards 'data/sa1b/sa_{000000..000009}.tar' --json results/dataloader.json
    python -m benchmarks.dataloader --shards /tmp/dl/shards --workers 0 --phases --repeats 5 --json results/dataloader_640.json
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Sequence

from data_prep.synthetic import DENSE_MASKS, write_synthetic_sa1b
from litesam_pl.compat import dataloader_worker_pids
from litesam_pl.data.datamodule import SA1BDataModule
from benchmarks._wandb import publish
from benchmarks.toolkit.results import write_json
from benchmarks.toolkit.timing import Laps


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux ``/proc``); 0 where unavailable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def measure_loader(shards: str | list[str], workers: int, batches: int, img_size: int, batch_size: int, max_masks: int,
            warmup: int = 3, phases: dict | None = None) -> tuple[float, float]:
    """(samples/s, CPU seconds per sample over the main process and the workers) over ``batches`` training batches
    after ``warmup`` batches (worker start-up excluded).

    ``phases``: a dict to fill with CPU seconds per sample of each phase of ``SampleProcessor`` (see its
    ``phase_times``) plus ``other`` (reading the tar, shuffling, collating: the rest of the total); ``workers=0``
    only (the phases are timed in the process that runs the processor).
    """
    dm = SA1BDataModule(train_shards=shards, batch_size=batch_size, num_workers=workers, img_size=img_size,
                        max_masks=max_masks, epoch_samples=(batches + warmup + 2) * batch_size * max(workers, 1),
                        shuffle_buffer=16, pin_memory=False)
    dm.setup("fit")
    if phases is not None:
        if workers:
            raise ValueError("phase times need workers=0 (they are timed in the process running the processor)")
        dm.train_processor.phase_times = {}
    it = iter(dm.train_dataloader())
    for _ in range(warmup):
        next(it)
    if phases is not None:
        dm.train_processor.phase_times.clear()
    pids = dataloader_worker_pids(it)
    cpu0 = time.process_time() + sum(_cpu_seconds(p) for p in pids)
    laps = Laps()
    n = 0
    for _ in range(batches):
        n += len(next(it)["key"])
    dt = laps.lap()
    cpu = time.process_time() + sum(_cpu_seconds(p) for p in pids) - cpu0
    del it
    if phases is not None:
        phases.update({k: v / n for k, v in dm.train_processor.phase_times.items()})
        phases["other"] = cpu / n - sum(phases.values())
    return n / dt, cpu / n


def write_dense_synthetic(out: Path, num_images: int, hw: Sequence[int] = (768, 1024)) -> list[str]:
    """The benchmark's data: ``data_prep.synthetic``'s ``dense`` preset (seed 0, 16 images per tar, JPEG quality
    90) in ``out``; returns the tar paths."""
    paths = write_synthetic_sa1b(out, num_images, seed=0, images_per_tar=16, size=(int(hw[0]), int(hw[1])),
                                 progress=True, preset="dense", quality=90)
    return [str(p) for p in paths]


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Measure SA1BDataModule training throughput (samples/s with targets).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--shards", nargs="+", help="shard specs (paths, directories, globs, brace patterns, URLs)")
    src.add_argument("--synthetic", type=Path, metavar="DIR",
                     help="write (or reuse) dense SA-1B-like synthetic tars in DIR and measure on them")
    p.add_argument("--num-images", type=int, default=64, help="images to write with --synthetic")
    p.add_argument("--image-hw", type=int, nargs=2, default=(768, 1024), metavar=("H", "W"),
                   help="size of the --synthetic images (SA-1B's photos are ~1500 2250)")
    p.add_argument("--json", type=Path, help="write the results as JSON here")
    p.add_argument("--img-size", type=int, default=640, help="input side S")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-masks", type=int, default=16, help="K target masks per image")
    p.add_argument("--batches", type=int, default=12, help="timed batches per run (after 3 warm-up batches)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader worker counts")
    p.add_argument("--repeats", type=int, default=2, help="runs per worker count (the median is reported)")
    p.add_argument("--phases", action="store_true",
                   help="with 0 workers, also report CPU ms per sample of each phase of the per-sample processing "
                        "(decode, RLE parse, grid sampling, targets, masks, prompts, image padding, other)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    a = _parse_args(argv)

    if a.synthetic is not None:
        existing = sorted(a.synthetic.glob("*.tar")) if a.synthetic.is_dir() else []
        shards = [str(x) for x in existing] or write_dense_synthetic(a.synthetic, a.num_images, a.image_hw)
        data = (f"dense synthetic, {a.num_images} images {a.image_hw[0]}x{a.image_hw[1]}, "
                f"{DENSE_MASKS[0]}-{DENSE_MASKS[1]} masks each ({a.synthetic})")
    else:
        shards = a.shards
        data = " ".join(a.shards)
    rows = []
    for w in a.workers:
        ph = [{} if (a.phases and w == 0) else None for _ in range(a.repeats)]
        runs = [measure_loader(shards, w, a.batches, a.img_size, a.batch_size, a.max_masks, phases=ph[i])
                for i in range(a.repeats)]
        rows.append({"workers": w, "samples_per_s": round(statistics.median(r[0] for r in runs), 2),
                     "cpu_ms_per_sample": round(1000 * statistics.median(r[1] for r in runs), 1),
                     "runs": [round(r[0], 2) for r in runs],
                     "cpu_ms_runs": [round(1000 * r[1], 1) for r in runs]})
        if ph[0] is not None:  # per phase: the median over the repeats
            rows[-1]["phase_cpu_ms_per_sample"] = {k: round(1000 * statistics.median(p.get(k, 0.0) for p in ph), 2)
                                                   for k in ph[0]}
        print(f"workers={w}: {rows[-1]['samples_per_s']:.1f} samples/s (runs {rows[-1]['runs']}), "
              f"{rows[-1]['cpu_ms_per_sample']:.1f} CPU ms/sample (runs {rows[-1]['cpu_ms_runs']})", flush=True)
        if ph[0] is not None:
            print("  per phase (CPU ms/sample): " + ", ".join(f"{k} {v:.2f}" for k, v in
                                                           rows[-1]["phase_cpu_ms_per_sample"].items()), flush=True)
    result = {
        "rows": rows,
        "config": {"data": data, "img_size": a.img_size, "batch_size": a.batch_size, "max_masks": a.max_masks,
                   "batches": a.batches, "repeats": a.repeats, "cpu_count": os.cpu_count(),
                   "machine": platform.platform()},
    }
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    result["config"]["load_average_1min_at_end"] = round(load, 2)
    print("\n| workers | samples/s | CPU ms/sample |\n| --- | --- | --- |")
    for r in rows:
        print(f"| {r['workers']} | {r['samples_per_s']:.1f} | {r['cpu_ms_per_sample']:.1f} |")
    print(f"(1-min load average at the end: {load:.1f} on {os.cpu_count()} cores; other processes share the CPU)")
    if a.json is not None:
        write_json(a.json, result, indent=2)
    publish("dataloader", result)
    return result


if __name__ == "__main__":
    main()
