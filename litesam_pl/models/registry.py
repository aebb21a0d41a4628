"""Model registry: ``create_model(name, **overrides)``, ``model_config``, ``build_from_config``, ``load_model``.

Variants are configs, not copies (timm style): each name maps to a builder and its default keyword arguments.
A model built here carries ``model.model_config = {"name", "kwargs"}`` (all keyword arguments, resolved), enough
to rebuild it.
"""
from __future__ import annotations

import inspect
import os
from typing import Any, Callable, Dict, Tuple

import torch
from torch import nn

from .image_encoder import build_backbone
from .litesam import build_litesam
from .litevit import LITEVIT_CONFIGS, LiteViT

__all__ = ["MODELS", "list_models", "create_model", "model_config", "build_from_config", "load_model", "EXPORT_FORMAT"]

EXPORT_FORMAT = "litesam-pl/weights-v1"


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


def list_models() -> list:
    """Registered names (plus the ``timm:<name>`` / ``torchvision:<name>`` families)."""
    return sorted(MODELS)


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively; reject values that would not survive an export."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
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
        kwargs = _plain(dict(overrides))
    else:
        if name not in MODELS:
            raise ValueError(
                f"unknown model {name!r}; registered: {', '.join(list_models())}, or 'timm:<name>' / "
                "'torchvision:shufflenet_v2_x1_0'"
            )
        builder, defaults = MODELS[name]
        sig = inspect.signature(builder)
        unknown = sorted(set(overrides) - set(sig.parameters))
        if unknown:
            raise TypeError(f"{name}: unknown option(s) {unknown}; accepted: {sorted(sig.parameters)}")
        bound = sig.bind(**{**defaults, **overrides})
        bound.apply_defaults()
        kwargs = _plain(dict(bound.arguments))
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
        raise ValueError(f"malformed model config {cfg!r}: expected {{'name': str, 'kwargs': dict}}")
    kwargs = cfg.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ValueError(f"malformed model config: 'kwargs' must be a dict, got {type(kwargs).__name__}")
    return create_model(cfg["name"], **kwargs)


def load_model(path: str | os.PathLike, map_location: Any = "cpu", strict: bool = True) -> nn.Module:
    """Load an export (``{"format": "litesam-pl/weights-v1", "model", "state_dict"}``) or a Lightning checkpoint
    (``hyper_parameters.model_name/model_kwargs``, state-dict keys prefixed ``model.``). Returns the model in eval
    mode. Always ``torch.load(..., weights_only=True)``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path!r}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupted file, or a pickle with non-weights objects
        raise ValueError(
            f"{path!r} is not a loadable weights file (torch.load weights_only=True failed: {err})"
        ) from err
    if not isinstance(obj, dict):
        raise ValueError(f"{path!r}: unknown format (expected a dict, got {type(obj).__name__})")
    if obj.get("format") == EXPORT_FORMAT:
        cfg, state = obj.get("model"), obj.get("state_dict")
    elif "hyper_parameters" in obj and "state_dict" in obj:
        hp = obj["hyper_parameters"] or {}
        if "model_name" not in hp:
            raise ValueError(f"{path!r}: Lightning checkpoint without hyper_parameters['model_name']")
        cfg = {"name": hp["model_name"], "kwargs": dict(hp.get("model_kwargs") or {})}
        state = {k[len("model.") :]: v for k, v in obj["state_dict"].items() if k.startswith("model.")}
        if not state:
            raise ValueError(f"{path!r}: Lightning checkpoint has no 'model.'-prefixed weights")
    else:
        fmt = obj.get("format", "<none>")
        raise ValueError(
            f"{path!r}: unknown format {fmt!r}; expected an export ({EXPORT_FORMAT!r}) or a Lightning checkpoint"
        )
    if not isinstance(state, dict):
        raise ValueError(f"{path!r}: 'state_dict' is missing or not a dict")
    model = build_from_config(cfg)
    model.load_state_dict(state, strict=strict)
    return model.eval()
