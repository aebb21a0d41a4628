"""``SA1BDataModule``: SA-1B-format tar shards -> batches of ``docs/contracts.md`` ("Samples"), with webdataset.

The one module of ``litesam_pl.data`` that knows Lightning. Training streams shards split by node and by worker
(or resampled), shuffles samples in a buffer, augments (flip, scale jitter) and stops after a fixed number of
batches per epoch so that every rank runs the same number of steps; validation reads every sample exactly once
over all ranks (split by shard, or by sample when there are fewer shards than ranks x workers), in order, without
augmentation and with deterministic prompts. Test (``litesam test``) and predict (``litesam predict``) read their
shards exactly as validation does.
"""
from __future__ import annotations

import logging
import tarfile
from typing import Any, Callable, Iterator, Optional, Union

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from .collate import batch_shm_bytes
from .sa1b_stream import SA1BStream, SampleProcessor, SkipCounter, check_urls, expand_urls, shard_sample_counts, epoch_coverage
from .targets import TARGET_MODES

__all__ = ["SA1BDataModule"]

log = logging.getLogger(__name__)


def single_thread_opencv() -> None:
    """One OpenCV thread in every process of a loader with workers.

    OpenCV otherwise keeps a pool of as many threads as cores in every worker, so ``num_workers`` workers (times the
    ranks of a node) oversubscribe the CPUs. The setting is made in the main process *before* the workers fork (they
    inherit it): calling ``cv2.setNumThreads`` inside a forked worker deadlocks when the parent's pool was running
    (seen in the test suite). With workers, the main process decodes no images, so it loses nothing.
    """
    import cv2

    cv2.setNumThreads(1)


