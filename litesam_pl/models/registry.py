"""Model registry: ``create_model(name, **overrides)``, ``model_config``, ``build_from_config``.

Variants are configs, not copies (timm style): each name maps to a builder and its default keyword arguments.
A model built here carries ``model.model_config = {"name", "kwargs"}`` (all keyword arguments, resolved), enough
to rebuild it. Model files (exports, Lightning checkpoints: ``load_model``, ``read_checkpoint``, ``EXPORT_FORMAT``)
are ``litesam_pl.models.checkpoint``'s (which imports this module, never the reverse).

A name or a file the user got wrong raises ``ModelError`` (a ``ValueError``; ``ModelFileNotFoundError`` is also a
``FileNotFoundError``, ``ModelOptionError`` also a ``TypeError``) with a one-line message that says what to do;
the ``litesam`` command prints it without a traceback.
"""
from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, Dict, List, Tuple

from torch import nn

from .image_encoder import build_backbone
from .litesam import build_litesam
from .litevit import LITEVIT_CONFIGS, LiteViT

__all__ = [
    "MODELS", "list_models", "create_model", "model_config", "build_from_config",
    "check_segmenter", "ModelError", "ModelFileNotFoundError",
    "ModelOptionError", "plain_values",
]

class ModelError(ValueError):
    """A model name, option or model file the user gave cannot be used; the message is one actionable line."""


class ModelFileNotFoundError(ModelError, FileNotFoundError):
    """No file at the path given as a model checkpoint."""


class ModelOptionError(ModelError, TypeError):
    """``create_model`` got a keyword argument its builder does not take."""


def build_litevit(
    variant: str = "litevit",
    mixer: str = "mspm",
    embed_dims: Any = None,
    depths: Any = None,
    mlp_ratios: Any = None,
    layer_scale_init: Any = None,
    drop_path_rate: float = 0.0,
    img_size: Any = None,
) -> LiteViT:
    """A LiteViT backbone variant (``LITEVIT_CONFIGS``), any field overridable. ``img_size`` is accepted for a
    uniform interface with ``litesam*`` and ignored (the backbone is size-agnostic)."""
    if variant not in LITEVIT_CONFIGS:
        raise ValueError(f"unknown LiteViT variant {variant!r}; choose one of {sorted(LITEVIT_CONFIGS)}")
    cfg = dict(LITEVIT_CONFIGS[variant])
    for key, val in (("embed_dims", embed_dims), ("depths", depths), ("mlp_ratios", mlp_ratios)):
        if val is not None:
            cfg[key] = val
    return LiteViT(mixer=mixer, layer_scale_init=layer_scale_init, drop_path_rate=drop_path_rate, **cfg)


def build_timm_backbone(name: str, **kwargs: Any) -> nn.Module:
    """``timm:<name>`` / ``torchvision:<name>`` backbone (features at strides 4..32, random weights)."""
    return build_backbone(name, **kwargs)


# name -> (builder, default kwargs)
MODELS: Dict[str, Tuple[Callable[..., nn.Module], Dict[str, Any]]] = {
    "litevit": (build_litevit, {"variant": "litevit"}),
    "litevit_2x": (build_litevit, {"variant": "litevit_2x"}),
    "litevit_3x": (build_litevit, {"variant": "litevit_3x"}),
    "litesam": (build_litesam, {"backbone": "litevit"}),
    "litesam_2x": (build_litesam, {"backbone": "litevit_2x"}),
    "litesam_3x": (build_litesam, {"backbone": "litevit_3x"}),
    # SAM ViT-B image encoder (random weights) with SAM's full-width decoder and an AutoPPN head.
    "sam_vit_b": (build_litesam, {"backbone": "sam_vit_b", "img_size": 1024, "decoder_mlp_dim": 2048}),
}


