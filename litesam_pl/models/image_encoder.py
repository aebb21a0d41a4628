"""Image encoders for LiteSAM: a backbone (LiteViT, timm, torchvision) + neck, or SAM's own ViT.

Every backbone follows timm's ``features_only`` convention used across litesam-pl: ``forward`` returns a list of
4 maps at strides 4, 8, 16, 32 and the module has ``out_channels`` (list of 4 ints).
"""
from __future__ import annotations

from functools import partial
from typing import Any, List

import torch
from torch import nn

from .litevit import LITEVIT_CONFIGS, LiteViT
from .neck import MultiScaleNeck

__all__ = [
    "BackboneImageEncoder",
    "TimmBackbone",
    "TorchvisionShuffleNetBackbone",
    "build_backbone",
    "build_sam_vit_encoder",
]

_STRIDES = (4, 8, 16, 32)


class TimmBackbone(nn.Module):
    """A timm model built with ``features_only=True, pretrained=False`` exposing the stride 4/8/16/32 maps.

    Args:
        name: timm model name (``timm.list_models()``).
        **kwargs: passed to ``timm.create_model``.
    """

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__()
        import timm

        if not timm.is_model(name):
            raise ValueError(f"timm has no model {name!r} (see timm.list_models())")
        kwargs = {k: v for k, v in kwargs.items() if k not in ("pretrained", "features_only")}
        with torch.device("meta"):  # cheap probe of the feature strides, no weight init
            probe = timm.create_model(name, pretrained=False, features_only=True, **kwargs)
        reductions = list(probe.feature_info.reduction())
        missing = [s for s in _STRIDES if s not in reductions]
        if missing:
            raise ValueError(f"timm model {name!r} has feature strides {reductions}; it lacks {missing}")
        # the last feature map of each stride
        out_indices = [max(i for i, r in enumerate(reductions) if r == s) for s in _STRIDES]
        module_indices = [probe.feature_info.out_indices[i] for i in out_indices]
        del probe
        self.body = timm.create_model(
            name, pretrained=False, features_only=True, out_indices=tuple(module_indices), **kwargs
        )
        self.name = name
        self.out_channels: List[int] = [int(c) for c in self.body.feature_info.channels()]
        self.reductions: List[int] = [int(r) for r in self.body.feature_info.reduction()]

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return list(self.body(x))


class TorchvisionShuffleNetBackbone(nn.Module):
    """torchvision ShuffleNetV2 (timm has none), random weights.

    Maps: after maxpool (stride 4), stage2 (8), stage3 (16), stage4 (32).
    """

    def __init__(self, name: str = "shufflenet_v2_x1_0") -> None:
        super().__init__()
        import torchvision

        if not name.startswith("shufflenet_v2") or not hasattr(torchvision.models, name):
            raise ValueError(f"unknown torchvision ShuffleNetV2 {name!r} (e.g. shufflenet_v2_x1_0)")
        net = getattr(torchvision.models, name)(weights=None)
        self.name = name
        self.conv1, self.maxpool = net.conv1, net.maxpool
        self.stage2, self.stage3, self.stage4 = net.stage2, net.stage3, net.stage4
        self.out_channels = [
            net.conv1[0].out_channels,
            net.stage2[-1].branch2[-3].out_channels * 2,
            net.stage3[-1].branch2[-3].out_channels * 2,
            net.stage4[-1].branch2[-3].out_channels * 2,
        ]
        self.reductions = list(_STRIDES)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        c1 = self.maxpool(self.conv1(x))
        c2 = self.stage2(c1)
        c3 = self.stage3(c2)
        return [c1, c2, c3, self.stage4(c3)]


def build_backbone(spec: str, **kwargs: Any) -> nn.Module:
    """Backbone by name: ``litevit``, ``litevit_2x``, ``litevit_3x`` (kwargs override the variant config, e.g.
    ``mixer``), ``timm:<name>`` or ``torchvision:shufflenet_v2_x1_0`` (``timm:shufflenet_v2_*`` falls back to it)."""
    if spec in LITEVIT_CONFIGS:
        return LiteViT(**{**LITEVIT_CONFIGS[spec], **kwargs})
    if spec.startswith("timm:"):
        name = spec[len("timm:") :]
        import timm

        if not timm.is_model(name) and name.startswith("shufflenet_v2"):
            return TorchvisionShuffleNetBackbone(name)
        return TimmBackbone(name, **kwargs)
    if spec.startswith("torchvision:"):
        return TorchvisionShuffleNetBackbone(spec[len("torchvision:") :])
    raise ValueError(
        f"unknown backbone {spec!r}; use one of {sorted(LITEVIT_CONFIGS)}, 'timm:<name>' or "
        "'torchvision:shufflenet_v2_x1_0'"
    )


class BackboneImageEncoder(nn.Module):
    """Backbone + neck: ``[B, 3, S, S] -> [B, out_chans, S/16, S/16]`` (SAM's image-embedding contract).

    Args:
        backbone: module returning 4 maps at strides 4..32, with ``out_channels``.
        img_size: the padded square input side S (``SamPredictor`` resizes the longest side to it).
        out_chans: embedding channels.
    """

    def __init__(self, backbone: nn.Module, img_size: int = 640, out_chans: int = 256) -> None:
        super().__init__()
        self.img_size = int(img_size)
        self.backbone = backbone
        self.neck = MultiScaleNeck(backbone.out_channels, out_chans)
        self.out_chans = out_chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.backbone(x))


def build_sam_vit_encoder(
    img_size: int = 1024,
    embed_dim: int = 768,
    depth: int = 12,
    num_heads: int = 12,
    global_attn_indexes: tuple = (2, 5, 8, 11),
    out_chans: int = 256,
) -> nn.Module:
    """segment-anything's ``ImageEncoderViT`` (ViT-B by default) with random weights; never loads a checkpoint."""
    from segment_anything.modeling import ImageEncoderViT

    return ImageEncoderViT(
        depth=depth,
        embed_dim=embed_dim,
        img_size=img_size,
        mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=num_heads,
        patch_size=16,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=tuple(global_attn_indexes),
        window_size=14,
        out_chans=out_chans,
    )

