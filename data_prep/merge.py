"""Merge the partial manifests of ``python -m data_prep.sa1b --num-jobs N --job-index I`` into ``manifest.json``.

    python -m data_prep.merge /data/sa1b_640/train            # same as: python -m data_prep.sa1b --merge OUT

Checks, each failing with a one-line error (exit code 2) before anything is written: a partial of every job
``0 .. N-1`` is present in ``OUT/_jobs/`` (and only of one ``N``, unless ``--num-jobs`` picks one), every job ran with
the same arguments (``--src``, ``--max-side``, ``--hash-range``/``--fraction``, ``--seed``, ``--shard-size``,
``--quality``; only ``--workers`` may differ) and saw the same input list, each prepared exactly the inputs the
assignment rule gives it, each partial's counts add up to its per-input records, no shard name is written twice, and
every shard is on disk with its recorded size (``--verify``: and sha256). The manifest is then built from the
per-input records in input order, as one job over all inputs builds it, so it equals that job's ``manifest.json``
apart from ``"jobs": N`` (added) and ``args.workers`` (a per-job list when the jobs used different ``--workers``).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Sequence

from ._common import sha256_file, write_manifest
from .sa1b_inputs import assign_inputs
from .sa1b_manifest import JOBS_DIR, manifest_fields, manifest_summary

__all__ = ["MergeError", "merge_jobs"]

_PARTIAL = re.compile(r"job-(\d+)-of-(\d+)\.json")
_SUMMARY_KEYS = ("samples", "skipped", "records", "not_selected", "masks_dropped_empty", "errors")


class MergeError(ValueError):
    """The partial manifests cannot be merged; the message is one line naming the job and what is wrong."""


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise MergeError(f"unreadable partial manifest {path}: {type(e).__name__}: {e}; run that job again") from e


def _check_part(p: dict, i: int, ref: dict, num_jobs: int, path: Path) -> None:
    """Raise ``MergeError`` unless job ``i``'s partial ``p`` agrees with job 0's ``ref`` and adds up by itself."""
    name = f"job {i} of {num_jobs}"
    inputs = ref["job"]["inputs"]
    if p["job"].get("index") != i or p["job"].get("num_jobs") != num_jobs:
        raise MergeError(f"{path} holds the partial of job {p['job'].get('index')} of {p['job'].get('num_jobs')}, "
                         f"not of {name}")
    for key in [*ref["args"], *(k for k in p["args"] if k not in ref["args"])]:
        if key != "workers" and p["args"].get(key) != ref["args"].get(key):
            raise MergeError(f"{name} ran with different arguments than job 0: args.{key} = "
                             f"{p['args'].get(key)!r} vs {ref['args'].get(key)!r}")
    if p.get("hash_range") != ref.get("hash_range"):
        raise MergeError(f"{name} has hash_range {p.get('hash_range')} but job 0 {ref.get('hash_range')}")
    if p["job"]["inputs"] != inputs:
        diff = sorted(set(p["job"]["inputs"]) ^ set(inputs))
        raise MergeError(f"{name} saw {len(p['job']['inputs'])} inputs, job 0 saw {len(inputs)} "
                         f"(e.g. {diff[0] if diff else 'in another order'}): every job needs the same --src")
    expected = [str(q) for q in assign_inputs(inputs, num_jobs, i)]
    if p["job"]["assigned"] != expected or [st["input"] for st in p["states"]] != expected:
        raise MergeError(f"{name} did not prepare exactly its inputs ({len(expected)} expected, "
                         f"{len(p['states'])} recorded): run it again")
    shards, skipped, extra = manifest_fields(p["states"])
    own = {"samples": int(sum(s["samples"] for s in shards)),
           "skipped": {k: int(v) for k, v in sorted(skipped.items()) if v}, **extra}
    for key in _SUMMARY_KEYS:
        if p.get(key) != own[key]:
            raise MergeError(f"counts of {name} do not add up: {key} {p.get(key)!r} in its summary vs "
                             f"{own[key]!r} from its inputs")
    if sorted(s["url"] for s in p.get("shards", [])) != sorted(s["url"] for s in shards):
        raise MergeError(f"the shard list of {name} differs from its inputs' shards")


def _find_partials(out: Path, jobs_dir: Path, num_jobs: int | None) -> tuple[int, dict[int, Path]]:
    """``num_jobs`` (the one in ``jobs_dir`` when None) and its partial manifests by job index, all present."""
    found: dict[int, dict[int, Path]] = {}
    for f in sorted(jobs_dir.glob("job-*-of-*.json")) if jobs_dir.is_dir() else []:
        m = _PARTIAL.fullmatch(f.name)
        if m:
            found.setdefault(int(m.group(2)), {})[int(m.group(1))] = f
    if not found:
        raise MergeError(f"no partial manifests in {jobs_dir}: run python -m data_prep.sa1b ... --out {out} "
                         "--num-jobs N --job-index I for every I first")
    if num_jobs is None:
        if len(found) > 1:
            raise MergeError(f"{jobs_dir} holds partials of runs with --num-jobs {sorted(found)}: pass --num-jobs N "
                             "or delete the stale ones")
        (num_jobs,) = found
    elif num_jobs not in found:
        raise MergeError(f"no partial manifests of --num-jobs {num_jobs} in {jobs_dir} (found --num-jobs {sorted(found)})")
    files = found[num_jobs]
    bad = sorted(i for i in files if i >= num_jobs)
    if bad:
        raise MergeError(f"partial manifest {files[bad[0]]} names job {bad[0]} of only {num_jobs}")
    missing = [i for i in range(num_jobs) if i not in files]
    if missing:
        raise MergeError(f"missing the partial manifest of job {missing[0]} of {num_jobs} "
                         f"({jobs_dir / f'job-{missing[0]:05d}-of-{num_jobs:05d}.json'}); "
                         f"{len(missing)} of {num_jobs} jobs missing (--job-index {','.join(map(str, missing[:10]))}"
                         f"{',...' if len(missing) > 10 else ''}): run them (again) before merging")
    return num_jobs, files


def _check_shards(out: Path, shards: list[dict], verify: bool) -> None:
    """Each shard the partial manifests list exists under ``out`` with its recorded size (and sha256 when
    ``verify``)."""
    for s in shards:
        f = out / s["url"]
        if not f.is_file():
            raise MergeError(f"shard {f} listed by a partial manifest is missing")
        if f.stat().st_size != s["bytes"]:
            raise MergeError(f"shard {f} has {f.stat().st_size} bytes, its partial manifest says {s['bytes']}")
        if verify and sha256_file(f) != s["sha256"]:
            raise MergeError(f"shard {f} does not have the sha256 its partial manifest records")


def merge_jobs(out: str | Path, num_jobs: int | None = None, verify: bool = False) -> dict:
    """Check the partial manifests in ``out/_jobs/`` and write ``out/manifest.json``; returns the manifest.

    ``num_jobs`` picks the partials of one ``--num-jobs`` when several are there. Raises ``MergeError``.
    """
    out = Path(out)
    jobs_dir = out / JOBS_DIR
    num_jobs, files = _find_partials(out, jobs_dir, num_jobs)

    parts = [_load(files[i]) for i in range(num_jobs)]
    for i, p in enumerate(parts):
        if not (isinstance(p, dict) and isinstance(p.get("job"), dict) and isinstance(p.get("args"), dict)
                and isinstance(p.get("states"), list) and all(k in p["job"] for k in ("inputs", "assigned"))):
            raise MergeError(f"{files[i]} is not a data_prep.sa1b partial manifest; run job {i} again")
    ref = parts[0]
    owner: dict[str, dict] = {}
    for i, p in enumerate(parts):
        try:
            _check_part(p, i, ref, num_jobs, files[i])
            for st in p["states"]:
                owner[st["input"]] = st
        except (KeyError, TypeError, AttributeError) as e:
            raise MergeError(f"malformed partial manifest {files[i]} ({type(e).__name__}: {e}); run job {i} again") from e

    states = [owner[q] for q in ref["job"]["inputs"]]  # input order, as one job over all inputs
    shards, skipped, extra = manifest_fields(states)
    dup = [(u, n) for u, n in Counter(s["url"] for s in shards).items() if n > 1]
    if dup:
        raise MergeError(f"shard name {dup[0][0]} is written {dup[0][1]} times ({len(dup)} duplicate names): "
                         "inputs with the same name in different jobs?")
    _check_shards(out, shards, verify)
    workers = [p["args"].get("workers") for p in parts]
    args = {**ref["args"], "workers": workers[0] if len(set(workers)) == 1 else workers}
    write_manifest(out, shards, skipped, args, hash_range=ref["hash_range"], **extra, jobs=num_jobs)
    return json.loads((out / "manifest.json").read_text())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m data_prep.merge",
                                description="check the partial manifests of data_prep.sa1b --num-jobs runs and write manifest.json")
    p.add_argument("out", help="the --out directory all jobs wrote into")
    p.add_argument("--num-jobs", type=int, default=None, help="merge the partials of this --num-jobs (when several)")
    p.add_argument("--verify", action="store_true", help="also compare every shard's sha256 (reads all shards)")
    a = p.parse_args(argv)
    try:
        manifest = merge_jobs(a.out, a.num_jobs, a.verify)
    except MergeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(manifest_summary(manifest))
    print(f"manifest: {Path(a.out) / 'manifest.json'} (merged from {manifest['jobs']} jobs)")
    return 1 if manifest.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
