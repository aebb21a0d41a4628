"""Which images ``data_prep.sa1b`` prepares: its inputs (``find_inputs``: tars, folders of tars, extracted folders,
globs), each job's share of them (``assign_inputs``), their samples in a fixed order (``iter_input``) and the
per-image selection by a hash of ``(seed, key)`` (``in_hash_range``; ``--fraction F`` is ``--hash-range 0 F``).
"""
from __future__ import annotations

import glob
import hashlib
import re
import tarfile
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator, Sequence

__all__ = ["find_inputs", "input_stem", "check_job", "assign_inputs", "iter_input", "check_hash_range",
           "hash_fraction", "in_hash_range", "is_selected"]


# ------------------------------------------------------------------------------------------------ inputs
def _natural(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def find_inputs(src: Sequence[str | Path]) -> list[Path]:
    """Expand ``--src`` items (a tar, a folder of tars, an extracted folder of jpg+json, or a glob) to inputs.

    Raises ``FileNotFoundError`` when nothing matches, ``ValueError`` on two inputs with the same stem.
    """
    found: list[Path] = []
    for item in src:
        item = str(item)
        paths = [Path(p) for p in sorted(glob.glob(item), key=_natural)] if glob.has_magic(item) else [Path(item)]
        for p in paths:
            if p.is_file() and p.name.endswith(".tar"):
                found.append(p)
            elif p.is_dir():
                tars = sorted(p.glob("*.tar"), key=lambda q: _natural(q.name))
                if tars:
                    found += tars
                elif any(p.glob("*.json")):
                    found.append(p)
    if not found:
        raise FileNotFoundError(f"no SA-1B tars or extracted folders (jpg + json) found in --src {list(map(str, src))}")
    stems = Counter(input_stem(p) for p in found)
    dup = [s for s, n in stems.items() if n > 1]
    if dup:
        raise ValueError(f"inputs with the same name would write the same shards: {dup[:5]}")
    return found


def input_stem(p: Path) -> str:
    return p.name[: -len(".tar")] if p.name.endswith(".tar") else p.name


def check_job(num_jobs: int, job_index: int) -> None:
    """Raise a one-line ``ValueError`` unless ``num_jobs >= 1`` and ``0 <= job_index < num_jobs``."""
    if num_jobs < 1:
        raise ValueError(f"--num-jobs must be >= 1, got {num_jobs}")
    if not 0 <= job_index < num_jobs:
        raise ValueError(f"--job-index must be in [0, {num_jobs}) for --num-jobs {num_jobs}, got {job_index}")


def assign_inputs(inputs: Sequence[Path], num_jobs: int, job_index: int) -> list[Path]:
    """The inputs job ``job_index`` of ``num_jobs`` prepares: input ``k`` (in ``find_inputs`` order) goes to job
    ``k % num_jobs``, so the jobs' inputs are disjoint, cover every input and differ in number by at most one."""
    check_job(num_jobs, job_index)
    return [p for k, p in enumerate(inputs) if k % num_jobs == job_index]


def _split(name: str) -> tuple[str, str]:
    base = name.rsplit("/", 1)[-1]
    key, _, ext = base.partition(".")
    return key, ext.lower()


def iter_input(path: Path, on_error: Callable[[str], None] | None = None) -> Iterator[tuple[str, bytes | None, bytes | None]]:
    """Yield ``(key, jpg bytes or None, json bytes or None)`` of a tar or folder, in a fixed order.

    A truncated/unreadable tar yields what could be read and calls ``on_error("truncated_input")``.
    """
    if path.is_dir():
        groups: dict[str, dict[str, Path]] = {}
        for f in path.iterdir():
            key, ext = _split(f.name)
            if ext in ("jpg", "json") and f.is_file():
                groups.setdefault(key, {})[ext] = f
        for key in sorted(groups, key=_natural):
            g = groups[key]
            yield key, (g["jpg"].read_bytes() if "jpg" in g else None), (g["json"].read_bytes() if "json" in g else None)
        return
    with tarfile.open(path, "r:*") as tar:
        members: list[tarfile.TarInfo] = []
        try:
            for m in tar:
                members.append(m)
        except (tarfile.TarError, EOFError, OSError):
            if on_error:
                on_error("truncated_input")
        order: list[str] = []
        groups2: dict[str, dict[str, tarfile.TarInfo]] = {}
        for m in members:
            if not m.isfile():
                continue
            key, ext = _split(m.name)
            if ext not in ("jpg", "json"):
                continue
            if key not in groups2:
                order.append(key)
                groups2[key] = {}
            groups2[key][ext] = m

        def read(m: tarfile.TarInfo | None) -> bytes | None:
            if m is None:
                return None
            try:
                f = tar.extractfile(m)
                data = f.read() if f is not None else None
            except (tarfile.TarError, EOFError, OSError):
                return None
            return data if data is not None and len(data) == m.size else None

        for key in order:
            g = groups2[key]
            yield key, read(g.get("jpg")), read(g.get("json"))


# ------------------------------------------------------------------------------------------------ selection
def check_hash_range(lo: float, hi: float) -> None:
    """Raise a one-line ``ValueError`` unless ``0 <= lo < hi <= 1``."""
    if not (0.0 <= lo <= 1.0 and 0.0 <= hi <= 1.0):
        raise ValueError(f"--hash-range LO HI must lie in [0, 1], got {lo} {hi}")
    if not lo < hi:
        raise ValueError(f"--hash-range LO HI needs LO < HI, got {lo} {hi}")


def hash_fraction(key: str, seed: int) -> float:
    """``u = sha1("<seed>:<key>")[:8] / 2^64`` in [0, 1]: the per-image number the selection compares."""
    h = hashlib.sha1(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


def in_hash_range(key: str, seed: int, lo: float, hi: float) -> bool:
    """Whether image ``key`` is selected by ``[lo, hi)`` for ``seed``: ``lo <= u < hi``, no upper test when ``hi >= 1``.

    The same ``u`` is compared against both ends, so ranges ``[a, b)`` and ``[b, c)`` never share an image and
    together select exactly what ``[a, c)`` selects.
    """
    if lo <= 0.0 and hi >= 1.0:
        return True
    u = hash_fraction(key, seed)
    return u >= lo and (hi >= 1.0 or u < hi)


def is_selected(key: str, seed: int, fraction: float) -> bool:
    """Whether image ``key`` is in the ``fraction`` subset for ``seed`` (``in_hash_range(key, seed, 0, fraction)``)."""
    return in_hash_range(key, seed, 0.0, fraction)
