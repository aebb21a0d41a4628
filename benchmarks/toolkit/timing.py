"""Timing in the benchmarks: wall time of consecutive phases (``Laps``), methods interleaved turn by turn
(``interleaved``) and the quantiles of the times (``quantile``).

Device synchronisation is ``litesam_pl.inference.timing``'s ``sync`` (CUDA queues work: a clock read without it times
the launch, not the work); ``sync`` and ``ModuleTimer`` (the time of sub-modules' forwards, through hooks: SAM's
generator, whose loop is not ours) are re-exported from there, so the benchmarks take all their timing from here.
"""
from __future__ import annotations

import time
from typing import Dict, Iterable, Iterator, Optional, Sequence, Tuple, TypeVar

import numpy as np
import torch

from litesam_pl.inference.timing import ModuleTimer, sync

__all__ = ["Laps", "interleaved", "quantile", "sync", "ModuleTimer"]

T = TypeVar("T")
M = TypeVar("M")


class Laps:
    """Wall time of the consecutive phases of one timed pass, device synchronised when ``device`` is given.

    The clock starts on construction; ``lap(name)`` ends the phase running since the previous lap (or the start),
    returns its seconds and, when named, keeps them in ``phases``; ``total`` is the time from the start to the last
    lap (the sum of all laps)."""

    def __init__(self, device: Optional[torch.device] = None) -> None:
        self.device = device
        self.phases: Dict[str, float] = {}
        self._sync()
        self.start = self.last = time.perf_counter()

    def _sync(self) -> None:
        if self.device is not None:
            sync(self.device)

    def lap(self, name: Optional[str] = None) -> float:
        """Seconds since the previous lap (or the start); kept under ``phases[name]`` when ``name`` is given."""
        self._sync()
        now = time.perf_counter()
        seconds, self.last = now - self.last, now
        if name is not None:
            self.phases[name] = seconds
        return seconds

    @property
    def total(self) -> float:
        """Seconds from the start to the last lap."""
        return self.last - self.start


def interleaved(turns: Iterable[T], methods: Sequence[M]) -> Iterator[Tuple[T, M]]:
    """``(turn, method)`` for every method on every turn (an image, a round), the methods' order reversed from one
    turn to the next (A B, B A, A B, ...): the methods run back to back, so drift in machine load hits them alike,
    and none always runs first (or always after the same other one)."""
    backwards = list(reversed(methods))
    for k, turn in enumerate(turns):
        for m in (methods if k % 2 == 0 else backwards):
            yield turn, m


def quantile(xs: Sequence[float], q: float) -> float:
    """``np.quantile`` of ``xs`` as a float (NaN when empty)."""
    return float(np.quantile(np.asarray(xs, dtype=np.float64), q)) if xs else float("nan")
