"""Streaming SA-1B-format shards: URL expansion, per-sample decoding to training samples, bad-sample skipping.

- :func:`expand_urls` turns shard specs (files, directories, globs, brace patterns ``sa_{000..009}.tar``, ``pipe:``
  commands, fsspec URLs such as ``s3://bucket/sa_{000..999}.tar``) into a list of URLs and fails early and clearly
  on an empty list or a missing local path.
- :class:`SampleProcessor` turns one raw ``{"__key__", "jpg", "json"}`` record into a sample dict (the per-sample half
  of the batch contract in ``docs/contracts.md``): decode, resize-longest-side + flip, K target masks with
  prompts, AutoPPN targets.
- :class:`SkipCounter` is the webdataset error handler: it counts, logs a warning and continues.
- :class:`SA1BStream` is the ``IterableDataset``: shards split by node and by worker (or resampled), shuffle buffer,
  decode, batch (``collate_samples``), and a fixed number of batches per epoch for training; validation samples
  split by rank and worker even when there are fewer shards than ranks.
"""
from __future__ import annotations

import glob
import json
import logging
import multiprocessing
import os
import random
import tarfile
import zlib
from collections import Counter
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence
from urllib.parse import urlparse

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .collate import collate_samples, zeros_batch_tensor
from .prompts import choose_masks, interior_points, noisy_boxes, random_points
from .rle_sample import RunLengths
from .targets import BACKGROUND_MODES, TARGET_MODES, grid_valid, ppn_targets, size_groups
from .transforms import Geometry, decode_image, normalize_pad, reduce_factor

__all__ = [
    "expand_urls",
    "ShardsError",
    "count_samples",
    "shard_sample_counts",
    "epoch_coverage",
    "SkipCounter",
    "SampleProcessor",
    "SA1BStream",
    "IMAGE_EXTENSIONS",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png")
_GLOB_CHARS = set("*?[")


# ---------------------------------------------------------------------------------------------------- shard URLs
def _braceexpand(spec: str) -> list[str]:
    import braceexpand

    return list(braceexpand.braceexpand(spec))


def _is_remote(url: str) -> bool:
    scheme = urlparse(url).scheme
    return url.startswith("pipe:") or (len(scheme) > 1 and scheme != "file")


def _local_path(url: str) -> str:
    return urlparse(url).path if url.startswith("file://") else url


def expand_urls(specs: str | Sequence[str] | None, what: str = "shards") -> list[str]:
    """Shard specs -> shard URLs, in a stable order.

    Each spec is a local ``.tar`` path, a directory (its ``manifest.json`` shard list when present, else its
    ``*.tar`` files), a glob (``data/sa_*.tar``), a brace pattern (``sa_{000000..000009}.tar``), a ``pipe:``
    command or a remote/fsspec URL (``s3://``, ``gs://``, ``http(s)://``, ...; globs on fsspec URLs are expanded
    with fsspec). A string may hold several specs separated by ``::`` (webdataset style).

    Raises:
        ValueError: no shard at all.
        FileNotFoundError: a local path or glob that matches nothing.
    """
    if specs is None:
        raise ValueError(f"no {what} given")
    if isinstance(specs, (str, os.PathLike)):
        specs = [str(specs)]
    urls: list[str] = []
    for spec in specs:
        for part in str(spec).split("::"):
            part = part.strip()
            if not part:
                continue
            for url in _braceexpand(part):
                try:
                    urls.extend(_expand_one(url))
                except (OSError, ValueError) as e:  # name the option the user set (data.train_shards, ...)
                    raise ShardsError(f"{what}: {e}") from e
    if not urls:
        raise ShardsError(f"empty list of {what}: {list(specs)!r}")
    return urls


class ShardsError(FileNotFoundError, ValueError):
    """A shard option that names nothing readable (message: the option, then what is wrong); a
    ``FileNotFoundError`` and a ``ValueError`` for callers that catch either."""


def _expand_one(url: str) -> list[str]:
    if url.startswith("pipe:"):
        return [url]
    if _is_remote(url):
        if _GLOB_CHARS & set(urlparse(url).path):
            import fsspec

            fs, path = fsspec.core.url_to_fs(url)
            found = sorted(fs.glob(path))
            if not found:
                raise FileNotFoundError(f"no shards match {url!r}")
            return [fs.unstrip_protocol(p) for p in found]
        return [url]
    path = os.path.expanduser(_local_path(url))
    if _GLOB_CHARS & set(path):
        found = sorted(p for p in glob.glob(path) if os.path.isfile(p))
        if not found:
            raise FileNotFoundError(f"no shards match the glob {url!r}")
        return found
    if os.path.isdir(path):
        manifest = os.path.join(path, "manifest.json")
        if os.path.isfile(manifest):
            with open(manifest) as f:
                shards = json.load(f).get("shards", [])
            found = [s["url"] if os.path.isabs(s["url"]) else os.path.join(path, s["url"]) for s in shards]
        else:
            found = sorted(glob.glob(os.path.join(path, "*.tar")))
        if not found:
            raise ValueError(f"shard directory {url!r} holds no .tar shards")
        return found
    if not os.path.exists(path):
        raise FileNotFoundError(f"shard not found: {url!r}")
    return [path]


def check_urls(urls: Sequence[str]) -> None:
    """Fail early on local shards that are missing or unreadable and on fsspec URLs whose first shard is missing.

    ``pipe:`` and http(s) URLs are not probed (a bad one is reported by the stream: see :class:`SA1BStream`).
    """
    for url in urls:
        if _is_remote(url):
            continue
        path = _local_path(url)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"shard not found: {url!r}")
        if not os.access(path, os.R_OK):
            raise PermissionError(f"shard not readable: {url!r}")
    remote = [u for u in urls if _is_remote(u) and not u.startswith("pipe:") and urlparse(u).scheme not in
              ("http", "https")]
    if remote:
        import fsspec

        try:
            fs, path = fsspec.core.url_to_fs(remote[0])
        except (ImportError, ValueError) as e:
            raise RuntimeError(f"cannot open {remote[0]!r} with fsspec ({e}); install the matching fsspec backend "
                               "(e.g. s3fs for s3://)") from e
        if not fs.exists(path):
            raise FileNotFoundError(f"shard not found: {remote[0]!r}")


