"""Neck: multi-scale backbone features -> the 256-channel, stride-16 image embedding SAM's mask decoder expects."""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from torch import nn

__all__ = ["MultiScaleNeck"]


def _resample(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bring ``x`` to spatial ``size``: area pooling when shrinking, bilinear when growing."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    if h >= size[0] and w >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class MultiScaleNeck(nn.Module):
    """Fuse the stride 8/16/32 backbone maps into one ``[B, out_chans, h16, w16]`` embedding.

    Each used level gets a 1x1 lateral projection to ``out_chans``; the laterals are resampled to the stride-16
    grid and summed, then refined like SAM's neck (LayerNorm2d -> depthwise 3x3 -> 1x1 -> LayerNorm2d), with a
    depthwise conv instead of SAM's dense 3x3 to keep the budget.

    Args:
        in_channels: channels of the backbone's 4 maps (strides 4, 8, 16, 32).
        out_chans: embedding channels (256 for SAM's decoder).
        levels: indices of ``in_channels`` that are fused (default: strides 8, 16, 32).
        embed_level: index whose spatial size the embedding takes (2 = stride 16).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_chans: int = 256,
        levels: Sequence[int] = (1, 2, 3),
        embed_level: int = 2,
    ) -> None:
        super().__init__()
        self.in_channels = [int(c) for c in in_channels]
        self.levels = [int(i) for i in levels]
        self.embed_level = int(embed_level)
        self.out_chans = int(out_chans)
        if self.embed_level not in self.levels:
            raise ValueError(f"embed_level {embed_level} must be one of the fused levels {self.levels}")
        self.laterals = nn.ModuleList(
            [nn.Conv2d(self.in_channels[i], out_chans, 1, bias=False) for i in self.levels]
        )
        self.norm1 = LayerNorm2d(out_chans)
        self.dwconv = nn.Conv2d(out_chans, out_chans, 3, padding=1, groups=out_chans)
        self.act = nn.GELU()
        self.proj = nn.Conv2d(out_chans, out_chans, 1, bias=False)
        self.norm2 = LayerNorm2d(out_chans)

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        size = features[self.embed_level].shape[-2:]
        x = sum(_resample(lat(features[i]), size) for lat, i in zip(self.laterals, self.levels))
        x = self.norm1(x)
        x = x + self.proj(self.act(self.dwconv(x)))
        return self.norm2(x)
