"""Training callbacks, the names recipes give as ``class_path: litesam_pl.modules.callbacks.<Name>``.

Here: the ones that keep a run safe and set up its process: ``NaNGuard`` (stop on a NaN/inf loss on any rank, with
``check_finite``), ``TorchCompile`` (opt-in ``torch.compile`` of the training losses) and ``CPUThreads`` (intra-op
threads). The ones that record a run (``MetricsJSON``, ``Throughput``, ``ImageLogger``) live in
``logging_callbacks.py`` and are re-exported here, so every recipe's class path stays valid.
"""
from __future__ import annotations

import os
import time
from typing import Any, Mapping, Optional, Union

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from .logging_callbacks import ImageLogger, MetricsJSON, Throughput

__all__ = ["NonFiniteLossError", "check_finite", "nonfinite_codes", "NaNGuard", "MetricsJSON", "Throughput",
           "ImageLogger", "CPUThreads", "TorchCompile"]


class NonFiniteLossError(FloatingPointError):
    """Raised when a loss term turns NaN or inf; the message names the term and the step."""


_KINDS = {1: "nan", 2: "inf", 3: "-inf"}


def _term_names(terms: Mapping[str, Any]) -> list:
    """The names of ``terms`` in report order: the parts first, the total ``loss`` last."""
    return [k for k in terms if k != "loss"] + (["loss"] if "loss" in terms else [])


def nonfinite_codes(terms: Mapping[str, Tensor], names: Optional[list] = None) -> Tensor:
    """Per term of ``terms`` (in ``names`` order), 0 if every element is finite, else 1 (NaN), 2 (+inf), 3 (-inf).

    Device side: the scalar terms are stacked and tested at once (no host sync, no per-term ``bool()``)."""
    names = _term_names(terms) if names is None else names
    vals = []
    for k in names:
        v = torch.as_tensor(terms[k]).detach()
        # a non-scalar term: its largest |value| (NaN propagates through amax) decides
        vals.append(v.reshape(()) if v.numel() == 1 else v.float().abs().amax())
    x = torch.stack([v.float().to(vals[0].device) for v in vals])
    i32 = torch.int32
    return torch.isnan(x).to(i32) + 2 * torch.isposinf(x).to(i32) + 3 * torch.isneginf(x).to(i32)


def _message(names: list, codes: Tensor, step: int, rank: Optional[int] = None, world: int = 1) -> str:
    """The error text for a ``[world, terms]`` table of codes (``nonfinite_codes`` of every rank)."""
    found = []  # (name, kind, ranks), the first bad term first (its order in ``names``)
    for j, name in enumerate(names):
        col = codes[:, j]
        ranks = [r for r in range(codes.shape[0]) if int(col[r])]
        if ranks:
            found.append((name, _KINDS.get(int(col[ranks[0]]), "non-finite"), ranks))
    where = (lambda rs: f" on rank {rs[0]}" if len(rs) == 1 else f" on ranks {rs}") if world > 1 else (lambda rs: "")
    name, kind, ranks = found[0]
    msg = f"loss '{name}' is {kind} at global step {step}{where(ranks)}"
    if len(found) > 1:
        msg += " (also non-finite: " + ", ".join(f"'{n}' is {k}{where(r)}" for n, k, r in found[1:]) + ")"
    if world > 1:
        msg += f"; every rank stops (this is rank {rank} of {world})"
    return (msg + ". Lower the lr, enable gradient clipping, or try bf16-mixed instead of 16-mixed; "
            "resume from the last good checkpoint with --ckpt_path.")


def check_finite(terms: Mapping[str, Tensor], step: int, sync: bool = True) -> None:
    """Raise ``NonFiniteLossError`` on EVERY rank when a loss term of ``terms`` is NaN or inf on ANY rank.

    One device-side test of all the terms (``nonfinite_codes``), one ``all_reduce`` of a small ``[world, terms]``
    int table when a process group is up (``sync``), one host sync (``.any()``). The message names the step, the
    first non-finite term and the rank(s) it is non-finite on, then the other non-finite terms. Every rank must
    pass the same term names (the same stage code does). Raising on one rank only would leave the others in the
    gradient all-reduce until the collective timeout.
    """
    names = _term_names(terms)
    if not names:
        return
    local = nonfinite_codes(terms, names)
    dist = torch.distributed
    if sync and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        world, rank = dist.get_world_size(), dist.get_rank()
        table = torch.zeros(world, len(names), dtype=torch.int32, device=local.device)
        table[rank] = local
        dist.all_reduce(table)  # SUM: each rank fills its own row
    else:
        world, rank, table = 1, 0, local[None]
    if bool(table.any()):  # the only host sync of the step
        raise NonFiniteLossError(_message(names, table.cpu(), step, rank, world))


