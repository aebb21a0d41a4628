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
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import io
import json
import multiprocessing as mp
import os
import re
import sys
import tarfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np
from PIL import Image

from litesam_pl.data.rle import decode_rle, encode_mask, resize_mask, rle_to_bbox
from litesam_pl.data.transforms import PIL_HIGH_BIT_MODES, pil_array, to_rgb8

from ._common import TMP_SUFFIX, ShardWriter, atomic_write, dump_json, is_jpeg, write_manifest

__all__ = ["PrepConfig", "find_inputs", "iter_input", "hash_fraction", "in_hash_range", "is_selected", "process_sample",
           "prepare_input", "prepare_sa1b", "check_disjoint", "SkipSample", "assign_inputs", "partial_path"]

STATE_DIR = "_state"
JOBS_DIR = "_jobs"  # partial manifests of --num-jobs runs


@dataclass(frozen=True)
class PrepConfig:
    """Everything that changes the bytes of the output shards (the state files pin it)."""

    max_side: int = 1024
    hash_lo: float = 0.0  # keep an image when hash_lo <= u < hash_hi (see ``in_hash_range``)
    hash_hi: float = 1.0
    seed: int = 0
    shard_size: int = 1000
    quality: int = 90

    def __post_init__(self):
        if self.max_side < 1:
            raise ValueError(f"max_side must be >= 1, got {self.max_side}")
        check_hash_range(self.hash_lo, self.hash_hi)
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be in [1, 100], got {self.quality}")


def check_hash_range(lo: float, hi: float) -> None:
    """Raise a one-line ``ValueError`` unless ``0 <= lo < hi <= 1``."""
    if not (0.0 <= lo <= 1.0 and 0.0 <= hi <= 1.0):
        raise ValueError(f"--hash-range LO HI must lie in [0, 1], got {lo} {hi}")
    if not lo < hi:
        raise ValueError(f"--hash-range LO HI needs LO < HI, got {lo} {hi}")


class SkipSample(Exception):
    """A sample that cannot be used; ``reason`` is the manifest's ``skipped`` key."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


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
    stems = Counter(_stem(p) for p in found)
    dup = [s for s, n in stems.items() if n > 1]
    if dup:
        raise ValueError(f"inputs with the same name would write the same shards: {dup[:5]}")
    return found


def _stem(p: Path) -> str:
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


def partial_path(out: str | Path, job_index: int, num_jobs: int) -> Path:
    """Where job ``job_index`` of ``num_jobs`` writes its partial manifest: ``out/_jobs/job-<I>-of-<N>.json``."""
    return Path(out) / JOBS_DIR / f"job-{job_index:05d}-of-{num_jobs:05d}.json"


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


# ------------------------------------------------------------------------------------------------ one sample
def decode_image(data: bytes) -> np.ndarray:
    """Decode an image to RGB ``uint8 [H, W, 3]``; raises ``SkipSample('corrupt_image')`` (also on truncation)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode in PIL_HIGH_BIT_MODES:  # 16-bit: the top 8 bits, as every reader (transforms.to_rgb8)
                arr = to_rgb8(pil_array(im))
            else:
                arr = np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
        raise SkipSample("corrupt_image", str(e)) from e
    if is_jpeg(data) and data.rstrip(b"\x00\n\r ")[-2:] != b"\xff\xd9":
        raise SkipSample("corrupt_image", "jpeg without end-of-image marker (truncated)")
    return arr


def resized_hw(h: int, w: int, max_side: int) -> tuple[int, int]:
    """Size after shrinking the long side to ``max_side`` (SAM's ResizeLongestSide rounding); never upscales."""
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return h, w
    return int(h * scale + 0.5), int(w * scale + 0.5)