def count_samples(urls: Sequence[str]) -> int | None:
    """Number of samples in the shards (see ``shard_sample_counts``); ``None`` for remote shards."""
    counts = shard_sample_counts(urls)
    return None if counts is None else sum(counts)


def epoch_coverage(counts: Sequence[int], world: int, workers: int, batches_per_epoch: int, batch_size: int) -> dict:
    """What one training epoch reads when shards are split by rank and worker (``SA1BStream``, not resampled).

    Every reader (rank x worker) owns ``urls[rank::world][worker::workers]`` of a per-epoch shard order and must
    deliver its share of ``batches_per_epoch`` batches; one that owns fewer samples than its share starts a second,
    reshuffled pass over all shards (samples read twice this epoch), one that owns more leaves the rest of its
    shards unread until a later epoch. Shard sizes are taken as their mean (exact when all shards have one size).
    Returns ``{"samples", "epoch_samples", "repeated", "unread", "readers", "shards_per_reader": (min, max)}``.
    """
    n, readers = len(counts), max(1, world) * max(1, workers)
    mean = sum(counts) / max(1, n)
    repeated = unread = 0.0
    owned_shards = []
    for rank in range(max(1, world)):
        for w in range(max(1, workers)):
            k = len(range(n)[rank::max(1, world)][w::max(1, workers)])
            owned_shards.append(k)
            nb = batches_per_epoch // max(1, workers) + (1 if w < batches_per_epoch % max(1, workers) else 0)
            need, own = nb * batch_size, k * mean
            repeated += max(0.0, need - own)
            unread += max(0.0, own - need)
    return {"samples": int(sum(counts)), "epoch_samples": int(batches_per_epoch * batch_size * max(1, world)),
            "repeated": int(round(repeated)), "unread": int(round(unread)), "readers": readers,
            "shards_per_reader": (min(owned_shards), max(owned_shards))}