class NaNGuard(pl.Callback):
    """Stop training with a clear error (loss name + step + rank) when any loss term is NaN or inf on any rank.

    Reads ``pl_module.last_loss_terms`` (a dict of detached loss tensors set in ``training_step``) before the
    backward pass, so no NaN gradient ever reaches the weights. Under DDP every rank takes part in one small
    all-reduce per step and every rank raises together (see ``check_finite``).
    """

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        terms = dict(getattr(pl_module, "last_loss_terms", {}) or {})
        terms["loss"] = loss.detach()
        check_finite(terms, trainer.global_step, sync=trainer.world_size > 1)


class TorchCompile(pl.Callback):
    """``torch.compile`` the training step's losses (``compute_losses``: image encoder, AutoPPN, prompt encoder,
    batched mask decoder and losses trace into one graph, ``tests/models/test_batched_decode.py``).

    Opt-in from a recipe or the command line (with cuDNN's autotuner, a Trainer flag):
    ``--trainer.callbacks+=litesam_pl.modules.callbacks.TorchCompile --trainer.benchmark true``.
    The weights, checkpoints and validation are unchanged (only the bound method is replaced, in this process);
    the module is marked ``losses_compiled = True`` so that it is compiled once.

    Args:
        backend: ``torch.compile`` backend (``inductor``; ``aot_eager`` traces without generating kernels).
        mode: ``torch.compile`` mode (``None``, ``reduce-overhead`` for CUDA graphs, ``max-autotune``).
        dynamic: shapes vary between steps (False: every training batch has the recipe's fixed shapes).
    """

    def __init__(self, backend: str = "inductor", mode: Optional[str] = None, dynamic: Optional[bool] = False) -> None:
        self.backend, self.mode, self.dynamic = backend, mode, dynamic

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or getattr(pl_module, "losses_compiled", False):
            return
        pl_module.compute_losses = torch.compile(pl_module.compute_losses, backend=self.backend, mode=self.mode,
                                                 dynamic=self.dynamic)
        pl_module.losses_compiled = True
        rank_zero_info(f"TorchCompile: compute_losses compiled (backend={self.backend}, mode={self.mode})")


class CPUThreads(pl.Callback):
    """Set the intra-op thread count of this process (``torch.set_num_threads``, and OpenCV's) at start-up.

    On a small shared CPU machine one thread per process avoids OpenMP spin contention (threads spinning on cores
    other jobs hold); on an idle machine every core helps (figures: docs/benchmarks.md, "CPU threads per process").
    ``num_threads``: a count; ``"auto"``: one thread per core left idle by other processes (the cores this process
    may use minus the cores busy during a 0.5 s sample of /proc/stat, at least 1; time of niced processes counts as
    idle: they yield to this one); ``0`` or less: leave the defaults.
    """

    def __init__(self, num_threads: Union[int, str] = 1) -> None:
        if isinstance(num_threads, str) and num_threads != "auto":
            raise ValueError(f"CPUThreads: num_threads must be an int or 'auto', got {num_threads!r}")
        self.num_threads = num_threads if num_threads == "auto" else int(num_threads)
        self.chosen: Optional[int] = None

    @staticmethod
    def _busy_cores(window: float = 0.5) -> float:
        """Cores in use right now by un-niced work: jiffies other than idle, iowait and nice over ``window`` seconds
        from /proc/stat (else the 1-minute load average, which lags behind a job that just ended)."""
        def sample() -> tuple:
            with open("/proc/stat") as f:
                v = [float(x) for x in f.readline().split()[1:]]
            return sum(v), v[1] + v[3] + (v[4] if len(v) > 4 else 0.0)  # total, nice + idle + iowait

        try:
            t0, i0 = sample()
            time.sleep(window)
            t1, i1 = sample()
            ncpu = os.cpu_count() or 1
            return ncpu * max(0.0, 1.0 - (i1 - i0) / max(t1 - t0, 1e-9))
        except (OSError, ValueError, IndexError):
            try:
                return os.getloadavg()[0]
            except (AttributeError, OSError):
                return 0.0

    @classmethod
    def idle_cores(cls) -> int:
        """Cores this process may run on minus the cores other processes keep busy now (at least 1)."""
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
        return max(1, min(cores, int(round(cores - cls._busy_cores()))))

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        n = self.idle_cores() if self.num_threads == "auto" else self.num_threads
        if n <= 0:
            return
        self.chosen = n
        torch.set_num_threads(n)
        try:
            import cv2

            cv2.setNumThreads(n)
        except Exception:
            pass
        if self.num_threads == "auto":
            rank_zero_info(f"CPUThreads: {n} intra-op thread(s) (auto: idle cores of this machine)")
