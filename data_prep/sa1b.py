"""SA-1B tars (or extracted folders) -> resized WebDataset shards + ``manifest.json``.

    python -m data_prep.sa1b --src /data/sa1b/*.tar --out /data/sa1b_1024 --max-side 1024 \\
        --hash-range 0 0.18 --seed 0 --shard-size 1000 --workers 8

Per image: decided in or out by a hash of ``(seed, key)`` (independent of order and of the other inputs): with
``u = sha1("<seed>:<key>")[:8] / 2^64`` an image is kept when ``LO <= u < HI`` for ``--hash-range LO HI``
(``HI = 1`` keeps every ``u >= LO``); ``--fraction F`` is ``--hash-range 0 F``. Two runs with the same seed and
ranges that do not overlap (e.g. train ``0 0.18``, val ``0.18 0.20``) are disjoint whatever tars they read; the
range is recorded in ``manifest.json`` (``hash_range``, ``args.seed``) and ``check_disjoint`` compares two of them.
Each kept image is then decoded and checked (bad ones are skipped and counted by reason), resized so its long side
is at most ``--max-side`` (never upscaled; the original jpg bytes are kept when no resize is needed), masks
re-encoded at the new size (area-resampled, coverage >= 0.5; masks that vanish are dropped and counted), boxes and
areas recomputed from the resized masks, point_coords and crop_box scaled.

Output naming is per input: ``<srcstem>-000000.tar, <srcstem>-000001.tar, ...`` each with ``--shard-size``
samples (the last one fewer), members ``<key>.jpg`` + ``<key>.json`` as in SA-1B. Shards are deterministic tars
written to ``<name>.tmp`` then renamed, and ``_state/<srcstem>.json`` remembers where each shard started in its
input, so a rerun skips finished inputs, restarts an unfinished one at its first missing shard, and produces
byte-identical shards to an uninterrupted run whatever ``--workers`` is.

Many machines (a SLURM array or any scheduler): ``--num-jobs N --job-index I`` runs job ``I`` of ``N`` over every
``N``-th input (input ``k`` of the ``--src`` list, expanded as above, goes to job ``k % N``). All jobs take the same
arguments and write into the same ``--out`` (shared filesystem); each writes its shards and a partial manifest
``_jobs/job-<I>-of-<N>.json`` (no ``manifest.json``), and ``--merge OUT`` (``data_prep.merge``) checks the partials
and writes ``manifest.json``. Since shard names and bytes depend only on the input tar, the shards are the ones one
job writes, and the merged manifest is one job's plus ``"jobs": N`` (``args.workers`` becomes a per-job list when the
jobs used different ``--workers``).

Modules: ``sa1b_inputs`` (inputs, job shares, the hash selection), ``sa1b_sample`` (one sample), ``sa1b_manifest``
(state files, partial and full manifests); this one runs them (``prepare_input``, ``prepare_sa1b``) and is the
command line. Their public names are importable from here.
"""
from __future__ import annotations

import argparse
import glob
import json
import multiprocessing as mp
import os
import sys
import tarfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2

from litesam_pl.files import write_json

from ._common import TMP_SUFFIX, ShardWriter, write_manifest
from .sa1b_inputs import (
    assign_inputs,
    check_hash_range,
    check_job,
    find_inputs,
    hash_fraction,
    in_hash_range,
    input_stem,
    is_selected,
    iter_input,
)
from .sa1b_manifest import (
    JOBS_DIR,
    STATE_DIR,
    check_disjoint,
    load_state,
    manifest_fields,
    partial_path,
    shard_ok,
    state_path,
    manifest_summary,
    write_partial,
)
from .sa1b_sample import PrepConfig, SkipSample, decode_image_or_skip, process_sample, resized_hw

# the names other tools, tests and users import from data_prep.sa1b; their homes are the sa1b_* modules above
__all__ = ["PrepConfig", "find_inputs", "iter_input", "hash_fraction", "in_hash_range", "is_selected", "process_sample",
           "prepare_input", "prepare_sa1b", "check_disjoint", "SkipSample", "assign_inputs", "partial_path",
           "check_hash_range", "check_job", "decode_image_or_skip", "resized_hw", "manifest_fields", "manifest_summary",
           "main", "JOBS_DIR", "STATE_DIR"]


