"""Collating per-sample dicts into the batch dict of ``docs/contracts.md`` ("Samples").

Batches are compact: images uint8 (normalised on the device, ``transforms.normalize_images``), masks bool; inside
DataLoader workers every stacked tensor lives in shared memory (/dev/shm: ``batch_shm_bytes`` per batch)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import get_worker_info

from ..compat import shared_memory_zeros

__all__ = ["collate_samples", "zeros_batch_tensor", "batch_shm_bytes", "BATCH_KEYS", "STACKED_KEYS", "LIST_KEYS"]

# stacked into [B, ...] tensors
STACKED_KEYS = (
    "image",
    "masks",
    "boxes",
    "gt_boxes",
    "points",
    "point_labels",
    "valid",
    "ppn_heatmap",
    "ppn_boxes",
    "ppn_box_weight",
    "ppn_ignore",
    "original_size",
    "input_size",
)
LIST_KEYS = ("all_boxes", "key")  # ragged / strings: lists of length B
BATCH_KEYS = STACKED_KEYS + LIST_KEYS + ("num_skipped",)


def zeros_batch_tensor(shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """A zero tensor whose pages the kernel zero-fills lazily on first touch, so parts never written cost nothing.

    In a DataLoader worker it lives in shared memory (like ``default_collate``'s output), so sending the batch to
    the main process costs no extra copy.
    """
    shape = tuple(int(d) for d in shape)
    if get_worker_info() is None:  # numpy's zeros is calloc: lazily zeroed pages for large arrays
        try:
            return torch.from_numpy(np.zeros(shape, dtype=torch.empty(0, dtype=dtype).numpy().dtype))
        except TypeError:  # a dtype numpy lacks (bfloat16)
            return torch.zeros(shape, dtype=dtype)
    return shared_memory_zeros(shape, dtype)  # a fresh, zero-filled shm file


_PAGE = 4096


def batch_shm_bytes(batch_size: int, img_size: int, max_masks: int, ppn_stride: int = 8, num_groups: int = 3) -> int:
    """Bytes of shared memory one collated batch occupies at most (every page touched), from the dtypes of
    ``docs/contracts.md``: the uint8 image ``3 S^2`` and the K bool masks ``K S^2`` per sample, the AutoPPN
    targets ``(24 G + 1) P^2`` (float32 heatmap, boxes and box weight, bool ignore map), the small per-prompt
    tensors, each stacked key being one shared-memory file rounded up to whole pages (the pages are zero-filled
    lazily: a batch uses less where masks leave rows untouched)."""
    B, S, K, G = int(batch_size), int(img_size), int(max_masks), int(num_groups)
    P = S // int(ppn_stride)
    sizes = {  # bytes per sample of each STACKED_KEYS tensor, then num_skipped
        "image": 3 * S * S, "masks": K * S * S, "boxes": K * 16, "gt_boxes": K * 16, "points": K * 8,
        "point_labels": K * 8, "valid": K, "ppn_heatmap": 4 * G * P * P, "ppn_boxes": 16 * G * P * P,
        "ppn_box_weight": 4 * G * P * P, "ppn_ignore": P * P, "original_size": 16, "input_size": 16,
    }
    assert set(sizes) == set(STACKED_KEYS)
    stacked = sum(-(-B * n // _PAGE) * _PAGE for n in (*sizes.values(), 8))  # + num_skipped
    return stacked + B * _PAGE  # all_boxes: one small tensor (file) per sample


def collate_samples(samples: Sequence[dict[str, Any]], out: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Samples (dicts of tensors as made by ``SampleProcessor``) -> batch dict.

    Tensors are stacked along a new batch dim (into shared memory inside DataLoader workers), ``all_boxes`` and
    ``key`` become lists, ``num_skipped`` an int64 ``[B]`` tensor. ``out`` holds batch tensors the samples were
    already written into (``out[k][i]`` is sample ``i``'s ``k``); those keys are taken as ``out[k][:B]``.
    """
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    n = len(samples)
    batch: dict[str, Any] = {}
    for k in STACKED_KEYS:
        if out is not None and k in out:
            batch[k] = out[k][:n]
            continue
        first = samples[0][k]
        dst = zeros_batch_tensor((n, *first.shape), first.dtype)
        # numpy's stack (one thread) rather than torch.stack: with more than one torch thread (a loader without
        # workers) the parallel copy's thread pool spins after each call, costing more CPU than these
        # kilobyte-sized copies themselves (docs/benchmarks.md, "Data loader: shards prepared at 640")
        try:
            np.stack([s[k].numpy() for s in samples], out=dst.numpy())
        except (TypeError, RuntimeError, ValueError):  # dtypes numpy lacks (bfloat16), tensors needing grad, ...
            torch.stack([s[k] for s in samples], out=dst)
        batch[k] = dst
    for k in LIST_KEYS:
        batch[k] = [s[k] for s in samples]
    batch["num_skipped"] = torch.tensor([int(s.get("num_skipped", 0)) for s in samples], dtype=torch.int64)
    return batch
