"""Token mixers of Fig. 3: from PoolFormer pooling (design 1) to the Multi-Scale Pooling Module (design 5).

Every mixer maps ``[B, C, H, W] -> [B, C, H, W]`` and is used inside a residual branch (``x + mixer(norm(x))``),
so, like PoolFormer, each returns "context minus input". The paper only describes designs 1 and 5 in words;
designs 2-4 are our reading of the intermediate steps of Fig. 3 (see docs/architecture.md):

1. ``pool``       PoolFormer: ``AvgPool3(x) - x``.
2. ``pool_dw``    pooling plus a depthwise 3x3 conv for local detail: ``AvgPool3(x) - x + DW3(x)``.
3. ``pool2``      two-scale pooling: ``mean(AvgPool3, AvgPool5)(x) - x + DW3(x)``.
4. ``pool3``      multi-scale pooling without fusion: ``mean(AvgPool3, AvgPool5, AvgPool7)(x) - x + DW3(x)``.
5. ``mspm``       MSPM: a learned per-channel fusion ("fusion conv", a depthwise 1x1 over the stacked scales and the
                  input) of AvgPool3/5/7 and x, plus DW3(x). Initialised to equal design 4.

``MIXERS`` is the one table of them (name -> ``MixerSpec``: Fig. 3 number, description, ``dim -> module``
factory); adding a mixer is one entry there.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["box_mean", "cpu_pooling", "PoolMixer", "PoolDWMixer", "MultiScalePoolMixer", "MSPM", "MixerSpec", "MIXERS",
           "build_mixer"]


def _window_sum(x: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Sum over a centred window of ``k`` (odd) along ``dim`` with zero padding, by a difference of prefix sums."""
    p = k // 2
    pad = [0, 0] * (x.ndim - 1 - dim % x.ndim) + [p + 1, p]
    c = F.pad(x, pad).cumsum(dim)
    n = c.shape[dim]
    return c.narrow(dim, k, n - k) - c.narrow(dim, 0, n - k)


def box_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    """``F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False)`` computed separably with prefix sums.

    The same values (up to float rounding) in O(1) per pixel instead of O(k^2): the box sum is separable, and so is
    the count of in-image pixels that ``count_include_pad=False`` divides by. On CPU this is 3-5x faster than
    PyTorch's pooling kernel for the 3/5/7 windows of MSPM. Half-precision inputs are summed in float32.
    ``[B, C, H, W] -> [B, C, H, W]``.
    """
    if k % 2 == 0:
        raise ValueError(f"box_mean needs an odd window, got {k}")
    dtype = x.dtype
    xs = x.float() if dtype in (torch.float16, torch.bfloat16) else x
    s = _window_sum(_window_sum(xs, k, -2), k, -1)
    h, w = x.shape[-2:]
    nh = _window_sum(xs.new_ones(h), k, 0)
    nw = _window_sum(xs.new_ones(w), k, 0)
    return (s / (nh[:, None] * nw[None, :])).to(dtype)


# the CPU eager kernel of the pooling mixers: "box_mean" (default) or "avg_pool2d"; set through ``cpu_pooling``
_CPU_POOLING = "box_mean"


@contextmanager
def cpu_pooling(kernel: str) -> Iterator[None]:
    """Within the block, pooling mixers on the CPU use ``kernel``: ``"box_mean"`` (the default, prefix sums) or
    ``"avg_pool2d"`` (PyTorch's kernel, the path every other device takes). For benchmarks and equivalence tests;
    the two give the same values to float rounding (tests/models/test_precision.py)."""
    global _CPU_POOLING
    if kernel not in ("box_mean", "avg_pool2d"):
        raise ValueError(f"cpu_pooling kernel must be 'box_mean' or 'avg_pool2d', got {kernel!r}")
    previous, _CPU_POOLING = _CPU_POOLING, kernel
    try:
        yield
    finally:
        _CPU_POOLING = previous


def _avg_pool(x: torch.Tensor, k: int) -> torch.Tensor:
    """Stride-1 "same" average pooling that ignores the padding (PoolFormer's ``count_include_pad=False``).

    CPU eager mode uses ``box_mean`` (PyTorch's CPU pooling kernel is O(k^2) and was 58% of LiteViT's forward time)
    unless ``cpu_pooling("avg_pool2d")`` is active; other devices, tracing and ONNX export use ``F.avg_pool2d``.
    """
    if (x.device.type == "cpu" and _CPU_POOLING == "box_mean"
            and not (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export())):
        return box_mean(x, k)
    return F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False)


class PoolMixer(nn.Module):
    """Fig. 3 (1), PoolFormer's token mixer: ``AvgPool_k(x) - x`` (no parameters)."""

    def __init__(self, dim: int, pool_size: int = 3) -> None:
        super().__init__()
        self.dim = dim
        self.pool_size = pool_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _avg_pool(x, self.pool_size) - x