def process_sample(jpg: bytes | None, js: bytes | None, cfg: PrepConfig, stats: Counter | None = None) -> tuple[bytes, bytes]:
    """Check, resize and re-encode one SA-1B sample; returns ``(jpg bytes, json bytes)`` or raises ``SkipSample``.

    ``stats`` (if given) counts per-mask events (``masks_dropped_empty``).
    """
    if js is None:
        raise SkipSample("missing_json")
    if jpg is None:
        raise SkipSample("missing_image")
    try:
        rec = json.loads(js)
        image, anns = rec["image"], rec["annotations"]
        h0, w0 = int(image["height"]), int(image["width"])
        if not isinstance(anns, list):
            raise TypeError("annotations is not a list")
    except Exception as e:
        raise SkipSample("bad_json", str(e)) from e
    if not anns:
        raise SkipSample("no_masks")
    img = decode_image(jpg)
    if img.shape[:2] != (h0, w0):
        raise SkipSample("image_size_mismatch", f"jpg {img.shape[:2]} vs json {(h0, w0)}")
    for a in anns:
        seg = a.get("segmentation") if isinstance(a, dict) else None
        if not isinstance(seg, dict) or "size" not in seg or "counts" not in seg:
            raise SkipSample("bad_json", "annotation without an RLE segmentation")
        if list(seg["size"]) != [h0, w0]:
            raise SkipSample("rle_size_mismatch", f"rle {seg['size']} vs image {[h0, w0]}")

    h, w = resized_hw(h0, w0, cfg.max_side)
    sx, sy = w / w0, h / h0
    out_anns = []
    for a in anns:
        try:
            m = decode_rle(a["segmentation"])
        except ValueError as e:
            raise SkipSample("bad_rle", str(e)) from e
        if (h, w) != (h0, w0):
            m = resize_mask(m, (h, w), "area")
        area = int(m.sum())
        if area == 0:
            if stats is not None:
                stats["masks_dropped_empty"] += 1
            continue
        rle = encode_mask(m)
        b = dict(a)
        b["segmentation"] = rle
        b["bbox"] = rle_to_bbox(rle)
        b["area"] = area
        if "point_coords" in a:
            b["point_coords"] = [[float(p[0]) * sx, float(p[1]) * sy] for p in a["point_coords"]]
        if "crop_box" in a:
            x, y, bw, bh = (float(v) for v in a["crop_box"])
            b["crop_box"] = [x * sx, y * sy, bw * sx, bh * sy]
        out_anns.append(b)
    if not out_anns:
        raise SkipSample("no_masks", "every mask vanished at the new size")

    if (h, w) == (h0, w0) and is_jpeg(jpg):
        out_jpg = jpg
    else:
        if (h, w) != (h0, w0):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        ok, enc = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, cfg.quality])
        if not ok:
            raise RuntimeError("cv2.imencode failed")
        out_jpg = enc.tobytes()
    out_rec = dict(rec)
    out_rec["image"] = {**image, "width": w, "height": h}
    out_rec["annotations"] = out_anns
    return out_jpg, dump_json(out_rec)


# ------------------------------------------------------------------------------------------------ one input
def _state_path(out: Path, stem: str) -> Path:
    return out / STATE_DIR / f"{stem}.json"


def _load_state(out: Path, stem: str, cfg: PrepConfig) -> dict | None:
    p = _state_path(out, stem)
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


def _shard_ok(out: Path, shard: dict) -> bool:
    p = out / shard["url"]
    return p.is_file() and p.stat().st_size == shard["bytes"]


