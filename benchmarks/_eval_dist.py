"""Several devices for the COCO / LVIS benchmarks: ``torchrun --nproc_per_node N -m benchmarks.coco ...``.

Each rank takes every N-th image id from its rank (``shard_ids``) and runs it on its own device (``rank_device``:
``--device cuda`` -> ``cuda:<LOCAL_RANK>``); rank 0 gathers the ranks' ``evaluate_instances`` runs (``gather_run``,
``torch.distributed.gather_object`` over gloo) and puts their per-image entries back in the single-process order
(``interleave``), so the numbers are those of one process.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

from benchmarks._eval_model import default_device
from benchmarks._eval_prompting import PER_IMAGE_LISTS

__all__ = ["DIST_TIMEOUT_S", "dist_env", "init_distributed", "rank_device", "shard_ids", "interleave", "gather_run"]

# a rank that finished its share waits this long in the gather for the slowest one (torchrun stops every rank
# when one fails, so this is no hang guard; it only has to outlast the imbalance of the shares)
DIST_TIMEOUT_S = 6 * 3600


def dist_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``);
    ``(0, 1, 0)`` when ``WORLD_SIZE`` is unset: the single-process path."""
    world = int(os.environ.get("WORLD_SIZE") or 1)
    if world <= 1:
        return 0, 1, 0
    rank = int(os.environ.get("RANK") or 0)
    return rank, world, int(os.environ.get("LOCAL_RANK") or rank)


def init_distributed() -> tuple[int, int, int]:
    """Join torchrun's process group when ``WORLD_SIZE`` > 1 (gloo: the only collective is one gather of CPU
    objects, so GPU runs need no NCCL); returns ``dist_env()``."""
    rank, world, local_rank = dist_env()
    if world > 1:
        import datetime

        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=DIST_TIMEOUT_S))
    return rank, world, local_rank


def rank_device(device: str | None, local_rank: int, world_size: int) -> str:
    """The device of this rank: ``--device`` (default cuda if available, else cpu); a bare ``cuda`` becomes
    ``cuda:<LOCAL_RANK>`` when there are several ranks (an explicit index is kept)."""
    dev = default_device(device)
    if world_size > 1 and dev == "cuda":
        import torch

        dev = f"cuda:{local_rank % max(1, torch.cuda.device_count())}"
        torch.cuda.set_device(torch.device(dev))
    return dev


def shard_ids(image_ids: Sequence[int], rank: int, world_size: int) -> list[int]:
    """Rank ``rank``'s share of the (sorted) image ids: every ``world_size``-th one from its rank, ``ids[r::W]``."""
    return list(image_ids)[rank::world_size]


def interleave(per_rank: Sequence[Sequence[Any]], per_rank_counts: Sequence[Sequence[int]]) -> list[Any]:
    """The single-process order of per-image entries of ranks that ran ``shard_ids`` shares: ``per_rank[r]`` is
    rank r's flat list, ``per_rank_counts[r]`` how many entries each of its images added; global image ``i`` is
    rank ``i % W``'s image ``i // W``."""
    world = len(per_rank)
    chunks: list[list[Sequence[Any]]] = []
    for r, (flat, counts) in enumerate(zip(per_rank, per_rank_counts)):
        if sum(counts) != len(flat):
            raise RuntimeError(f"rank {r}: {len(flat)} entries but per-image counts sum to {sum(counts)}")
        pos, own = 0, []
        for c in counts:
            own.append(flat[pos:pos + c])
            pos += c
        chunks.append(own)
    n = sum(len(c) for c in chunks)
    out: list[Any] = []
    for i in range(n):
        out.extend(chunks[i % world][i // world])
    return out


def gather_run(run: dict[str, Any], baselines: Any, rank: int, world_size: int) -> tuple[dict | None, Any]:
    """Gather every rank's ``evaluate_instances`` run (and ``Baselines``) on rank 0 and put the entries back in
    the single-process order (``interleave``); counters and seconds are summed over ranks. Rank 0 gets
    ``(run, baselines)`` as one process would have them, the other ranks ``(None, None)``."""
    import torch.distributed as dist

    state = {"run": run, "baselines": None if baselines is None else baselines.state()}
    states: list[Any] | None = [None] * world_size if rank == 0 else None
    dist.gather_object(state, states, dst=0)
    if rank != 0:
        return None, None
    assert states is not None
    runs = [s["run"] for s in states]
    merged: dict[str, Any] = dict(runs[0])
    merged["image_ids"] = interleave([r["image_ids"] for r in runs], [[1] * len(r["image_ids"]) for r in runs])
    for key in PER_IMAGE_LISTS:
        merged[key] = interleave([r[key] for r in runs], [r["per_image"][key] for r in runs])
    merged["per_image"] = {key: interleave([r["per_image"][key] for r in runs],
                                           [[1] * len(r["image_ids"]) for r in runs]) for key in PER_IMAGE_LISTS}
    for key in ("skipped_crowd", "skipped_empty", "seconds_prompting", "seconds_segevery"):
        merged[key] = sum(r[key] for r in runs)
    if baselines is not None:
        baselines.load_states([s["baselines"] for s in states], [r["per_image"]["areas"] for r in runs])
    return merged, baselines
