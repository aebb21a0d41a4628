"""Model files: the one place that knows their keys. Reading (``read_checkpoint``, ``load_model``, the warm start
``load_init_weights``), writing (``save_atomic``) and the model entries written into them (``export_payload`` for
``litesam export``, ``write_model_entry`` for Lightning checkpoints) live here; nothing else parses a checkpoint's
keys.

Two formats, both read with ``torch.load(weights_only=True)`` (tensors and plain Python values only):

- export (``litesam export``): ``{"format": EXPORT_FORMAT, "model": {"name", "kwargs"}, "state_dict": {...}}``.
- Lightning checkpoint (``litesam fit``): ``checkpoint[MODEL_KEY] = {"name", "kwargs"}`` (``write_model_entry``,
  called by the LightningModule's ``on_save_checkpoint``) and the network's weights under ``state_dict["model.*"]``
  (the LightningModule keeps the network in ``self.model``). A checkpoint without ``MODEL_KEY`` names the model by
  the LightningModule's hyper-parameters: its ``model`` part (``{"name", "kwargs", "img_size", "ppn_groups"}``) or,
  written before ``MODEL_KEY`` existed, the flat ``model_name`` / ``model_kwargs`` (``LEGACY_HPARAMS``): read as a
  fallback, here only.

``{"name", "kwargs"}`` is ``registry.model_config``: what ``registry.build_from_config`` rebuilds the network from.
A file that is not ours, or whose weights do not fit, raises ``registry.ModelError`` with one line that names the
file and what is accepted.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, MutableMapping, Optional, Tuple

import torch
from torch import nn

from ..files import AtomicPath
from .registry import ModelError, ModelFileNotFoundError, build_from_config, model_config, plain_values

__all__ = [
    "load_init_weights",
    "EXPORT_FORMAT", "MODEL_KEY", "LEGACY_HPARAMS", "export_payload", "write_model_entry", "read_checkpoint",
    "load_model", "load_or_random", "save_atomic",
]

EXPORT_FORMAT = "litesam-pl/weights-v1"
MODEL_KEY = "litesam_model"  # a Lightning checkpoint's {"name", "kwargs"} of its network
LEGACY_HPARAMS = ("model_name", "model_kwargs")  # checkpoints before MODEL_KEY: the LightningModule's arguments
STATE_PREFIX = "model."  # the network's weights in a Lightning checkpoint's state_dict
ACCEPTED_FILES = "expected a Lightning .ckpt or a `litesam export` .pt"
# keys of the official SAM checkpoints (segment-anything's sam_vit_{b,l,h}_*.pth: a bare state dict)
_SAM_KEY_PREFIXES = ("image_encoder.patch_embed.", "image_encoder.blocks.0.", "image_encoder.pos_embed")


def export_payload(model: nn.Module) -> Dict[str, Any]:
    """The export file's content for ``model`` (built by ``litesam_pl.create_model``): weights detached to CPU."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"format": EXPORT_FORMAT, "model": plain_values(model_config(model)), "state_dict": state}


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` through ``<path>.tmp`` and ``os.replace`` (``litesam_pl.files.AtomicPath``; the
    parent folder created): the file appears only once complete, so a killed run never leaves half a model file.
    Returns the path."""
    with AtomicPath(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def write_model_entry(checkpoint: MutableMapping[str, Any], model: nn.Module) -> None:
    """Record ``model``'s ``{"name", "kwargs"}`` under ``checkpoint[MODEL_KEY]`` (a Lightning checkpoint dict in
    ``on_save_checkpoint``), so that ``load_model`` rebuilds it without knowing the LightningModule."""
    checkpoint[MODEL_KEY] = plain_values(model_config(model))


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


def _lightning_model_entry(path: str, obj: Dict[str, Any]) -> Dict[str, Any]:
    """A Lightning checkpoint's ``{"name", "kwargs"}``: ``obj[MODEL_KEY]``, else the module's hyper-parameters: the
    ``model`` part (``{"name", "kwargs", "img_size", "ppn_groups"}``, ``litesam_pl.modules.config.ModelSpec``) or,
    in checkpoints before the typed parts, the flat ``model_name`` / ``model_kwargs`` (``LEGACY_HPARAMS``)."""
    if MODEL_KEY in obj:
        return obj[MODEL_KEY]
    hp = obj.get("hyper_parameters") or {}
    spec = hp.get("model")
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        kwargs = dict(spec.get("kwargs") or {})
        kwargs.update({k: spec[k] for k in ("img_size", "ppn_groups") if spec.get(k) is not None})
        return {"name": spec["name"], "kwargs": kwargs}
    name_key, kwargs_key = LEGACY_HPARAMS
    if name_key not in hp:
        raise ModelError(f"{path}: Lightning checkpoint without {MODEL_KEY!r}, hyper_parameters['model'] or "
                         f"hyper_parameters[{name_key!r}] (not written by a litesam-pl module)")
    return {"name": hp[name_key], "kwargs": dict(hp.get(kwargs_key) or {})}


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
    elif (MODEL_KEY in obj or "hyper_parameters" in obj) and "state_dict" in obj:
        cfg = _lightning_model_entry(path, obj)
        n = len(STATE_PREFIX)
        state = {k[n:]: v for k, v in obj["state_dict"].items() if k.startswith(STATE_PREFIX)}
        if not state:
            raise ModelError(f"{path}: Lightning checkpoint has no {STATE_PREFIX!r}-prefixed weights")
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


def load_model(path: str | os.PathLike, map_location: Any = "cpu", strict: bool = True,
               img_size: Optional[int] = None) -> nn.Module:
    """Load an export or a Lightning checkpoint (see the module docstring for both formats). Returns the model in
    eval mode. Always ``torch.load(..., weights_only=True)``. A file that is not ours, or whose weights do not fit,
    raises ``ModelError`` (``ModelFileNotFoundError`` when there is no file).

    ``img_size``: build the network for another input side than it was trained at (LiteViT and the timm backbones
    are convolutional and SAM's prompt encoder is rebuilt for the side, so the same weights load; a ViT's absolute
    position embedding does not, which is a ``ModelError``)."""
    path = os.fspath(path)
    cfg, state = read_checkpoint(path, map_location=map_location)
    if img_size is not None:
        cfg = {**cfg, "kwargs": {**(cfg.get("kwargs") or {}), "img_size": int(img_size)}}
    try:
        model = build_from_config(cfg)
    except ModelError as err:
        raise ModelError(f"{path}: cannot build the model it names: {err}") from err
    _check_state(path, cfg["name"], model, state, strict)
    model.load_state_dict(state, strict=strict)
    return model.eval()


def load_or_random(ckpt: str | os.PathLike | None, model: str = "litesam", seed: int | None = 0,
                   check: bool = False, **overrides: Any) -> Tuple[nn.Module, Dict[str, Any]]:
    """The one "load the checkpoint, else random weights" rule of every front end (CLI, web app, benchmarks).

    With ``ckpt``: ``load_model(ckpt)`` (eval mode; ``model``, ``overrides`` unused). Without: ``create_model(model,
    **overrides)`` after ``torch.manual_seed(seed)`` (the same random model on every run; ``seed=None`` leaves the
    global RNG alone), still in train mode. ``check`` first refuses a non-segmenter ``model`` (``check_segmenter``).
    Returns ``(model, info)``, ``info = {"ckpt": absolute path or None, "random_weights": bool, "model": name,
    "model_kwargs": overrides}``; each caller prints its own messages and builds its own JSON from it.
    """
    from .registry import check_segmenter, create_model

    if ckpt:
        net = load_model(ckpt)
        name = getattr(net, "model_config", {}).get("name", type(net).__name__)
        return net, {"ckpt": os.path.abspath(os.fspath(ckpt)), "random_weights": False, "model": name,
                     "model_kwargs": {}}
    if check:
        check_segmenter(model)
    if seed is not None:
        torch.manual_seed(seed)
    net = create_model(model, **overrides)
    return net, {"ckpt": None, "random_weights": True, "model": model, "model_kwargs": dict(overrides)}


def load_init_weights(model: torch.nn.Module, path: str, strict_shapes: bool = True) -> Dict[str, List[str]]:
    """Warm-start ``model`` from a Lightning checkpoint (keys ``model.*``) or a ``litesam export`` file (the
    recipes' ``init_from``; ``litesam_pl.modules`` re-exports it).

    Keys missing from the file keep their initialisation; keys whose shape differs are skipped. Returns
    ``{"loaded": [...], "missing": [...], "skipped": [...]}``.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"init_from: no checkpoint at {p}")
    try:
        blob = _torch_load(os.fspath(p), "cpu")
    except ModelError as e:  # corrupted / not a torch file: _torch_load's one line, as the RuntimeError it was
        raise RuntimeError(f"init_from: cannot read the checkpoint: {e}") from e
    if not isinstance(blob, dict) or "state_dict" not in blob:
        raise ValueError(f"init_from: {p} has no 'state_dict' (expected a Lightning checkpoint or a litesam export)")
    sd = blob["state_dict"]
    if any(k.startswith(STATE_PREFIX) for k in sd):
        sd = {k[len(STATE_PREFIX):]: v for k, v in sd.items() if k.startswith(STATE_PREFIX)}
    own = model.state_dict()
    loaded, skipped = [], []
    to_load = {}
    for k, v in sd.items():
        if k in own and own[k].shape == v.shape:
            to_load[k] = v
            loaded.append(k)
        else:
            skipped.append(k)
    model.load_state_dict(to_load, strict=False)
    missing = [k for k in own if k not in to_load]
    return {"loaded": loaded, "missing": missing, "skipped": skipped}