def shard_sample_counts(urls: Sequence[str]) -> list[int] | None:
    """Samples per shard: from ``manifest.json`` files next to them when they list every shard, else by reading
    the tar headers of local shards (uncompressed tars: headers only, member data is seeked over; compressed tars
    are streamed whole); ``None`` for remote shards."""
    by_dir: dict[str, dict[str, int]] = {}
    out: list[int] = []
    for url in urls:
        if _is_remote(url):
            return None
        path = os.path.abspath(_local_path(url))
        d = os.path.dirname(path)
        if d not in by_dir:
            by_dir[d] = {}
            mf = os.path.join(d, "manifest.json")
            if os.path.isfile(mf):
                try:
                    with open(mf) as f:
                        for s in json.load(f).get("shards", []):
                            p = s["url"] if os.path.isabs(s["url"]) else os.path.join(d, s["url"])
                            by_dir[d][os.path.abspath(p)] = int(s["samples"])
                except (OSError, ValueError, KeyError, TypeError):
                    by_dir[d] = {}
        n = by_dir[d].get(path)
        if n is None:
            n = len(_tar_sample_keys(path))
        out.append(n)
    return out


def _tar_sample_keys(path: str) -> set[str]:
    """Keys of the samples (members ``<key>.json``) of a local tar, reading its headers only.

    An uncompressed tar is opened seekable (``"r:"``): tarfile then seeks over member data and reads one 512-byte
    header block per member (plus buffer read-ahead), not the whole file. A compressed tar (gzip, bz2, xz) cannot
    be seeked without decompressing everything before the target, so it is streamed (``"r|*"``), which reads and
    decompresses every byte.
    """
    keys: set[str] = set()
    with open(path, "rb") as f:
        try:
            tf = tarfile.open(fileobj=f, mode="r:")
        except tarfile.ReadError:  # not a plain tar: compressed (or broken; the stream then raises)
            f.seek(0)
            tf = tarfile.open(fileobj=f, mode="r|*")
        with tf:
            for info in tf:
                if info.isreg():
                    base = os.path.basename(info.name)
                    if "." in base and base.split(".", 1)[1].lower() == "json":
                        keys.add(info.name.rsplit(".", 1)[0])
    return keys


def _open_url(url: str):
    """A readable binary stream for a shard URL: local files, ``pipe:``, http(s)/gs (webdataset) or fsspec."""
    from webdataset.gopen import gopen, gopen_schemes

    scheme = urlparse(url).scheme
    if url.startswith("pipe:") or not _is_remote(url) or scheme in gopen_schemes:
        return gopen(url, "rb")
    import fsspec

    return fsspec.open(url, "rb").open()


# ---------------------------------------------------------------------------------------------------- skip counter
class SkipCounter:
    """Counts bad samples/shards, logs a warning for each and tells webdataset to continue.

    ``count`` is local to the process (each DataLoader worker has its own copy); ``total`` is shared by all the
    workers of every loader made with this counter (a ``multiprocessing.Value``), readable from the main process.
    """

    def __init__(self, name: str = "data"):
        self.name = name
        self.count = 0
        self.reasons: Counter[str] = Counter()
        self._total = multiprocessing.Value("q", 0)

    @property
    def total(self) -> int:
        return int(self._total.value)

    def add(self, reason: str, detail: str = "") -> None:
        self.count += 1
        self.reasons[reason] += 1
        with self._total.get_lock():
            self._total.value += 1
        log.warning("%s: skipped a bad sample (%s) %s [%d skipped by this worker]", self.name, reason,
                    detail[:300], self.count)

    def __call__(self, exn: BaseException) -> bool:
        """webdataset handler: count, warn, continue."""
        self.add(type(exn).__name__, str(exn))
        return True


# ---------------------------------------------------------------------------------------------------- per sample
class _PhaseClock:
    """Adds the process CPU time since the previous call to ``acc[name]`` (``SampleProcessor.phase_times``)."""

    __slots__ = ("acc", "t")

    def __init__(self, acc: dict):
        self.acc, self.t = acc, time.process_time()

    def __call__(self, name: str) -> None:
        t = time.process_time()
        self.acc[name] = self.acc.get(name, 0.0) + (t - self.t)
        self.t = t