def prepare_input(path: Path, out: Path, cfg: PrepConfig, progress: Callable[[int], None] | None = None) -> dict:
    """Turn one input tar/folder into shards ``out/<stem>-<k>.tar``; returns its finished state dict.

    Resumes from ``out/_state/<stem>.json``: finished inputs are skipped; otherwise processing restarts at the
    first shard that is missing (earlier shards are kept as they are).
    """
    path, out = Path(path), Path(out)
    stem = _stem(path)
    (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f"{glob.escape(stem)}-*.tar{TMP_SUFFIX}"):
        stale.unlink()  # left by an interrupted run; this worker owns the stem
    state = _load_state(out, stem, cfg)
    if state and state.get("complete") and all(_shard_ok(out, s) for s in state["shards"]):
        if progress:
            progress(state["records"])
        return state

    # restart point: the first shard whose file is missing or not of the recorded size
    kept: list[dict] = []
    if state:
        for s in state["shards"]:
            if not _shard_ok(out, s):
                break
            kept.append(s)
    if kept:
        last = kept[-1]
        start = last["end"]
        skipped = Counter(last["skipped_after"])
        not_selected = last["not_selected_after"]
        stats = Counter(last["stats_after"])
    else:
        start, skipped, not_selected, stats = 0, Counter(), 0, Counter()

    shards = list(kept)
    writer: ShardWriter | None = None
    input_errors: list[str] = []
    idx = -1

    def save(complete: bool, records: int) -> dict:
        st = {"config": asdict(cfg), "input": str(path), "shards": shards, "complete": complete, "records": records,
              "skipped": dict(skipped), "not_selected": not_selected, "stats": dict(stats)}
        atomic_write(_state_path(out, stem), json.dumps(st, indent=1).encode())
        return st

    def flush(end: int) -> None:
        nonlocal writer
        info = writer.close()
        writer = None
        shards.append({**info, "end": end, "skipped_after": dict(skipped), "not_selected_after": not_selected,
                       "stats_after": dict(stats)})
        save(False, end)

    pending = 0
    try:
        for idx, (key, jpg, js) in enumerate(iter_input(path, on_error=input_errors.append)):
            pending += 1
            if idx < start:
                continue
            if progress and pending >= 16:
                progress(pending)
                pending = 0
            if not in_hash_range(key, cfg.seed, cfg.hash_lo, cfg.hash_hi):
                not_selected += 1
                continue
            try:
                sample = process_sample(jpg, js, cfg, stats)
            except SkipSample as e:
                skipped[e.reason] += 1
                continue
            if writer is None:
                writer = ShardWriter(out / f"{stem}-{len(shards):06d}.tar")
            writer.write(key, *sample)
            if writer.samples == cfg.shard_size:
                flush(idx + 1)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    records = idx + 1
    if writer is not None:
        flush(records)
    for reason in input_errors:
        skipped[reason] += 1
    if progress and pending:
        progress(pending)
    return save(True, records)


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
    if fraction is not None and hash_range is not None:
        raise ValueError("give --fraction or --hash-range, not both")
    if fraction is not None:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        hash_range = (0.0, float(fraction))
    lo, hi = (0.0, 1.0) if hash_range is None else (float(hash_range[0]), float(hash_range[1]))
    cfg = PrepConfig(max_side=max_side, hash_lo=lo, hash_hi=hi, seed=seed, shard_size=shard_size, quality=quality)
    all_inputs = find_inputs(src)
    inputs = assign_inputs(all_inputs, num_jobs, job_index)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for p in inputs:  # fail early on a settings mismatch, before any work
        _load_state(out, _stem(p), cfg)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=None, unit="img", desc="sa1b", file=sys.stderr)
    states: list[dict] = []
    if workers <= 1 or len(inputs) <= 1:
        for p in inputs:
            try:
                states.append(prepare_input(p, out, cfg, progress=bar.update if bar is not None else None))
            except (tarfile.TarError, OSError) as e:
                states.append({"input": str(p), "error": f"{type(e).__name__}: {e}"})
            if bar is not None:
                bar.set_postfix(inputs=f"{len(states)}/{len(inputs)}")
    else:
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
    if bar is not None:
        bar.close()

    args = {"src": [str(s) for s in src], **asdict(cfg), "workers": workers}
    if num_jobs > 1:
        return _write_partial(out, args, all_inputs, inputs, states, num_jobs, job_index)
    shards, skipped, extra = manifest_fields(states)
    write_manifest(out, shards, skipped, args, hash_range=[cfg.hash_lo, cfg.hash_hi], **extra)
    return json.loads((out / "manifest.json").read_text())


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


def _write_partial(out: Path, args: dict, all_inputs: Sequence[Path], inputs: Sequence[Path], states: list[dict],
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
    path = partial_path(out, job_index, num_jobs)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(partial, indent=1) + "\n").encode("utf-8"))
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


def summary(manifest: dict) -> str:
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


class _DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, except the unset ones (``None`` / ``False``: the help says)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def main(argv: Sequence[str] | None = None) -> int:
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
    print(summary(manifest))
    if num_jobs > 1:
        print(f"partial manifest (job {job_index} of {num_jobs}): {partial_path(a.out, job_index, num_jobs)}; "
              f"when all {num_jobs} jobs are done: python -m data_prep.sa1b --merge {a.out}")
    else:
        print(f"manifest: {Path(a.out) / 'manifest.json'}")
    return 1 if manifest.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