# ------------------------------------------------------------------------------------------------ one input
class _InputRun:
    """One input's shards from its restart point on (``prepare_input``): the counters where the kept shards end,
    the open shard and the state file, rewritten at every finished shard."""

    def __init__(self, path: Path, out: Path, stem: str, cfg: PrepConfig, state: dict | None):
        self.path, self.out, self.stem, self.cfg = path, out, stem, cfg
        # restart point: the first shard whose file is missing or not of the recorded size
        self.shards: list[dict] = []
        for s in (state["shards"] if state else []):
            if not shard_ok(out, s):
                break
            self.shards.append(s)
        last = self.shards[-1] if self.shards else None
        self.start = last["end"] if last else 0
        self.skipped = Counter(last["skipped_after"]) if last else Counter()
        self.not_selected = last["not_selected_after"] if last else 0
        self.stats = Counter(last["stats_after"]) if last else Counter()
        self.writer: ShardWriter | None = None

    def save(self, complete: bool, records: int) -> dict:
        st = {"config": asdict(self.cfg), "input": str(self.path), "shards": self.shards, "complete": complete,
              "records": records, "skipped": dict(self.skipped), "not_selected": self.not_selected,
              "stats": dict(self.stats)}
        write_json(state_path(self.out, self.stem), st, newline=False, fsync=True)
        return st

    def flush(self, end: int) -> None:
        info = self.writer.close()
        self.writer = None
        self.shards.append({**info, "end": end, "skipped_after": dict(self.skipped),
                            "not_selected_after": self.not_selected, "stats_after": dict(self.stats)})
        self.save(False, end)

    def add(self, idx: int, key: str, jpg: bytes | None, js: bytes | None) -> None:
        """Sample ``idx`` of the input: not selected, skipped (counted by reason) or written to the open shard."""
        if not in_hash_range(key, self.cfg.seed, self.cfg.hash_lo, self.cfg.hash_hi):
            self.not_selected += 1
            return
        try:
            sample = process_sample(jpg, js, self.cfg, self.stats)
        except SkipSample as e:
            self.skipped[e.reason] += 1
            return
        if self.writer is None:
            self.writer = ShardWriter(self.out / f"{self.stem}-{len(self.shards):06d}.tar")
        self.writer.write(key, *sample)
        if self.writer.samples == self.cfg.shard_size:
            self.flush(idx + 1)

    def run(self, progress: Callable[[int], None] | None) -> dict:
        input_errors: list[str] = []
        idx = -1
        pending = 0
        try:
            for idx, (key, jpg, js) in enumerate(iter_input(self.path, on_error=input_errors.append)):
                pending += 1
                if idx < self.start:
                    continue
                if progress and pending >= 16:
                    progress(pending)
                    pending = 0
                self.add(idx, key, jpg, js)
        except BaseException:
            if self.writer is not None:
                self.writer.abort()
            raise
        records = idx + 1
        if self.writer is not None:
            self.flush(records)
        for reason in input_errors:
            self.skipped[reason] += 1
        if progress and pending:
            progress(pending)
        return self.save(True, records)


def prepare_input(path: Path, out: Path, cfg: PrepConfig, progress: Callable[[int], None] | None = None) -> dict:
    """Turn one input tar/folder into shards ``out/<stem>-<k>.tar``; returns its finished state dict.

    Resumes from ``out/_state/<stem>.json``: finished inputs are skipped; otherwise processing restarts at the
    first shard that is missing (earlier shards are kept as they are).
    """
    path, out = Path(path), Path(out)
    stem = input_stem(path)
    (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f"{glob.escape(stem)}-*.tar{TMP_SUFFIX}"):
        stale.unlink()  # left by an interrupted run; this worker owns the stem
    state = load_state(out, stem, cfg)
    if state and state.get("complete") and all(shard_ok(out, s) for s in state["shards"]):
        if progress:
            progress(state["records"])
        return state
    return _InputRun(path, out, stem, cfg, state).run(progress)


# ------------------------------------------------------------------------------------------------ driver
_COUNTER = None


def _init_worker(counter) -> None:
    global _COUNTER
    _COUNTER = counter
    cv2.setNumThreads(1)


