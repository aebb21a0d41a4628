"""fp32 regions inside autocast: the few computations that bf16 spoils (see ``docs/architecture.md``)."""
from __future__ import annotations

from contextlib import nullcontext
from typing import ContextManager

import torch

__all__ = ["no_autocast"]

_AUTOCAST_DEVICES = ("cpu", "cuda", "xpu", "mps", "hpu")


def no_autocast(device: torch.device | str) -> ContextManager:
    """A context in which autocast is off for ``device`` (a no-op for devices without autocast, e.g. ``meta``)."""
    kind = torch.device(device).type
    return torch.autocast(device_type=kind, enabled=False) if kind in _AUTOCAST_DEVICES else nullcontext()