def _no_tick(name: str) -> None:
    return None


@dataclass
class SampleProcessor:
    """Raw SA-1B record -> training sample (see ``docs/contracts.md``, "Samples").

    Args:
        img_size: padded input side ``S``.
        max_masks: ``K`` target masks (and prompts) per image.
        ppn_stride: AutoPPN grid stride ``s``; ``P = S // s``.
        train: random mask choice, noisy boxes, uniform points, flips and scale jitter; else deterministic
            (masks chosen by a hash of the key, exact boxes, most interior points, no augmentation).
        box_noise, box_noise_max: SAM box noise: std as a fraction of the box side, clip in input pixels.
        hflip_prob: probability of a horizontal flip (train only).
        scale_jitter: (min, max) factor on the resized longest side, ``0 < min <= max <= 1`` (train only; the
            shrunk image is padded, nothing is cropped).
        target_mode: ``"distance"`` (paper) or ``"gaussian"`` (CenterNet baseline).
        ppn_background: ``"negative"`` (cells outside every mask are negatives of the point maps: the paper
            recipes) or ``"ignore"`` (SA-1B's unlabeled "stuff" excluded; see ``litesam_pl.data.targets``).
        num_groups: 3 size groups or 1 (grouping off).
        seed: mixed into the deterministic (validation) choices.
        phase_times: a dict to accumulate process CPU seconds per phase into (``parse``, ``decode``, ``resize``,
            ``rle``, ``grid``, ``targets``, ``masks``, ``prompts``, ``normalize``; ``benchmarks.dataloader
            --phases``), or None (default: no timing). Only the process running the processor sees it (the
            main process when ``num_workers=0``).
    """

    img_size: int = 640
    max_masks: int = 16
    ppn_stride: int = 8
    train: bool = True
    box_noise: float = 0.1
    box_noise_max: float = 20.0
    hflip_prob: float = 0.5
    scale_jitter: tuple[float, float] = (1.0, 1.0)
    target_mode: str = "distance"
    ppn_background: str = "negative"
    num_groups: int = 3
    seed: int = 0
    phase_times: dict | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.img_size % self.ppn_stride:
            raise ValueError(f"img_size {self.img_size} must be a multiple of ppn_stride {self.ppn_stride}")
        if self.max_masks < 1:
            raise ValueError(f"max_masks must be >= 1, got {self.max_masks}")
        lo, hi = (float(v) for v in self.scale_jitter)
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"scale_jitter must satisfy 0 < min <= max <= 1, got {self.scale_jitter}")
        self.scale_jitter = (lo, hi)
        if self.target_mode not in TARGET_MODES:
            raise ValueError(f"target_mode must be one of {TARGET_MODES}, got {self.target_mode!r}")
        if self.ppn_background not in BACKGROUND_MODES:
            raise ValueError(f"ppn_background must be one of {BACKGROUND_MODES}, got {self.ppn_background!r}")
        if self.num_groups not in (1, 3):
            raise ValueError(f"num_groups must be 1 or 3, got {self.num_groups}")

    def __call__(self, raw: dict[str, Any], rng: np.random.Generator,
                 out: dict[str, torch.Tensor] | None = None, out_zeroed: bool = False) -> dict[str, Any]:
        """Process one record. ``out`` may hold preallocated ``image`` float32 ``[3, S, S]`` and ``masks`` bool
        ``[K, S, S]`` tensors (slots of a batch) to write those two into instead of allocating them;
        ``out_zeroed`` says they are all zeros already (fresh, lazily zeroed memory: then only the pixels that
        need a value are touched)."""
        tick = _PhaseClock(self.phase_times) if self.phase_times is not None else _no_tick
        key = str(raw.get("__key__", "?"))
        img_bytes = next((raw[e] for e in IMAGE_EXTENSIONS if e in raw), None)
        if img_bytes is None:
            raise ValueError(f"{key}: no image member ({'/'.join(IMAGE_EXTENSIONS)})")
        if "json" not in raw:
            raise ValueError(f"{key}: no json member")
        try:
            meta = json.loads(raw["json"])
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"{key}: bad json: {e}") from e
        if not isinstance(meta, dict) or not isinstance(meta.get("annotations"), list):
            raise ValueError(f"{key}: json has no 'annotations' list")
        anns = meta["annotations"]
        if not anns:
            raise ValueError(f"{key}: no annotations")
        try:
            segs = [a["segmentation"] for a in anns]
            info = meta.get("image") or {}
            if "height" in info and "width" in info:
                H, W = int(info["height"]), int(info["width"])
            else:
                H, W = (int(v) for v in segs[0]["size"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{key}: malformed annotation: {e!r}") from e
        if not self.train:
            rng = np.random.default_rng([self.seed, zlib.crc32(key.encode())])
        tick("parse")

        # geometry + image
        if self.train:
            scale = float(rng.uniform(*self.scale_jitter)) if self.scale_jitter[0] < 1.0 else 1.0
            hflip = bool(rng.random() < self.hflip_prob) if self.hflip_prob > 0 else False
        else:
            scale, hflip = 1.0, False
        geom = Geometry.make((H, W), self.img_size, scale, hflip)
        f = reduce_factor(H, W, max(geom.input_hw))
        img = decode_image(img_bytes, reduce=f)
        exp_h, exp_w = -(-H // f), -(-W // f)
        if abs(img.shape[0] - exp_h) > 1 or abs(img.shape[1] - exp_w) > 1:
            if f > 1:  # a jpg whose header disagrees with the json (or not reducible): decode fully and re-check
                img = decode_image(img_bytes)
                exp_h, exp_w = H, W
            if abs(img.shape[0] - exp_h) > 1 or abs(img.shape[1] - exp_w) > 1:
                raise ValueError(f"{key}: image is {img.shape[1]}x{img.shape[0]} but the json says {W}x{H}")
        tick("decode")
        img = geom.image(img)
        tick("resize")

        # all masks: run lengths, boxes, areas, size groups
        rl = RunLengths(segs, H, W)
        xywh_all = rl.boxes()
        xywh = xywh_all
        areas = rl.areas()
        keep = areas > 0
        if not keep.any():
            raise ValueError(f"{key}: all masks are empty")
        idx_keep = np.flatnonzero(keep)
        xywh, areas = xywh[idx_keep], areas[idx_keep]
        boxes_in = geom.boxes(xywh)
        groups = size_groups(xywh[:, [3, 2]], (H, W), self.num_groups)
        tick("rle")

        # every mask on the AutoPPN grid (cell centres), then the targets
        s, S = self.ppn_stride, self.img_size
        p = S // s
        rv, cv = grid_valid(geom.input_hw, S, s)
        grid = np.zeros((len(idx_keep), p, p), bool)
        if rv and cv:
            grid[:, :rv, :cv] = rl.sample(geom.src_rows((np.arange(rv) + 0.5) * s),
                                          geom.src_cols((np.arange(cv) + 0.5) * s), idx_keep, boxes=xywh_all)
        tick("grid")
        tg = ppn_targets(grid, boxes_in, areas, groups, geom.input_hw, S, s, self.num_groups, self.target_mode,
                         self.ppn_background)
        tick("targets")

        # K target masks at input resolution
        K = self.max_masks
        if out is not None and "masks" in out:
            masks_t = out["masks"]
            if not out_zeroed:
                masks_t.numpy().fill(False)  # numpy: no torch thread pool in the loader
        else:
            masks_t = torch.from_numpy(np.zeros((K, S, S), bool))
        masks = masks_t.numpy()
        chosen: list[int] = []
        prow, pcol = geom.pixel_rows(), geom.pixel_cols()  # monotone: rows ascending, columns descending if flipped
        rows_step, cols_step = _unit_step(prow), _unit_step(pcol)
        pcol_up = pcol if pcol[0] <= pcol[-1] else pcol[::-1]
        for j in choose_masks(len(idx_keep), len(idx_keep), rng):
            if len(chosen) == K:
                break
            x, y, bw, bh = (int(round(v)) for v in xywh[j])
            # output rows/columns whose source pixel lies in the box: one contiguous range each
            r0, r1 = (int(v) for v in np.searchsorted(prow, (y, y + bh), "left"))
            c0, c1 = (int(v) for v in np.searchsorted(pcol_up, (x, x + bw), "left"))
            if r0 >= r1 or c0 >= c1:
                continue
            if pcol_up is not pcol:
                c0, c1 = pcol.size - c1, pcol.size - c0
            window = rl.decode_window(int(idx_keep[j]), x, x + bw)  # [H, bw]
            rsrc = slice(int(prow[r0]), int(prow[r1 - 1]) + 1) if rows_step == 1 else prow[r0:r1]
            a0, a1 = int(pcol[c0]) - x, int(pcol[c1 - 1]) - x
            csrc = (slice(a0, a1 + 1) if cols_step == 1 else slice(a0, a1 - 1 if a1 > 0 else None, -1)
                    if cols_step == -1 else pcol[c0:c1] - x)
            crop = window[rsrc][:, csrc]
            if not crop.any():
                continue
            masks[len(chosen), r0:r1, c0:c1] = crop.view(bool)
            chosen.append(int(j))
        n = len(chosen)
        tick("masks")
        gt_boxes = np.zeros((K, 4), np.float32)
        boxes = np.zeros((K, 4), np.float32)
        points = np.zeros((K, 1, 2), np.float32)
        if n:
            gt_boxes[:n] = boxes_in[chosen]
            if self.train:
                boxes[:n] = noisy_boxes(gt_boxes[:n], geom.input_hw, rng, self.box_noise, self.box_noise_max)
                points[:n] = random_points(masks[:n], gt_boxes[:n], rng)
            else:
                boxes[:n] = noisy_boxes(gt_boxes[:n], geom.input_hw, None)
                points[:n] = interior_points(masks[:n], gt_boxes[:n])
        valid = np.zeros(K, bool)
        valid[:n] = True
        tick("prompts")
        image = normalize_pad(img, S, out=None if out is None else out.get("image"), out_zeroed=out_zeroed)
        tick("normalize")
        return {
            "image": image,
            "masks": masks_t,
            "boxes": torch.from_numpy(boxes),
            "gt_boxes": torch.from_numpy(gt_boxes),
            "points": torch.from_numpy(points),
            "point_labels": torch.ones(K, 1, dtype=torch.int64),
            "valid": torch.from_numpy(valid),
            "ppn_heatmap": torch.from_numpy(tg["heatmap"]),
            "ppn_boxes": torch.from_numpy(tg["boxes"]),
            "ppn_box_weight": torch.from_numpy(tg["box_weight"]),
            "ppn_ignore": torch.from_numpy(tg["ignore"]),
            "all_boxes": torch.from_numpy(boxes_in),
            "original_size": torch.tensor([H, W], dtype=torch.int64),
            "input_size": torch.tensor(geom.input_hw, dtype=torch.int64),
            "key": key,
        }


def _unit_step(ix: np.ndarray) -> int:
    """+1 / -1 when the integer array ``ix`` goes up / down by exactly one at every step (then a slice reads the
    same elements as fancy indexing with it, without the copy), else 0."""
    if ix.size < 2:
        return 1
    d = np.diff(ix)
    return 1 if (d == 1).all() else -1 if (d == -1).all() else 0


# ---------------------------------------------------------------------------------------------------- the stream
def _worker_info() -> tuple[int, int, int, int]:
    """(rank, world_size, worker, num_workers), as webdataset sees them."""
    from webdataset.utils import pytorch_worker_info

    return pytorch_worker_info()


class SA1BStream(IterableDataset):
    """Batches of SA-1B samples from tar shards (an ``IterableDataset`` yielding collated batches).

    Args:
        urls: shard URLs (see :func:`expand_urls`).
        processor: per-sample :class:`SampleProcessor`.
        batch_size: samples per batch.
        counter: :class:`SkipCounter` shared with the data module.
        train: shuffle shards (per epoch) and samples, loop over the shards forever and stop after
            ``batches_per_epoch``; else read this rank's share of the samples once, in order, keeping a partial
            last batch (see :meth:`eval_split`: every rank gets samples even from a single shard).
        shuffle_buffer: sample shuffle buffer (train).
        resampled: draw shards with replacement independently in every worker (multi-node training on many
            shards); also used automatically when a worker would get no shard of its own.
        batches_per_epoch: batches per epoch on this rank (train); ``None`` reads the shards once.
        seed: seeds shard order (same on every rank and worker) and sample shuffling.
    """

    def __init__(
        self,
        urls: Sequence[str],
        processor: SampleProcessor,
        batch_size: int,
        counter: SkipCounter,
        train: bool = True,
        shuffle_buffer: int = 1000,
        resampled: bool = False,
        batches_per_epoch: int | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if not urls:
            raise ValueError("SA1BStream needs at least one shard URL")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.urls = list(urls)
        self.processor = processor
        self.batch_size = int(batch_size)
        self.counter = counter
        self.train = bool(train)
        self.shuffle_buffer = int(shuffle_buffer)
        self.resampled = bool(resampled)
        self.batches_per_epoch = batches_per_epoch
        self.seed = int(seed)
        self.epoch = 0
        self.max_bad_in_a_row = 1000

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.batches_per_epoch is None:
            raise TypeError("this stream has no fixed length (validation reads its shards once)")
        return int(self.batches_per_epoch)

    # -- shard order ------------------------------------------------------------------------------------------
    def eval_split(self, rank: int, world: int, worker: int, nworkers: int) -> tuple[list[str], int, int]:
        """Validation: ``(shards this reader opens, readers, reader)``; a reader is one worker of one rank.

        With at least as many shards as readers (``world * nworkers``), shards are split by rank, then by worker,
        and the reader keeps all their samples (``readers == 1``). With fewer shards (e.g. the documented val set:
        one shard for 8-128 ranks), every reader opens every shard and keeps sample ``j`` of shard ``s`` when
        ``(s + j) % readers == reader``: each sample once over all ranks and workers, every rank within one
        sample per worker of the others, and a shard failing to open on one reader does not shift the others.
        Either way the split only balances the work: validation does no collective op per step, so ranks may run
        different numbers of batches (see ``LiteSAMTaskBase``).
        """
        readers = world * nworkers
        if len(self.urls) >= readers:
            return self.urls[rank::world][worker::nworkers], 1, 0
        return list(self.urls), readers, rank * nworkers + worker

    def _keep(self, raw: Iterable[dict], readers: int, reader: int) -> Iterator[dict]:
        """The samples of this reader (see :meth:`eval_split`); all of them when ``readers == 1``."""
        if readers == 1:
            yield from raw
            return
        pos = {u: i for i, u in enumerate(self.urls)}
        url, j = None, 0
        for sample in raw:
            u = sample.get("__url__")
            if u != url:
                url, j = u, 0
            if (pos.get(u, 0) + j) % readers == reader:
                yield sample
            j += 1

    def _shards(self, rank: int, world: int, worker: int, nworkers: int, progress: dict) -> Iterator[dict]:
        urls = self.urls
        if not self.train:
            yield from ({"url": u} for u in self.eval_split(rank, world, worker, nworkers)[0])
            return
        mine = urls[rank::world][worker::nworkers] if not self.resampled else []
        if not self.resampled and not mine:
            log.warning("%d shards for %d ranks x %d workers: worker %d of rank %d resamples shards instead",
                        len(urls), world, nworkers, worker, rank)
        rng = random.Random(hash((self.seed, self.epoch, rank, worker, torch.initial_seed())))
        n_pass = 0
        last = -1
        while True:
            if mine:  # a fresh shard order per pass, identical on every rank/worker, then this worker's share
                order = list(urls)
                random.Random(hash((self.seed, self.epoch, n_pass))).shuffle(order)
                mine = order[rank::world][worker::nworkers]
                batch_urls = mine
            else:
                batch_urls = [rng.choice(urls) for _ in range(max(len(urls), 8))]
            if n_pass > 0 and progress["samples"] == last:
                raise RuntimeError(f"no readable sample in a whole pass over {len(batch_urls)} shard(s) such as "
                                   f"{batch_urls[0]!r}: see the warnings above")
            last = progress["samples"]
            n_pass += 1
            yield from ({"url": u} for u in batch_urls)

    def _buffers(self) -> dict[str, torch.Tensor]:
        """Batch tensors for the two big per-sample arrays, written in place by the processor."""
        B, K, S = self.batch_size, self.processor.max_masks, self.processor.img_size
        return {"image": zeros_batch_tensor((B, 3, S, S), torch.float32),
                "masks": zeros_batch_tensor((B, K, S, S), torch.bool)}

    @staticmethod
    def _count(samples: Iterable[dict], progress: dict) -> Iterator[dict]:
        for sample in samples:
            progress["samples"] += 1
            yield sample

    def _open(self, shards: Iterable[dict]) -> Iterator[dict]:
        for shard in shards:
            try:
                yield {**shard, "stream": _open_url(shard["url"])}
            except Exception as e:  # noqa: BLE001 - a bad shard is skipped, counted and logged
                self.counter.add("shard", f"cannot open {shard['url']!r}: {e}")

    def __iter__(self) -> Iterator[dict]:
        from webdataset.filters import _shuffle
        from webdataset.tariterators import group_by_keys, tar_file_expander

        # (no cv2.setNumThreads here: in a forked worker it deadlocks when the parent already used OpenCV's pool)
        info = get_worker_info()
        rank, world, worker, nworkers = _worker_info()
        base_seed = info.seed if info is not None else torch.initial_seed()
        rng = np.random.default_rng([self.seed, self.epoch, rank, worker, base_seed % (2**63)])
        progress = {"samples": 0}

        files = tar_file_expander(self._open(self._shards(rank, world, worker, nworkers, progress)),
                                  handler=self.counter)
        raw = self._count(group_by_keys(files, handler=self.counter), progress)
        mine: list[str] = []
        if not self.train:  # this reader's shards, and its share of their samples
            mine, readers, reader = self.eval_split(rank, world, worker, nworkers)
            raw = self._keep(raw, readers, reader)
        if self.train and self.shuffle_buffer > 1:
            raw = _shuffle(raw, self.shuffle_buffer, min(self.shuffle_buffer, 100),
                           rng=random.Random(int(rng.integers(2**62))))
        n_batches = None
        if self.train and self.batches_per_epoch is not None:
            nb = int(self.batches_per_epoch)
            n_batches = nb // nworkers + (1 if worker < nb % nworkers else 0)
            if n_batches == 0:
                return
        batch: list[dict] = []
        made = 0
        bad_in_a_row = 0
        buffers, dirty = self._buffers(), False
        for sample in raw:
            i = len(batch)
            try:
                out = self.processor(sample, rng, {k: v[i] for k, v in buffers.items()}, out_zeroed=not dirty)
            except Exception as e:  # noqa: BLE001 - a bad sample is skipped, counted and logged
                self.counter.add(type(e).__name__, f"{sample.get('__key__', '?')} in {sample.get('__url__', '?')}: {e}")
                dirty = True  # slot i may hold part of the failed sample: zero it before reuse
                bad_in_a_row += 1
                if bad_in_a_row >= self.max_bad_in_a_row:
                    raise RuntimeError(f"{bad_in_a_row} bad samples in a row (last: {e}); is this SA-1B data?") from e
                continue
            bad_in_a_row, dirty = 0, False
            out["num_skipped"] = self.counter.count
            batch.append(out)
            if len(batch) == self.batch_size:
                yield collate_samples(batch, buffers)
                batch, buffers = [], self._buffers()
                made += 1
                if n_batches is not None and made >= n_batches:
                    return
        if batch and not self.train:
            yield collate_samples(batch, buffers)
        if not self.train and progress["samples"] == 0 and mine:
            raise RuntimeError(f"no readable sample in {mine}: see the warnings above")
        elif self.train and n_batches is not None and made < n_batches:
            raise RuntimeError("the training stream ended early (no readable samples?)")