class _EpochLoader(DataLoader):
    """A DataLoader that tells its stream the epoch before each pass (fresh shard order and shuffling)."""

    def __init__(self, *args, epoch_fn: Callable[[], int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._epoch_fn = epoch_fn
        self._passes = 0

    def __iter__(self) -> Iterator[Any]:
        epoch = self._epoch_fn() if self._epoch_fn is not None else None
        self.dataset.set_epoch(self._passes if epoch is None else epoch)
        self._passes += 1
        return super().__iter__()


def _check_options(batch_size: int, num_workers: int, target_mode: str, epoch_samples: Optional[int]) -> None:
    """Raise ``ValueError`` on the ``SA1BDataModule`` options ``SampleProcessor`` does not check itself."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    if target_mode not in TARGET_MODES:
        raise ValueError(f"target_mode must be one of {TARGET_MODES}, got {target_mode!r}")
    if epoch_samples is not None and epoch_samples < 1:
        raise ValueError(f"epoch_samples must be >= 1, got {epoch_samples}")


def _processors(max_masks: int, val_max_masks: Optional[int], hflip_prob: float, scale_jitter: tuple[float, float],
                **common: Any) -> tuple[SampleProcessor, SampleProcessor]:
    """The training processor (augmented, random prompts) and the evaluation one (validation, test, predict: no
    augmentation, deterministic prompts, ``val_max_masks`` masks, default ``max_masks``); ``common``: the options
    both share."""
    train = SampleProcessor(train=True, max_masks=max_masks, hflip_prob=hflip_prob, scale_jitter=tuple(scale_jitter),
                            **common)
    val = SampleProcessor(train=False, max_masks=int(val_max_masks or max_masks), hflip_prob=0.0, **common)
    return train, val


class SA1BDataModule(LightningDataModule):
    """SA-1B (or any SA-1B-format shards) for Lite-SAM training.

    Args:
        train_shards: training shards: paths, directories, globs, brace patterns (``sa_{000..099}.tar``), ``pipe:``
            commands or fsspec URLs (``s3://bucket/sa_{000000..000999}.tar``); a list or ``::``-separated string.
        val_shards: validation shards (same forms); ``None`` disables validation.
        batch_size: samples per batch (per rank).
        val_batch_size: validation batch size (default ``batch_size``).
        num_workers: DataLoader workers per rank (shards are split between them).
        img_size: padded input side ``S`` (640 or 1024).
        max_masks: ``K`` target masks and prompts per image (training).
        val_max_masks: ``K`` in validation (default ``max_masks``); the mask-AR metrics score SegEvery's masks
            against these, so set it to at least the number of masks per validation image.
        ppn_stride: AutoPPN grid stride (``P = S // ppn_stride``).
        box_noise: std of the box-prompt noise as a fraction of the box side (SAM: 0.1); 0 disables it.
        box_noise_max: clip of each box-noise value, in input pixels (SAM: 20).
        hflip_prob: horizontal-flip probability (train).
        scale_jitter: (min, max) factor on the resized longest side, within (0, 1] (train; (1, 1) = off).
        target_mode: AutoPPN targets, ``"distance"`` (paper) or ``"gaussian"`` (Table 2 baseline).
        ppn_background: ``"negative"`` (paper recipes: cells outside every mask are negatives of the point maps)
            or ``"ignore"`` (excluded from the point loss); see ``litesam_pl.data.targets``.
        num_groups: AutoPPN size groups, 3 (paper) or 1 (object grouping off).
        shuffle_buffer: raw samples held per worker for shuffling (train); raw SA-1B samples are ~2-4 MB each
            (jpg + json), prepared 1024-pixel ones ~0.3 MB, so size it to the workers' memory.
        resampled: draw training shards with replacement in every worker (multi-node on many shards).
        epoch_samples: training samples per epoch over all ranks; ``None`` = the number of samples in the training
            shards (from ``manifest.json`` or the tar headers; required for remote shards).
        seed: data seed (shard order, deterministic validation prompts).
        pin_memory: pin batches in page-locked memory (when CUDA is available).
        prefetch_factor: batches prefetched per worker.
        test_shards: shards ``litesam test`` (``trainer.test``) scores, read exactly as the validation shards (same
            batch size, ``val_max_masks`` and deterministic prompts); ``None`` (default) = ``val_shards``.
        predict_shards: shards ``litesam predict`` (``trainer.predict``) runs SegEvery on (``LiteSAMTaskBase.
            predict_step``), read as the validation shards; ``None`` (default) = ``test_shards``, else ``val_shards``.
            For folders of photos, and to write masks/COCO results to disk, use ``litesam segment-everything``.
    """

    def __init__(
        self,
        train_shards: Optional[Union[str, list[str]]] = None,
        val_shards: Optional[Union[str, list[str]]] = None,
        batch_size: int = 8,
        val_batch_size: Optional[int] = None,
        num_workers: int = 2,
        img_size: int = 640,
        max_masks: int = 16,
        val_max_masks: Optional[int] = None,
        ppn_stride: int = 8,
        box_noise: float = 0.1,
        box_noise_max: float = 20.0,
        hflip_prob: float = 0.5,
        scale_jitter: tuple[float, float] = (1.0, 1.0),
        target_mode: str = "distance",
        ppn_background: str = "negative",
        num_groups: int = 3,
        shuffle_buffer: int = 100,
        resampled: bool = False,
        epoch_samples: Optional[int] = None,
        seed: int = 0,
        pin_memory: bool = True,
        prefetch_factor: int = 2,
        test_shards: Optional[Union[str, list[str]]] = None,
        predict_shards: Optional[Union[str, list[str]]] = None,
    ):
        """Check and store the options. (Long: its signature, one keyword per option, is what LightningCLI reads.)"""
        super().__init__()
        _check_options(batch_size, num_workers, target_mode, epoch_samples)
        self.save_hyperparameters()  # reads this frame's arguments: called here, not in a helper
        self.train_shards = train_shards
        self.val_shards = val_shards
        self.test_shards = test_shards
        self.predict_shards = predict_shards
        self.batch_size = int(batch_size)
        self.val_batch_size = int(val_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.img_size = int(img_size)
        self.max_masks = int(max_masks)
        self.ppn_stride = int(ppn_stride)
        self.num_groups = int(num_groups)
        self.shuffle_buffer = int(shuffle_buffer)
        self.resampled = bool(resampled)
        self.epoch_samples = epoch_samples
        self.seed = int(seed)
        self.pin_memory = bool(pin_memory)
        self.prefetch_factor = int(prefetch_factor)
        # constructing them validates the arguments now (clear errors at start-up)
        self.train_processor, self.val_processor = _processors(
            max_masks, val_max_masks, hflip_prob, scale_jitter, img_size=img_size, ppn_stride=ppn_stride,
            box_noise=box_noise, box_noise_max=box_noise_max, target_mode=target_mode, ppn_background=ppn_background,
            num_groups=num_groups, seed=seed)
        self.train_urls: list[str] = []
        self.val_urls: list[str] = []
        self.test_urls: list[str] = []
        self.predict_urls: list[str] = []
        self.train_counter = SkipCounter("train")
        self.val_counter = SkipCounter("val")
        self.test_counter = SkipCounter("test")
        self.predict_counter = SkipCounter("predict")
        self._train_samples: Optional[int] = None

    # ------------------------------------------------------------------------------------------------ state
    @property
    def num_skipped(self) -> int:
        """Bad samples/shards skipped so far by all workers of all loaders of this module (this rank)."""
        return (self.train_counter.total + self.val_counter.total + self.test_counter.total
                + self.predict_counter.total)

    @property
    def test_source(self) -> Optional[Union[str, list[str]]]:
        """The shards ``test`` reads: ``test_shards``, else ``val_shards``."""
        return self.test_shards if self.test_shards is not None else self.val_shards

    @property
    def predict_source(self) -> Optional[Union[str, list[str]]]:
        """The shards ``predict`` reads: ``predict_shards``, else those of ``test`` (``test_source``)."""
        return self.predict_shards if self.predict_shards is not None else self.test_source

    @property
    def world_size(self) -> int:
        trainer = self.trainer
        if trainer is not None:
            return int(trainer.world_size)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_world_size()
        return 1

    def _current_epoch(self) -> Optional[int]:
        trainer = self.trainer
        return int(trainer.current_epoch) if trainer is not None else None

    # ------------------------------------------------------------------------------------------------ setup
    def setup(self, stage: Optional[str] = None) -> None:
        """Expand and check the shard lists; an empty list or a missing path raises here, not in a worker."""
        if stage in (None, "fit"):
            if self.train_shards is None:
                raise ValueError("SA1BDataModule: train_shards is required for fitting")
            self.train_urls = expand_urls(self.train_shards, "data.train_shards")
            check_urls(self.train_urls)
            # per-shard counts (None for remote shards): the epoch length and the coverage report need them (for the
            # report alone, an unreadable shard is not an error here: the stream skips and counts it)
            counts = None
            if self.epoch_samples is None:
                counts = shard_sample_counts(self.train_urls)
            elif not self.resampled:
                try:
                    counts = shard_sample_counts(self.train_urls)
                except (OSError, tarfile.TarError, ValueError):
                    counts = None
            if self.epoch_samples is None:
                if counts is None:
                    raise ValueError("epoch_samples is required for remote training shards (cannot count them)")
                self._train_samples = sum(counts)
                if self._train_samples == 0:
                    raise ValueError(f"the training shards hold no samples: {self.train_urls[:3]}...")
            else:
                self._train_samples = int(self.epoch_samples)
            if counts and not self.resampled:
                self._report_coverage(counts)
        if stage in (None, "fit", "validate") and self.val_shards is not None:
            self.val_urls = self._eval_urls(self.val_shards, "val_shards", "validation")
        if stage == "validate" and self.val_shards is None:
            raise ValueError("SA1BDataModule: val_shards is required for validation")
        if stage == "test":
            if self.test_source is None:
                raise ValueError("SA1BDataModule: test needs test_shards (or val_shards): --data.test_shards DIR")
            name = "test_shards" if self.test_shards is not None else "val_shards"
            self.test_urls = self._eval_urls(self.test_source, name, "test")
        if stage == "predict":
            if self.predict_source is None:
                raise ValueError("SA1BDataModule: predict needs predict_shards (or test_shards / val_shards): "
                                 "--data.predict_shards DIR; for folders of photos use `litesam segment-everything`")
            name = ("predict_shards" if self.predict_shards is not None
                    else "test_shards" if self.test_shards is not None else "val_shards")
            self.predict_urls = self._eval_urls(self.predict_source, name, "predict")

    def check_shards(self, stage: str) -> None:
        """Expand every shard option ``stage`` reads (no counting): a missing or empty one raises ``ShardsError``
        naming the option (``data.train_shards: shard not found: ...``) before anything else starts."""
        options = {"fit": ("train_shards", "val_shards"), "validate": ("val_shards",),
                   "test": ("test_shards", "val_shards"), "predict": ("predict_shards", "test_shards", "val_shards")}
        for name in options.get(stage, ()):
            value = getattr(self, name, None)
            if value is not None:
                expand_urls(value, f"data.{name}")
                if stage != "fit":
                    break  # the first set option is the one this stage reads

    def _eval_urls(self, shards: Union[str, list[str]], name: str, what: str) -> list[str]:
        """Expanded and checked shard URLs of an evaluation loader (validation, test, predict)."""
        urls = expand_urls(shards, f"data.{name}")
        check_urls(urls)
        readers = self.world_size * max(1, self.num_workers)
        if len(urls) < readers:  # not an error: SA1BStream.eval_split then splits samples, not shards
            log.info("%d %s shard(s) for %d ranks x %d workers: every rank reads every %s shard and keeps 1 sample "
                     "in %d", len(urls), what, self.world_size, max(1, self.num_workers), what, readers)
        return urls

    def _report_coverage(self, counts: list[int]) -> dict:
        """Say precisely what an epoch reads when the shards do not divide evenly over ranks x workers
        (``epoch_coverage``): a warning with the counts when any sample is read twice or left unread."""
        cov = epoch_coverage(counts, self.world_size, max(1, self.num_workers), self.train_batches_per_epoch,
                             self.batch_size)
        self.epoch_coverage = cov
        lo, hi = cov["shards_per_reader"]
        if cov["repeated"] or cov["unread"] > 0.005 * cov["samples"]:
            log.warning(
                "training epoch: %d samples from %d shards over %d readers (ranks x workers; %d-%d shards each): "
                "~%d samples (%.1f%%) come from a second, reshuffled pass (readers with fewer shards) and ~%d "
                "(%.1f%%) of the shards' samples stay unread this epoch (readers with more); for exactly once per "
                "epoch make the shard count a multiple of %d with equal shards, or set data.resampled: true to "
                "sample shards with replacement", cov["epoch_samples"], len(counts), cov["readers"], lo, hi,
                cov["repeated"], 100 * cov["repeated"] / max(1, cov["epoch_samples"]), cov["unread"],
                100 * cov["unread"] / max(1, cov["samples"]), cov["readers"])
        return cov

    @property
    def train_batches_per_epoch(self) -> int:
        """Training batches per epoch on each rank."""
        if self._train_samples is None:
            raise RuntimeError("call setup('fit') first")
        return max(1, self._train_samples // (self.batch_size * self.world_size))

    # ------------------------------------------------------------------------------------------------ loaders
    def _loader(self, dataset: SA1BStream, epoch_fn: Optional[Callable[[], Optional[int]]]) -> DataLoader:
        kw: dict[str, Any] = {}
        if self.num_workers > 0:
            kw["prefetch_factor"] = self.prefetch_factor
        if self.num_workers > 0:
            single_thread_opencv()
        return _EpochLoader(dataset, batch_size=None, num_workers=self.num_workers,
                            pin_memory=self.pin_memory and torch.cuda.is_available(), persistent_workers=False,
                            epoch_fn=epoch_fn, **kw)

    def shm_bytes_needed(self) -> int:
        """Shared memory the training loaders of one node hold at once, at most: every worker keeps
        ``prefetch_factor`` batches in /dev/shm (``collate.batch_shm_bytes``: uint8 images 3 S^2 bytes + K bool
        masks K S^2 bytes per sample, the AutoPPN targets (24 G + 1) (S/8)^2, ~6% more at K=16), times the ranks
        of the node."""
        if self.num_workers == 0:
            return 0
        per_batch = batch_shm_bytes(self.batch_size, self.img_size, self.max_masks, self.ppn_stride,
                                    self.num_groups)
        trainer = self.trainer
        local_ranks = int(getattr(trainer, "num_devices", 1) or 1) if trainer is not None else 1
        return per_batch * self.num_workers * max(1, self.prefetch_factor) * local_ranks

    def check_shm(self, path: str = "/dev/shm") -> Optional[str]:
        """A one-line warning when ``path`` has less free space than ``shm_bytes_needed`` (Docker and Kubernetes
        give 64 MB by default: workers then die with "Bus error"); None when it fits or cannot be read."""
        import shutil

        need = self.shm_bytes_needed()
        try:
            free = shutil.disk_usage(path).free
        except OSError:
            return None
        if need <= free:
            return None
        msg = (f"{path} has {free / 2**20:.0f} MB free but the training loaders of this node hold ~{need / 2**20:.0f} MB "
               f"there ({self.num_workers} workers x prefetch {self.prefetch_factor} x batch {self.batch_size} at "
               f"{self.img_size} px with {self.max_masks} masks, per rank): workers will die with 'Bus error'; run "
               f"the container with --ipc=host or --shm-size={int(need * 1.5 / 2**30) + 1}g, or lower "
               f"data.num_workers / data.prefetch_factor")
        log.warning(msg)
        return msg

    def train_dataloader(self) -> DataLoader:
        if not self.train_urls:
            self.setup("fit")
        self.check_shm()
        ds = SA1BStream(self.train_urls, self.train_processor, self.batch_size, self.train_counter, train=True,
                        shuffle_buffer=self.shuffle_buffer, resampled=self.resampled,
                        batches_per_epoch=self.train_batches_per_epoch, seed=self.seed)
        return self._loader(ds, self._current_epoch)

    def val_dataloader(self) -> Union[DataLoader, list]:
        if self.val_shards is None:
            return []
        if not self.val_urls:
            self.setup("validate")
        return self._eval_loader(self.val_urls, self.val_counter)

    def test_dataloader(self) -> DataLoader:
        """The test shards (``test_shards``, else ``val_shards``) read exactly as ``val_dataloader`` reads its own."""
        if not self.test_urls:
            self.setup("test")
        return self._eval_loader(self.test_urls, self.test_counter)

    def predict_dataloader(self) -> DataLoader:
        """The predict shards (``predict_shards``, else the test shards) read as ``val_dataloader`` reads its own."""
        if not self.predict_urls:
            self.setup("predict")
        return self._eval_loader(self.predict_urls, self.predict_counter)

    def _eval_loader(self, urls: list[str], counter: SkipCounter) -> DataLoader:
        """Every sample once over all ranks, in order, no augmentation, deterministic prompts."""
        ds = SA1BStream(urls, self.val_processor, self.val_batch_size, counter, train=False, seed=self.seed)
        return self._loader(ds, None)