class MultiScalePoolMixer(nn.Module):
    """Fig. 3 (2)-(4): mean of average pools at ``pool_sizes`` minus x, plus a depthwise conv for local detail.

    ``pool_sizes=(3,)`` is design 2, ``(3, 5)`` design 3, ``(3, 5, 7)`` design 4 (multi-scale, no fusion conv).
    """

    def __init__(self, dim: int, pool_sizes: Sequence[int] = (3, 5, 7), dw_kernel: int = 3) -> None:
        super().__init__()
        self.dim = dim
        self.pool_sizes = tuple(int(k) for k in pool_sizes)
        self.dwconv = nn.Conv2d(dim, dim, dw_kernel, padding=dw_kernel // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ctx = sum(_avg_pool(x, k) for k in self.pool_sizes) / len(self.pool_sizes)
        return ctx - x + self.dwconv(x)


class PoolDWMixer(MultiScalePoolMixer):
    """Fig. 3 (2): single-scale pooling plus a depthwise 3x3 conv."""

    def __init__(self, dim: int, pool_size: int = 3, dw_kernel: int = 3) -> None:
        super().__init__(dim, pool_sizes=(pool_size,), dw_kernel=dw_kernel)


class MSPM(nn.Module):
    """Fig. 3 (5), the Multi-Scale Pooling Module.

    ``y = sum_k w_k * AvgPool_k(x) + w_0 * x + b + DW3(x)`` with per-channel weights ``w`` (a depthwise 1x1
    "fusion conv" over the stacked scales), ``k`` in ``pool_sizes``. ``w_k = 1/len(pool_sizes)``, ``w_0 = -1``,
    ``b = 0`` at initialisation, i.e. it starts as design 4 and learns how much of each receptive field to mix.

    Args:
        dim: channels C.
        pool_sizes: average-pool kernel sizes (stride 1, same padding).
        dw_kernel: kernel of the depthwise local conv.
    Shapes: ``[B, C, H, W] -> [B, C, H, W]``.
    """

    def __init__(self, dim: int, pool_sizes: Sequence[int] = (3, 5, 7), dw_kernel: int = 3) -> None:
        super().__init__()
        self.dim = dim
        self.pool_sizes = tuple(int(k) for k in pool_sizes)
        n = len(self.pool_sizes)
        init = torch.cat([torch.full((n, dim), 1.0 / n), torch.full((1, dim), -1.0)], 0)
        self.fuse_weight = nn.Parameter(init.view(n + 1, 1, dim, 1, 1))
        self.fuse_bias = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.dwconv = nn.Conv2d(dim, dim, dw_kernel, padding=dw_kernel // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.fuse_weight
        y = w[-1] * x + self.fuse_bias
        for i, k in enumerate(self.pool_sizes):
            y = y + w[i] * _avg_pool(x, k)
        return y + self.dwconv(x)


@dataclass(frozen=True)
class MixerSpec:
    """One token mixer of the registry: ``build(dim)`` makes it for ``dim`` channels; ``fig3`` is its design number
    in Fig. 3 (also accepted as its name), ``aliases`` other accepted names."""

    build: Callable[[int], nn.Module]
    description: str
    fig3: Optional[int] = None
    aliases: Tuple[str, ...] = field(default=())


MIXERS: Dict[str, MixerSpec] = {
    "pool": MixerSpec(partial(PoolMixer, pool_size=3), "Fig. 3 (1) PoolFormer pooling", 1, ("poolformer",)),
    "pool_dw": MixerSpec(partial(PoolDWMixer, pool_size=3), "Fig. 3 (2) pooling + depthwise conv", 2),
    "pool2": MixerSpec(partial(MultiScalePoolMixer, pool_sizes=(3, 5)),
                       "Fig. 3 (3) two-scale pooling + depthwise conv", 3),
    "pool3": MixerSpec(partial(MultiScalePoolMixer, pool_sizes=(3, 5, 7)),
                       "Fig. 3 (4) multi-scale pooling + depthwise conv, no fusion", 4),
    "mspm": MixerSpec(partial(MSPM, pool_sizes=(3, 5, 7)),
                      "Fig. 3 (5) MSPM: multi-scale pooling with learned fusion + depthwise conv", 5),
}


def _mixer_name(name: str | int) -> str:
    """The ``MIXERS`` key of a name, alias or Fig. 3 number (as given; unknown names are returned lower-cased)."""
    key = str(name).lower()
    for k, spec in MIXERS.items():
        if key == k or key in spec.aliases or (spec.fig3 is not None and key == str(spec.fig3)):
            return k
    return key


def build_mixer(name: str | int, dim: int) -> nn.Module:
    """Token mixer by name (``pool``, ``pool_dw``, ``pool2``, ``pool3``, ``mspm``) or Fig. 3 number (1-5)."""
    spec = MIXERS.get(_mixer_name(name))
    if spec is None:
        raise ValueError(f"unknown mixer {name!r}; choose one of {sorted(MIXERS)} or a Fig. 3 number 1-5")
    return spec.build(dim)
