"""Wall-time measurement of inference phases, device synchronised (CUDA kernels run asynchronously).

``phase(timings, name, device)`` times a block (SegEvery's phases); ``ModuleTimer`` times every ``forward`` of some
sub-modules through hooks (SAM's generator, whose loop we do not own: the web page's grid search and
``benchmarks.segevery``'s AMG rows).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Dict, Iterator, Optional

import torch

__all__ = ["sync", "phase", "ModuleTimer"]


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op off CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def phase(timings: Optional[Dict[str, float]], name: str, device: torch.device) -> Iterator[None]:
    """Add the wall time of the block (device synchronised) to ``timings[name]`` (seconds); nothing when None."""
    if timings is None:
        yield
        return
    sync(device)
    t0 = time.perf_counter()
    yield
    sync(device)
    timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0


class ModuleTimer:
    """Accumulates the wall time (seconds, in ``totals``) of ``module.forward`` calls (device synchronised) via
    forward hooks; ``close()`` removes the hooks."""

    def __init__(self, modules: Dict[str, torch.nn.Module], device: torch.device) -> None:
        self.device = device
        self.totals: Dict[str, float] = {k: 0.0 for k in modules}
        self._start: Dict[str, float] = {}
        self._handles = []
        for name, mod in modules.items():
            self._handles.append(mod.register_forward_pre_hook(self._pre(name)))
            self._handles.append(mod.register_forward_hook(self._post(name)))

    def _pre(self, name: str):
        def hook(module, args):
            sync(self.device)
            self._start[name] = time.perf_counter()
        return hook

    def _post(self, name: str):
        def hook(module, args, out):
            sync(self.device)
            self.totals[name] += time.perf_counter() - self._start.pop(name)
        return hook

    def reset(self) -> None:
        self.totals = {k: 0.0 for k in self.totals}

    def close(self) -> None:
        for h in self._handles:
            h.remove()
