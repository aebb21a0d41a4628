"""Model registry: ``create_model(name, **overrides)``, ``model_config``, ``build_from_config``, ``load_model``.

Variants are configs, not copies (timm style): each name maps to a builder and its default keyword arguments.
A model built here carries ``model.model_config = {"name", "kwargs"}`` (all keyword arguments, resolved), enough
to rebuild it.

A name or a file the user got wrong raises ``ModelError`` (a ``ValueError``; ``ModelFileNotFoundError`` is also a
``FileNotFoundError``, ``ModelOptionError`` also a ``TypeError``) with a one-line message that says what to do;
the ``litesam`` command prints it without a traceback.
"""
from __future__ import annotations

import difflib
import inspect
import os
from typing import Any, Callable, Dict, List, Tuple

import torch
from torch import nn

from .image_encoder import build_backbone
from .litesam import build_litesam
from .litevit import LITEVIT_CONFIGS, LiteViT

__all__ = [
    "MODELS", "list_models", "create_model", "model_config", "build_from_config", "load_model", "read_checkpoint",
    "check_segmenter", "EXPORT_FORMAT", "ModelError", "ModelFileNotFoundError",
    "ModelOptionError",
]

EXPORT_FORMAT = "litesam-pl/weights-v1"
ACCEPTED_FILES = "expected a Lightning .ckpt or a `litesam export` .pt"
# keys of the official SAM checkpoints (segment-anything's sam_vit_{b,l,h}_*.pth: a bare state dict)
_SAM_KEY_PREFIXES = ("image_encoder.patch_embed.", "image_encoder.blocks.0.", "image_encoder.pos_embed")


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
        raise ModelError(f"malformed model config {cfg!r}: expected {{'name': str, 'kwargs': dict}}")
    kwargs = cfg.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ModelError(f"malformed model config: 'kwargs' must be a dict, got {type(kwargs).__name__}")
    return create_model(cfg["name"], **kwargs)


def _looks_like_torch_file(path: str) -> bool:
    """True for a zip archive (``torch.save``'s format) or a pickle (the legacy format): the first bytes."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def _first_line(err: BaseException) -> str:
    """The first sentence of the line of a (multi-line) torch error that says what went wrong."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    line = next((ln for ln in lines if "WeightsUnpickler error" in ln), lines[0] if lines else type(err).__name__)
    return line.replace("WeightsUnpickler error: ", "").split(". ")[0].rstrip(".")  # its first sentence