def _bump(n: int) -> None:
    with _COUNTER.get_lock():
        _COUNTER.value += n


def _worker(args: tuple[str, str, dict]) -> dict:
    path, out, cfg = args
    try:
        return prepare_input(Path(path), Path(out), PrepConfig(**cfg), progress=_bump)
    except (tarfile.TarError, OSError) as e:
        return {"input": path, "error": f"{type(e).__name__}: {e}"}


def _hash_range(fraction: float | None, hash_range: tuple[float, float] | None) -> tuple[float, float]:
    """``(lo, hi)`` of ``--fraction`` / ``--hash-range`` (at most one; neither keeps everything)."""
    if fraction is not None and hash_range is not None:
        raise ValueError("give --fraction or --hash-range, not both")
    if fraction is not None:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        hash_range = (0.0, float(fraction))
    return (0.0, 1.0) if hash_range is None else (float(hash_range[0]), float(hash_range[1]))


def _run_serial(inputs: Sequence[Path], out: Path, cfg: PrepConfig, bar: Any) -> list[dict]:
    states: list[dict] = []
    for p in inputs:
        try:
            states.append(prepare_input(p, out, cfg, progress=bar.update if bar is not None else None))
        except (tarfile.TarError, OSError) as e:
            states.append({"input": str(p), "error": f"{type(e).__name__}: {e}"})
        if bar is not None:
            bar.set_postfix(inputs=f"{len(states)}/{len(inputs)}")
    return states


def _run_pool(inputs: Sequence[Path], out: Path, cfg: PrepConfig, workers: int, bar: Any) -> list[dict]:
    """The inputs on ``workers`` spawned processes (one input each at a time); the bar follows a shared counter."""
    ctx = mp.get_context("spawn")
    counter = ctx.Value("q", 0)
    with ctx.Pool(min(workers, len(inputs)), initializer=_init_worker, initargs=(counter,)) as pool:
        jobs = [pool.apply_async(_worker, ((str(p), str(out), asdict(cfg)),)) for p in inputs]
        while True:
            done = sum(j.ready() for j in jobs)
            if bar is not None:
                bar.n = counter.value
                bar.set_postfix(inputs=f"{done}/{len(inputs)}")
                bar.refresh()
            if done == len(jobs):
                break
            time.sleep(0.2)
        states = [j.get() for j in jobs]
        if bar is not None:
            bar.n = counter.value
            bar.refresh()
    return states


def prepare_sa1b(
    src: Sequence[str | Path],
    out: str | Path,
    max_side: int = 1024,
    fraction: float | None = None,
    seed: int = 0,
    shard_size: int = 1000,
    quality: int = 90,
    workers: int = 1,
    progress: bool = True,
    hash_range: tuple[float, float] | None = None,
    num_jobs: int = 1,
    job_index: int = 0,
) -> dict:
    """Prepare every input of ``src`` into ``out`` (see module docstring); writes and returns the manifest.

    Selection: ``hash_range=(lo, hi)`` keeps images with ``lo <= u < hi``; ``fraction=F`` is ``hash_range=(0, F)``
    (give at most one; neither keeps everything). With ``num_jobs > 1`` only the inputs ``assign_inputs`` gives to
    ``job_index`` are prepared and the partial manifest ``partial_path(out, job_index, num_jobs)`` is written and
    returned instead of ``manifest.json`` (``data_prep.merge.merge_jobs`` makes that from all the partials).
    """
    check_job(num_jobs, job_index)
    lo, hi = _hash_range(fraction, hash_range)
    cfg = PrepConfig(max_side=max_side, hash_lo=lo, hash_hi=hi, seed=seed, shard_size=shard_size, quality=quality)
    all_inputs = find_inputs(src)
    inputs = assign_inputs(all_inputs, num_jobs, job_index)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for p in inputs:  # fail early on a settings mismatch, before any work
        load_state(out, input_stem(p), cfg)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=None, unit="img", desc="sa1b", file=sys.stderr)
    if workers <= 1 or len(inputs) <= 1:
        states = _run_serial(inputs, out, cfg, bar)
    else:
        states = _run_pool(inputs, out, cfg, workers, bar)
    if bar is not None:
        bar.close()

    args = {"src": [str(s) for s in src], **asdict(cfg), "workers": workers}
    if num_jobs > 1:
        return write_partial(out, args, all_inputs, inputs, states, num_jobs, job_index)
    shards, skipped, extra = manifest_fields(states)
    write_manifest(out, shards, skipped, args, hash_range=[cfg.hash_lo, cfg.hash_hi], **extra)
    return json.loads((out / "manifest.json").read_text())