def list_models(kind: str = "all") -> list:
    """Registered names, sorted (plus the ``timm:<name>`` / ``torchvision:<name>`` backbone families).

    ``kind``: ``"all"``; ``"segmenter"``: full Lite-SAM models (image encoder, prompt encoder, mask decoder: what
    ``segment-everything`` runs); ``"backbone"``: image backbones only (LiteViT variants)."""
    if kind == "all":
        return sorted(MODELS)
    if kind not in ("segmenter", "backbone"):
        raise ValueError(f"list_models: kind must be 'all', 'segmenter' or 'backbone', got {kind!r}")
    return sorted(n for n, (builder, _) in MODELS.items() if (builder is build_litesam) == (kind == "segmenter"))


def _did_you_mean(name: str, choices: List[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_segmenter(name: str) -> None:
    """Raise ``ModelError`` unless ``name`` is a full Lite-SAM model (``list_models("segmenter")``): a backbone
    (``litevit*``, ``timm:*``, ``torchvision:*``) cannot segment on its own."""
    segmenters = list_models("segmenter")
    if name in segmenters:
        return
    choices = ", ".join(segmenters)
    if name in MODELS or name.startswith(("timm:", "torchvision:")):
        raise ModelError(
            f"{name} is an image backbone, not a Lite-SAM model (no prompt encoder or mask decoder); use one of: "
            f"{choices} (a backbone goes inside one: create_model('litesam', backbone={name!r}))"
        )
    raise ModelError(f"unknown model {name!r}{_did_you_mean(name, segmenters)}; Lite-SAM models: {choices}")


def plain_values(value: Any) -> Any:
    """Tuples -> lists, recursively; reject values that would not survive an export."""
    if isinstance(value, (list, tuple)):
        return [plain_values(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain_values(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"model kwargs must be plain Python values, got {type(value).__name__}: {value!r}")


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model with random weights.

    ``name`` is one of ``list_models()``, ``timm:<name>`` or ``torchvision:shufflenet_v2_x1_0`` (backbones).
    ``overrides`` replace the builder's keyword arguments, e.g. ``create_model("litesam", img_size=1024,
    backbone="timm:mobilenetv2_100", ppn_stem="conv", ppn_groups=1, autoppn=False)`` or
    ``create_model("litevit", mixer="pool")``.
    """
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    if name.startswith(("timm:", "torchvision:")):
        builder, defaults = build_timm_backbone, {}
        model = builder(name, **overrides)
        kwargs = plain_values(dict(overrides))
    else:
        if name not in MODELS:
            raise ModelError(
                f"unknown model {name!r}{_did_you_mean(name, list_models())}; registered: {', '.join(list_models())}, "
                "or 'timm:<name>' / 'torchvision:shufflenet_v2_x1_0'"
            )
        builder, defaults = MODELS[name]
        sig = inspect.signature(builder)
        unknown = sorted(set(overrides) - set(sig.parameters))
        if unknown:
            raise ModelOptionError(f"{name}: unknown option(s) {unknown}; accepted: {sorted(sig.parameters)}")
        bound = sig.bind(**{**defaults, **overrides})
        bound.apply_defaults()
        kwargs = plain_values(dict(bound.arguments))
        model = builder(**bound.arguments)
    model.model_config = {"name": name, "kwargs": kwargs}
    return model


def model_config(model: nn.Module) -> Dict[str, Any]:
    """The ``{"name", "kwargs"}`` that rebuild ``model`` (set by ``create_model``)."""
    cfg = getattr(model, "model_config", None)
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise ValueError("model has no model_config: build it with litesam_pl.create_model(name, **kwargs)")
    return {"name": cfg["name"], "kwargs": dict(cfg.get("kwargs") or {})}


def build_from_config(cfg: Dict[str, Any]) -> nn.Module:
    """Rebuild a model (random weights) from ``model_config``'s dict."""
    if not isinstance(cfg, dict) or not isinstance(cfg.get("name"), str):
        raise ModelError(f"malformed model config {cfg!r}: expected {{'name': str, 'kwargs': dict}}")
    kwargs = cfg.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ModelError(f"malformed model config: 'kwargs' must be a dict, got {type(kwargs).__name__}")
    return create_model(cfg["name"], **kwargs)