def _torch_load(path: str, map_location: Any) -> Any:
    """``torch.load(weights_only=True)`` with one-line errors (``ModelError``) for files that are not ours."""
    if not _looks_like_torch_file(path):
        raise ModelError(
            f"{path} is not a litesam-pl checkpoint or export ({ACCEPTED_FILES}); it is not a loadable torch file"
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except RuntimeError as err:
        raise ModelError(f"{path} is not a litesam-pl checkpoint or export ({ACCEPTED_FILES}); not a loadable torch "
                         f"file: {_first_line(err)}") from err
    except Exception as err:  # a pickle with non-weights objects, or a corrupted archive
        raise ModelError(f"{path} is not a litesam-pl checkpoint or export ({ACCEPTED_FILES}); not a loadable "
                         f"weights-only torch file: {_first_line(err)}") from err


def _is_sam_state_dict(obj: Dict[Any, Any]) -> bool:
    """A bare state dict with SAM ViT image-encoder keys (official ``sam_vit_*.pth``)."""
    return any(isinstance(k, str) and k.startswith(_SAM_KEY_PREFIXES) for k in obj)


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """``(model config {"name", "kwargs"}, state dict)`` of an export or a Lightning checkpoint, without building
    the model. Errors are ``ModelError`` with one line that names the file and what is accepted."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        what = "is a directory, not a file" if os.path.isdir(path) else "does not exist"
        raise ModelFileNotFoundError(f"no model file at {path}: it {what} ({ACCEPTED_FILES})")
    obj = _torch_load(path, map_location)
    if not isinstance(obj, dict):
        raise ModelError(f"{path}: unknown format (a {type(obj).__name__}, not a dict); {ACCEPTED_FILES}")
    if obj.get("format") == EXPORT_FORMAT:
        cfg, state = obj.get("model"), obj.get("state_dict")
    elif "hyper_parameters" in obj and "state_dict" in obj:
        hp = obj["hyper_parameters"] or {}
        if "model_name" not in hp:
            raise ModelError(f"{path}: Lightning checkpoint without hyper_parameters['model_name'] (not written by "
                             "a litesam-pl module)")
        cfg = {"name": hp["model_name"], "kwargs": dict(hp.get("model_kwargs") or {})}
        state = {k[len("model.") :]: v for k, v in obj["state_dict"].items() if k.startswith("model.")}
        if not state:
            raise ModelError(f"{path}: Lightning checkpoint has no 'model.'-prefixed weights")
    elif "format" not in obj and _is_sam_state_dict(obj):
        raise ModelError(
            f"{path} is an official SAM checkpoint (a segment-anything state dict: image_encoder.patch_embed..., "
            f"image_encoder.blocks.0...), not a litesam-pl file; {ACCEPTED_FILES} (from `litesam fit` / `litesam "
            "export`)"
        )
    else:
        fmt = obj.get("format", "<none>")
        raise ModelError(f"{path}: unknown format {fmt!r}; {ACCEPTED_FILES} (format {EXPORT_FORMAT!r})")
    if not isinstance(state, dict):
        raise ModelError(f"{path}: 'state_dict' is missing or not a dict")
    return cfg, state


def _examples(keys: List[str], n: int = 3) -> str:
    """``a, b, c, ...`` (the first ``n`` of ``keys``)."""
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")


def _key_summary(keys: List[str]) -> str:
    """``N <what> key(s) (module.*: count, ...; e.g. a, b, c, ...)``: the modules they belong to and a few."""
    counts: Dict[str, int] = {}
    for k in keys:
        top = k.split(".", 1)[0]
        counts[top] = counts.get(top, 0) + 1
    modules = ", ".join(f"{m}.*: {c}" for m, c in sorted(counts.items(), key=lambda mc: -mc[1]))
    return f"{modules}; e.g. {_examples(keys)}"


def _check_state(path: str, name: str, model: nn.Module, state: Dict[str, Any], strict: bool) -> None:
    """``ModelError`` naming how many keys are missing / unexpected / of another shape, and a few of each."""
    own = model.state_dict()
    missing = [k for k in own if k not in state] if strict else []
    unexpected = [k for k in state if k not in own] if strict else []
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s) ({_key_summary(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s) ({_key_summary(unexpected)})")
    if shapes:
        problems.append(f"{len(shapes)} key(s) of another shape (file vs model: {_examples(shapes, 2)})")
    if problems:
        raise ModelError(f"{path}: its weights do not fit the model it names ({name}): {'; '.join(problems)}")


def load_model(path: str | os.PathLike, map_location: Any = "cpu", strict: bool = True) -> nn.Module:
    """Load an export (``{"format": "litesam-pl/weights-v1", "model", "state_dict"}``) or a Lightning checkpoint
    (``hyper_parameters.model_name/model_kwargs``, state-dict keys prefixed ``model.``). Returns the model in eval
    mode. Always ``torch.load(..., weights_only=True)``. A file that is not ours, or whose weights do not fit,
    raises ``ModelError`` (``ModelFileNotFoundError`` when there is no file)."""
    path = os.fspath(path)
    cfg, state = read_checkpoint(path, map_location=map_location)
    try:
        model = build_from_config(cfg)
    except ModelError as err:
        raise ModelError(f"{path}: cannot build the model it names: {err}") from err
    _check_state(path, cfg["name"], model, state, strict)
    model.load_state_dict(state, strict=strict)
    return model.eval()

