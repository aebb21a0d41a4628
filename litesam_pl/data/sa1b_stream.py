"""Streaming SA-1B-format shards into batches: the ``IterableDataset`` and its bad-sample counter.

- :class:`SkipCounter` is the webdataset error handler: it counts, logs a warning and continues.
- :class:`SA1BStream` is the ``IterableDataset``: shards split by node and by worker (or resampled), shuffle buffer,
  per-sample processing (:class:`~litesam_pl.data.sample_processor.SampleProcessor`), batch (``collate_samples``),
  and a fixed number of batches per epoch for training; validation samples split by rank and worker even when there
  are fewer shards than ranks.

Shard URLs, checks and counts live in :mod:`litesam_pl.data.shards`, the per-sample pipeline in
:mod:`litesam_pl.data.sample_processor`; their public names are re-exported here.
"""
from __future__ import annotations

import logging
import multiprocessing
import random
from collections import Counter
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .collate import collate_samples, zeros_batch_tensor
from .sample_processor import IMAGE_EXTENSIONS, SampleProcessor
from .shards import (ShardsError, check_urls, count_samples, epoch_coverage, expand_urls, open_url,
                     shard_sample_counts)

__all__ = [
    "expand_urls",
    "ShardsError",
    "check_urls",
    "count_samples",
    "shard_sample_counts",
    "epoch_coverage",
    "SkipCounter",
    "SampleProcessor",
    "SA1BStream",
    "IMAGE_EXTENSIONS",
]

log = logging.getLogger(__name__)


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
        return {"image": zeros_batch_tensor((B, 3, S, S), torch.uint8),
                "masks": zeros_batch_tensor((B, K, S, S), torch.bool)}

    @staticmethod
    def _count(samples: Iterable[dict], progress: dict) -> Iterator[dict]:
        for sample in samples:
            progress["samples"] += 1
            yield sample

    def _open(self, shards: Iterable[dict]) -> Iterator[dict]:
        for shard in shards:
            try:
                yield {**shard, "stream": open_url(shard["url"])}
            except Exception as e:  # noqa: BLE001 - a bad shard is skipped, counted and logged
                self.counter.add("shard", f"cannot open {shard['url']!r}: {e}")

    def __iter__(self) -> Iterator[dict]:
        from webdataset.filters import shuffle
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
            raw = shuffle(self.shuffle_buffer, min(self.shuffle_buffer, 100),
                          rng=random.Random(int(rng.integers(2**62))))(raw)
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
