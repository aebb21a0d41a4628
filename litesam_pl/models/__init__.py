"""Lite-SAM networks: LiteViT (+ Fig. 3 mixers), neck, AutoPPN, LiteSAM (on SAM's prompt encoder / mask decoder)."""
from .autoppn import AutoPPN, decode_proposals, point_nms
from .image_encoder import BackboneImageEncoder, TimmBackbone, TorchvisionShuffleNetBackbone, build_backbone
from .litesam import LiteSAM, build_litesam, build_mask_decoder, build_prompt_encoder
from .litevit import LITEVIT_CONFIGS, LiteViT, LiteViTBlock, PatchMerge
from .mixers import MIXERS, MSPM, build_mixer
from .neck import MultiScaleNeck
from .checkpoint import load_model
from .registry import build_from_config, create_model, list_models, model_config

__all__ = [
    "AutoPPN", "decode_proposals", "point_nms", "BackboneImageEncoder", "TimmBackbone",
    "TorchvisionShuffleNetBackbone", "build_backbone", "LiteSAM", "build_litesam", "build_mask_decoder",
    "build_prompt_encoder", "LITEVIT_CONFIGS", "LiteViT", "LiteViTBlock", "PatchMerge", "MIXERS", "MSPM",
    "build_mixer", "MultiScaleNeck", "build_from_config", "create_model", "list_models", "load_model",
    "model_config",
]
