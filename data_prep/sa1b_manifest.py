"""What ``data_prep.sa1b`` records on disk besides the shards: each input's state file (``_state/<stem>.json``:
where its shards end, so a rerun resumes), a job's partial manifest (``_jobs/job-<I>-of-<N>.json``) and the
fields of ``manifest.json``; ``check_disjoint`` compares two prepared splits, ``manifest_summary`` prints one.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from litesam_pl.files import write_json

from .sa1b_sample import PrepConfig

__all__ = ["STATE_DIR", "JOBS_DIR", "partial_path", "state_path", "load_state", "shard_ok", "manifest_fields",
           "write_partial", "check_disjoint", "manifest_summary"]

STATE_DIR = "_state"
JOBS_DIR = "_jobs"  # partial manifests of --num-jobs runs


def partial_path(out: str | Path, job_index: int, num_jobs: int) -> Path:
    """Where job ``job_index`` of ``num_jobs`` writes its partial manifest: ``out/_jobs/job-<I>-of-<N>.json``."""
    return Path(out) / JOBS_DIR / f"job-{job_index:05d}-of-{num_jobs:05d}.json"


def state_path(out: Path, stem: str) -> Path:
    """The state file of the input named ``stem``."""
    return out / STATE_DIR / f"{stem}.json"


def load_state(out: Path, stem: str, cfg: PrepConfig) -> dict | None:
    """The input's state (None when absent or torn); a ``ValueError`` when it was made with other settings."""
    p = state_path(out, stem)
    if not p.exists():
        return None
    try:
        state = json.loads(p.read_text())
    except json.JSONDecodeError:
        return None  # a torn state file: redo this input
    old = state.get("config")
    if isinstance(old, dict) and "fraction" in old and "hash_lo" not in old:  # written before --hash-range
        state["config"] = {**{k: v for k, v in old.items() if k != "fraction"},
                           "hash_lo": 0.0, "hash_hi": float(old["fraction"])}
    if state.get("config") != asdict(cfg):
        raise ValueError(
            f"{out} was prepared with different settings {state.get('config')} (now {asdict(cfg)}); "
            "use a fresh --out or delete it")
    return state


def shard_ok(out: Path, shard: dict) -> bool:
    """The recorded shard is on disk with its recorded size."""
    p = out / shard["url"]
    return p.is_file() and p.stat().st_size == shard["bytes"]


_SHARD_KEYS = ("url", "samples", "bytes", "sha256")


def _compact_state(st: dict) -> dict:
    """What the manifest needs of one input's state (``prepare_input``'s dict or an ``{"input", "error"}``)."""
    if "error" in st:
        return {"input": st["input"], "error": st["error"]}
    return {"input": st["input"], "shards": [{k: s[k] for k in _SHARD_KEYS} for s in st["shards"]],
            "records": st["records"], "skipped": st["skipped"], "not_selected": st["not_selected"],
            "stats": st["stats"]}


def manifest_fields(states: Sequence[dict]) -> tuple[list[dict], Counter, dict]:
    """``(shards, skipped, extra)`` of the manifest of these per-input states, taken in the given order (the
    order of ``errors``); one job and the merge of many both build ``manifest.json`` from this."""
    skipped: Counter = Counter()
    stats: Counter = Counter()
    shards: list[dict] = []
    not_selected = records = 0
    errors = []
    for st in states:
        if "error" in st:
            errors.append(f"{st['input']}: {st['error']}")
            skipped["unreadable_input"] += 1
            continue
        skipped.update(st["skipped"])
        stats.update(st["stats"])
        not_selected += st["not_selected"]
        records += st["records"]
        shards += [{k: s[k] for k in _SHARD_KEYS} for s in st["shards"]]
    return shards, skipped, {"records": records, "not_selected": not_selected,
                             "masks_dropped_empty": int(stats["masks_dropped_empty"]), "errors": errors}


def write_partial(out: Path, args: dict, all_inputs: Sequence[Path], inputs: Sequence[Path], states: list[dict],
                   num_jobs: int, job_index: int) -> dict:
    """Write job ``job_index``'s partial manifest: its own manifest fields (as ``manifest.json`` would hold them for
    its inputs), ``job`` (index, number of jobs, every input and its own) and its per-input ``states``."""
    states = [_compact_state(st) for st in states]
    shards, skipped, extra = manifest_fields(states)
    shards = sorted(shards, key=lambda s: s["url"])
    partial = {"shards": shards, "samples": int(sum(s["samples"] for s in shards)),
               "skipped": {k: int(v) for k, v in sorted(skipped.items()) if v}, "args": args,
               "hash_range": [args["hash_lo"], args["hash_hi"]], **extra,
               "job": {"index": job_index, "num_jobs": num_jobs, "inputs": [str(p) for p in all_inputs],
                       "assigned": [str(p) for p in inputs]},
               "states": states}
    write_json(partial_path(out, job_index, num_jobs), partial, fsync=True)
    return partial


def _manifest(m: dict | str | Path) -> dict:
    if isinstance(m, dict):
        return m
    p = Path(m)
    return json.loads((p / "manifest.json" if p.is_dir() else p).read_text())


def check_disjoint(a: dict | str | Path, b: dict | str | Path) -> None:
    """Raise ``ValueError`` unless two prepared splits (manifests, or their directories) cannot share an image:
    same ``seed`` and non-overlapping ``hash_range``s (this holds whatever tars each one read)."""
    ma, mb = _manifest(a), _manifest(b)
    ra, rb = ma.get("hash_range"), mb.get("hash_range")
    if ra is None or rb is None:
        raise ValueError("a manifest without hash_range (made before --hash-range): disjointness cannot be checked")
    sa, sb = ma["args"]["seed"], mb["args"]["seed"]
    if sa != sb:
        raise ValueError(f"different seeds ({sa} vs {sb}): hash ranges say nothing about overlap")
    if ra[0] < rb[1] and rb[0] < ra[1]:
        raise ValueError(f"hash ranges {ra} and {rb} overlap")


def manifest_summary(manifest: dict) -> str:
    """A human-readable one-paragraph summary of a manifest."""
    lines = [f"{manifest['samples']} samples in {len(manifest['shards'])} shards "
             f"({manifest.get('records', '?')} images read, {manifest.get('not_selected', 0)} not in the hash range "
             f"{manifest.get('hash_range', '?')})"]
    sk = manifest["skipped"]
    lines.append("skipped: " + (", ".join(f"{k}={v}" for k, v in sk.items()) if sk else "none"))
    if manifest.get("masks_dropped_empty"):
        lines.append(f"masks that vanished when resized (dropped): {manifest['masks_dropped_empty']}")
    for e in manifest.get("errors", []):
        lines.append(f"error: {e}")
    return "\n".join(lines)
