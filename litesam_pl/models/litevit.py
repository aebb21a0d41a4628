"""LiteViT (Sec. 3.2, Fig. 2(b)): a PoolFormer-style CNN-Transformer hybrid with MSPM token mixers.

Stem (7x7 conv, stride 4) -> [stage 1] -> Patch Merge -> [stage 2] -> Patch Merge -> [stage 3] -> Patch Merge ->
[stage 4]. A stage is a stack of LiteViT blocks ``x + mixer(norm(x))``, ``x + ConvMLP(norm(x))``.
The forward returns the four stage outputs at strides 4, 8, 16, 32 (timm ``features_only`` style).
The generic layers are timm's, as in its PoolFormer / MetaFormer: ``GroupNorm1`` (PoolFormer's norm),
``Mlp(use_conv=True)`` (the conv MLP: ``fc1``/``fc2`` 1x1 convs) and ``DropPath`` (stochastic depth).
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath, GroupNorm1, Mlp
from torch import nn

from .mixers import build_mixer

__all__ = ["PatchMerge", "LiteViTBlock", "LiteViT", "LITEVIT_CONFIGS"]

# Variants as configs (timm style). Depths follow PoolFormer-S12; MLP ratios were tuned so the parameter counts
# match Table 1 (1.16M / 2.19M / 3.63M) at the paper's embedding dims (see docs/architecture.md).
LITEVIT_CONFIGS = {
    "litevit": dict(embed_dims=(64, 96, 128, 256), depths=(2, 2, 6, 2), mlp_ratios=(4.0, 4.0, 1.5, 1.5)),
    "litevit_2x": dict(embed_dims=(96, 128, 192, 384), depths=(2, 2, 6, 2), mlp_ratios=(4.0, 4.0, 1.5, 1.0)),
    "litevit_3x": dict(embed_dims=(128, 160, 256, 512), depths=(2, 2, 6, 2), mlp_ratios=(4.0, 3.0, 1.5, 1.0)),
}


class PatchMerge(nn.Module):
    """Patch Merge downsampling: concatenate each 2x2 neighbourhood and project (a 2x2 stride-2 conv), then norm.

    Odd inputs are zero-padded bottom/right, so ``[B, Cin, H, W] -> [B, Cout, ceil(H/2), ceil(W/2)]``.
    """

    def __init__(self, in_chans: int, out_chans: int, patch_size: int = 2) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, out_chans, patch_size, stride=patch_size)
        self.norm = GroupNorm1(out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        h, w = x.shape[-2:]
        if h % p or w % p:
            x = F.pad(x, (0, (-w) % p, 0, (-h) % p))
        return self.norm(self.proj(x))


class LiteViTBlock(nn.Module):
    """LiteViT block: ``x + ls1 * Mixer(Norm(x))`` then ``x + ls2 * ConvMLP(Norm(x))``. Shape-preserving.

    Args:
        dim: channels.
        mlp_ratio: hidden width of the ConvMLP over ``dim``.
        mixer: token mixer name (``mspm`` by default; see ``mixers.build_mixer``).
        layer_scale_init: initial value of the per-channel residual scales, or None for no layer scale.
        drop_path: stochastic depth rate.
    """

    def __init__(
        self,
        dim: int,
        mlp_ratio: float = 4.0,
        mixer: str = "mspm",
        layer_scale_init: Optional[float] = None,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = GroupNorm1(dim)
        self.token_mixer = build_mixer(mixer, dim)
        self.norm2 = GroupNorm1(dim)
        self.mlp = Mlp(dim, max(1, int(round(dim * mlp_ratio))), use_conv=True)  # 1x1 conv, GELU, 1x1 conv
        if layer_scale_init is not None:
            self.layer_scale_1 = nn.Parameter(torch.full((dim, 1, 1), float(layer_scale_init)))
            self.layer_scale_2 = nn.Parameter(torch.full((dim, 1, 1), float(layer_scale_init)))
        else:
            self.layer_scale_1 = self.layer_scale_2 = None
        self.drop_path = DropPath(float(drop_path))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.token_mixer(self.norm1(x))
        if self.layer_scale_1 is not None:
            y = self.layer_scale_1 * y
        x = x + self.drop_path(y)
        y = self.mlp(self.norm2(x))
        if self.layer_scale_2 is not None:
            y = self.layer_scale_2 * y
        return x + self.drop_path(y)


class LiteViT(nn.Module):
    """LiteViT backbone. ``[B, 3, H, W]`` -> list of 4 maps ``[B, C_i, ceil(H/s_i), ceil(W/s_i)]``, s = 4, 8, 16, 32.

    Args:
        embed_dims: channels of the four stages (``out_channels``).
        depths: number of LiteViT blocks per stage.
        mlp_ratios: ConvMLP width ratio per stage (a float applies to all stages).
        mixer: token mixer of every block (Fig. 3 design: ``pool``, ``pool_dw``, ``pool2``, ``pool3``, ``mspm``).
        in_chans: input channels.
        stem_kernel: kernel of the stride-4 stem conv (padding ``k // 2`` gives ``ceil(H / 4)``).
        layer_scale_init: see ``LiteViTBlock``.
        drop_path_rate: maximum stochastic depth, linearly increasing over blocks.
    """

    def __init__(
        self,
        embed_dims: Sequence[int] = (64, 96, 128, 256),
        depths: Sequence[int] = (2, 2, 6, 2),
        mlp_ratios: Sequence[float] | float = (4.0, 4.0, 1.5, 1.5),
        mixer: str = "mspm",
        in_chans: int = 3,
        stem_kernel: int = 7,
        layer_scale_init: Optional[float] = None,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        embed_dims = [int(d) for d in embed_dims]
        depths = [int(d) for d in depths]
        if isinstance(mlp_ratios, (int, float)):
            mlp_ratios = [float(mlp_ratios)] * len(embed_dims)
        mlp_ratios = [float(r) for r in mlp_ratios]
        if not (len(embed_dims) == len(depths) == len(mlp_ratios) == 4):
            raise ValueError(
                f"LiteViT needs 4 stages: got embed_dims={embed_dims}, depths={depths}, mlp_ratios={mlp_ratios}"
            )
        self.embed_dims = embed_dims
        self.depths = depths
        self.mlp_ratios = mlp_ratios
        self.mixer = str(mixer)
        self.out_channels: List[int] = list(embed_dims)
        self.reductions: List[int] = [4, 8, 16, 32]

        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, embed_dims[0], stem_kernel, stride=4, padding=stem_kernel // 2),
            GroupNorm1(embed_dims[0]),
        )
        n_blocks = sum(depths)
        dpr = [drop_path_rate * i / max(n_blocks - 1, 1) for i in range(n_blocks)]
        self.downsamples = nn.ModuleList()
        self.stages = nn.ModuleList()
        k = 0
        for i, (dim, depth, ratio) in enumerate(zip(embed_dims, depths, mlp_ratios)):
            self.downsamples.append(nn.Identity() if i == 0 else PatchMerge(embed_dims[i - 1], dim))
            blocks = [
                LiteViTBlock(dim, ratio, mixer=mixer, layer_scale_init=layer_scale_init, drop_path=dpr[k + j])
                for j in range(depth)
            ]
            k += depth
            self.stages.append(nn.Sequential(*blocks))
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Conv2d) and m.groups == 1:
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = self.stem(x)
        features = []
        for down, stage in zip(self.downsamples, self.stages):
            x = stage(down(x))
            features.append(x)
        return features

    def extra_repr(self) -> str:
        return f"embed_dims={self.embed_dims}, depths={self.depths}, mlp_ratios={self.mlp_ratios}, mixer={self.mixer}"


def feature_sizes(h: int, w: int) -> List[tuple]:
    """Spatial sizes LiteViT returns for an ``h x w`` input (ceil division by 4, 8, 16, 32)."""
    return [(math.ceil(h / s), math.ceil(w / s)) for s in (4, 8, 16, 32)]