# ------------------------------------------------------------------------------------------------ command line
class _DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, except the unset ones (``None`` / ``False``: the help says)."""

    # a private argparse method: litesam_pl/compat.py's docstring, "Overrides" (checked with Python 3.11's argparse)
    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m data_prep.sa1b", formatter_class=_DefaultsHelpFormatter,
                                description="SA-1B tars or extracted folders -> resized WebDataset shards + manifest.json")
    p.add_argument("--src", nargs="+", default=None,
                   help="SA-1B tars, folders of tars, extracted folders (jpg + json) or globs (quote them)")
    p.add_argument("--out", default=None, help="output shard directory (created; reruns resume)")
    p.add_argument("--max-side", type=int, default=1024, help="shrink so the long side is at most this (never upscale)")
    sel = p.add_mutually_exclusive_group()
    sel.add_argument("--fraction", type=float, default=None,
                     help="keep this fraction of images (default: all of them, 1.0; the paper trains on 0.18); same "
                          "as --hash-range 0 FRACTION")
    sel.add_argument("--hash-range", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                     help="keep an image when LO <= u < HI (default: all images), u = sha1('<seed>:<key>')[:8] / 2^64; splits with the same "
                          "seed and non-overlapping ranges share no image (train: 0 0.18, val: 0.18 0.20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the per-image selection hash")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per output shard")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of resized images")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                   help="worker processes (parallel over input tars; default: CPUs - 1, here %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    job = p.add_argument_group("many jobs (a SLURM array or any scheduler; same arguments, same --out)")
    job.add_argument("--num-jobs", type=int, default=None,
                     help="split the inputs over this many independent jobs (input k goes to job k %% N)")
    job.add_argument("--job-index", type=int, default=None,
                     help="which of the --num-jobs jobs this is, 0 .. N-1 (e.g. $SLURM_ARRAY_TASK_ID)")
    job.add_argument("--merge", metavar="OUT", default=None,
                     help="instead of preparing: check the partial manifests the jobs left in OUT and write "
                          "OUT/manifest.json (same as python -m data_prep.merge OUT)")
    job.add_argument("--verify", action="store_true", help="with --merge: also compare every shard's sha256")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = _parser()
    a = p.parse_args(argv)
    if a.merge is not None:
        if a.src is not None or a.out is not None or a.job_index is not None:
            p.error("--merge OUT takes no --src, --out or --job-index")
        from .merge import main as merge_main

        return merge_main([a.merge, *(["--num-jobs", str(a.num_jobs)] if a.num_jobs is not None else []),
                           *(["--verify"] if a.verify else [])])
    if a.src is None or a.out is None:
        p.error("--src and --out are required (or --merge OUT)")
    if (a.job_index is not None and a.num_jobs is None) or (a.num_jobs is not None and a.num_jobs > 1 and a.job_index is None):
        p.error("--num-jobs N and --job-index I go together")
    if a.verify:
        p.error("--verify goes with --merge")
    num_jobs, job_index = a.num_jobs or 1, a.job_index or 0
    try:
        manifest = prepare_sa1b(a.src, a.out, a.max_side, a.fraction, a.seed, a.shard_size, a.quality, a.workers,
                                progress=not a.no_progress, hash_range=a.hash_range, num_jobs=num_jobs,
                                job_index=job_index)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(manifest_summary(manifest))
    if num_jobs > 1:
        print(f"partial manifest (job {job_index} of {num_jobs}): {partial_path(a.out, job_index, num_jobs)}; "
              f"when all {num_jobs} jobs are done: python -m data_prep.sa1b --merge {a.out}")
    else:
        print(f"manifest: {Path(a.out) / 'manifest.json'}")
    return 1 if manifest.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
