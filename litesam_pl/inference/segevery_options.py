"""SegEvery's options, declared once: ``SegEveryOptions`` (a frozen dataclass) with today's defaults, one help line
per field (``field.metadata["help"]``, also listed in the class docstring) and the validation of every option.

``SegEvery`` / ``segment_everything`` (``segevery.py``), ``LiteSamEverything`` (``everything.py``), the
``litesam segment-everything`` flags (``app.py``, generated from the fields) and the benchmarks read the options
from here. A bad value raises ``OptionError`` (a ``ValueError``): one line naming the option.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field, fields, replace
from numbers import Integral, Real
from typing import Any, Dict, Mapping, Optional, Sequence

import torch

from ..models.autoppn import NMS_KERNEL, TOP_N
from ..models.prompt_forms import SEGEVERY_PROMPT_FORM
from .postprocess import OUTPUT_MODES

__all__ = ["SegEveryOptions", "OptionError", "add_option_flags", "option_flag", "check_int", "check_real",
           "check_choice", "PROMPT_SOURCES", "PROMPT_TYPES", "RANK_BY", "NMS_KINDS", "DECODERS"]

PROMPT_SOURCES = ("autoppn", "grid")
PROMPT_TYPES = ("point", "box", "point+box")
RANK_BY = ("iou", "iou_stability_mean", "stability", "ppn_score")
NMS_KINDS = ("mask", "box", "none")
DECODERS = ("fast", "stock")


class OptionError(ValueError):
    """A bad option value: ``"<owner>: <option> must be <must>, got <value>"`` (one line)."""

    def __init__(self, option: str, must: str, value: Any, owner: str = "SegEveryOptions") -> None:
        self.option, self.must, self.value, self.owner = option, must, value, owner
        super().__init__(f"{owner}: {option} must be {must}, got {value!r}")

    def for_owner(self, owner: str) -> "OptionError":
        """The same error, said by ``owner`` (e.g. ``LiteSamEverything``)."""
        return OptionError(self.option, self.must, self.value, owner)


def check_int(name: str, value: Any, low: int, none_ok: bool = False) -> Optional[int]:
    """``value`` as an ``int >= low`` (None when ``none_ok``); else ``OptionError``."""
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        raise OptionError(name, f"an integer >= {low}" + (" or None" if none_ok else ""), value)
    return int(value)


def check_real(name: str, value: Any, low: float, high: float = math.inf, none_ok: bool = False) -> Optional[float]:
    """``value`` as a float in ``[low, high]`` (finite unless a bound is infinite; None when ``none_ok``)."""
    if value is None and none_ok:
        return None
    v = float(value) if isinstance(value, Real) and not isinstance(value, bool) else None
    if v is None or not low <= v <= high or not (math.isfinite(v) or math.isinf(low)):  # NaN fails
        if math.isfinite(low) and math.isfinite(high):
            rng = f"a number in [{low:g}, {high:g}]"
        elif math.isfinite(low):
            rng = f"a finite number >= {low:g}"
        elif math.isfinite(high):
            rng = f"a number <= {high:g}"
        else:
            rng = "a number (not NaN)"
        raise OptionError(name, rng + (" or None" if none_ok else ""), value)
    return float(value)


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    """``value`` when it is one of ``allowed``; else ``OptionError``."""
    if not isinstance(value, str) or value not in allowed:
        raise OptionError(name, f"one of {tuple(allowed)}", value)
    return value


def _opt(default: Any, help: str, kind: str, *, low: float = -math.inf, high: float = math.inf,
         choices: Sequence[str] = (), none_ok: bool = False, cli: bool = True) -> Any:
    """A ``SegEveryOptions`` field: its default, one help line and its rule (``kind``: int, real, choice, bool,
    bool_or_none, dtype); ``cli=False``: no ``litesam segment-everything`` flag."""
    meta = {"help": help, "kind": kind, "low": low, "high": high, "choices": tuple(choices), "none_ok": none_ok,
            "cli": cli}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class SegEveryOptions:
    """Every option of SegEvery (``SegEvery(model, options)``, ``segment_everything(model, images, **options)``),
    with its default; checked on construction (``OptionError``, one line naming the option). Change some with
    ``options.replace(top_n=64)``; ``options.to_dict()`` gives the keyword arguments.

    Fields (``field.metadata["help"]``):
    """

    prompts: str = _opt("autoppn", "prompt source: 'autoppn' (AutoPPN + Point-NMS + top-N; needs an AutoPPN head) "
                        "or 'grid' (points_per_side^2 points)", "choice", choices=PROMPT_SOURCES)
    top_n: int = _opt(TOP_N, "AutoPPN prompts per image (AutoPPN.decode's top-N)", "int", low=1)
    score_threshold: Optional[float] = _opt(
        None, "AutoPPN score threshold (None: AutoPPN.decode's default; 0: the top_n best in-image local maxima)",
        "real", low=0.0, high=1.0, none_ok=True)
    nms_kernel: int = _opt(NMS_KERNEL, "AutoPPN Point-NMS kernel (cells)", "int", low=1)
    points_per_side: int = _opt(32, "grid size with prompts='grid' (32 as SAM's AMG)", "int", low=1)
    prompt_type: str = _opt(SEGEVERY_PROMPT_FORM, "form AutoPPN proposals are given to the decoder as: 'point', "
                            "'box' or 'point+box' (grid prompts are always points)", "choice", choices=PROMPT_TYPES)
    multimask_output: Optional[bool] = _opt(
        None, "3 masks per prompt or 1 (None: the output the prompt form trains, prompt_forms.multimask_output_for; "
        "'point' for grid prompts)", "bool_or_none")
    pred_iou_thresh: float = _opt(0.88, "predicted-IoU filter, as SAM's AMG (0 or below: off)", "real")
    stability_score_thresh: float = _opt(0.95, "stability filter on the low-resolution logits (0 or below: off)",
                                         "real")
    stability_score_offset: float = _opt(1.0, "logit offset of the stability score", "real", low=0.0)
    box_nms_thresh: float = _opt(0.7, "IoU threshold of the NMS (mask IoU on the low-res masks with nms='mask', box "
                                 "IoU with nms='box')", "real", low=0.0, high=1.0)
    nms: str = _opt("mask", "NMS kind: 'mask', 'box' (as SAM's AMG) or 'none'", "choice", choices=NMS_KINDS)
    nms_resolution: int = _opt(64, "cells a side of the masks the mask NMS compares (0: full low-res)", "int", low=0)
    rank_by: str = _opt("iou", "NMS / output order: 'iou' (as SAM), 'iou_stability_mean' (SAM's AR@1000 ranking), "
                        "'stability' or 'ppn_score' (AutoPPN prompts only)", "choice", choices=RANK_BY)
    max_masks: Optional[int] = _opt(None, "keep at most this many masks per image after the NMS (None: all)", "int",
                                    low=1, none_ok=True)
    output_mode: str = _opt("binary_mask", "'binary_mask' / 'coco_rle' / 'uncompressed_rle' (SAM AMG records) or "
                            "'tensors'", "choice", choices=OUTPUT_MODES, cli=False)
    return_logits: bool = _opt(False, "with 'tensors', also mask_logits and mask_probs [K, H, W] at image "
                               "resolution", "bool", cli=False)
    chunk_size: Optional[int] = _opt(256, "prompts per decoder call (bounds memory; None or 0: all prompts of an "
                                     "image at once)", "int", low=0, none_ok=True)
    decoder: str = _opt("fast", "mask decoder: 'fast' (batched FastMaskDecoder) or 'stock' (SAM's MaskDecoder)",
                        "choice", choices=DECODERS)
    autocast_dtype: Optional[torch.dtype] = _opt(None, "e.g. torch.bfloat16 to run encoder and decoder under "
                                                 "autocast (CUDA); None: float32", "dtype", cli=False)
    image_batch_size: int = _opt(8, "images per encoder call (bounds memory for long lists)", "int", low=1,
                                 cli=False)

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, _checked(f.name, getattr(self, f.name), f.metadata))
        if self.rank_by == "ppn_score" and self.prompts != "autoppn":
            raise OptionError("rank_by", "one of ('iou', 'iou_stability_mean', 'stability') with prompts='grid' "
                              "(grid prompts have no AutoPPN score: ppn_score needs prompts='autoppn')", self.rank_by)

    def replace(self, **changes: Any) -> "SegEveryOptions":
        """A copy with ``changes`` (checked)."""
        return replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        """The options as keyword arguments (``segment_everything(model, images, **options.to_dict())``)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def names(cls) -> tuple:
        """The option names, in declaration order."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def flag_names(cls) -> tuple:
        """The options that are command-line flags (``--top-n`` for ``top_n``; see ``add_option_flags``)."""
        return tuple(f.name for f in fields(cls) if f.metadata["cli"])

    @classmethod
    def from_args(cls, args: argparse.Namespace, **overrides: Any) -> "SegEveryOptions":
        """The options of parsed ``add_option_flags`` flags, with ``overrides`` (checked)."""
        return cls(**{n: getattr(args, n) for n in cls.flag_names() if hasattr(args, n)}, **overrides)


def option_flag(name: str) -> str:
    """The ``litesam segment-everything`` flag of option ``name`` (``--top-n`` for ``top_n``)."""
    return "--" + name.replace("_", "-")


def add_option_flags(parser: Any, names: Optional[Sequence[str]] = None, *,
                     defaults: Optional[Mapping[str, Any]] = None, flags: Optional[Mapping[str, str]] = None) -> None:
    """Add to ``parser`` (a parser or an argument group) one flag per ``SegEveryOptions`` field marked ``cli``
    (``--top-n`` for ``top_n``): its default, type, choices and help from the field (``--multimask-output`` /
    ``--no-multimask-output`` for the None/True/False one).

    ``names``: only these options, in this order (None: every ``cli`` one, in declaration order). ``defaults``:
    ``{option: value}``, another default (the help's ``(default X)`` says it). ``flags``: ``{option: flag}``, another
    flag name (``{"top_n": "--ppn-top-n"}``; the value is then ``args.ppn_top_n``, argparse's name for that flag).
    An option that is no ``cli`` field, or a ``defaults`` / ``flags`` key not in ``names``, raises ``ValueError``."""
    by_name = {f.name: f for f in fields(SegEveryOptions) if f.metadata["cli"]}
    names = tuple(by_name) if names is None else tuple(names)
    defaults, flags = dict(defaults or {}), dict(flags or {})
    unknown = sorted((set(names) | set(defaults) | set(flags)) - set(by_name))
    if unknown:
        raise ValueError(f"not SegEvery option flags: {unknown}; choose from {sorted(by_name)}")
    stray = sorted((set(defaults) | set(flags)) - set(names))
    if stray:
        raise ValueError(f"defaults / flags for options not in names: {stray}")
    for name in names:
        meta = by_name[name].metadata
        value = defaults.get(name, by_name[name].default)
        kw: Dict[str, Any] = {"default": value, "help": meta["help"] + ("" if value is None else f" (default {value})")}
        if meta["kind"] == "bool_or_none":
            kw["action"] = argparse.BooleanOptionalAction
        elif meta["kind"] == "bool":
            kw["action"] = "store_true"
        elif meta["kind"] == "choice":
            kw["choices"] = list(meta["choices"])
        else:
            kw["type"] = int if meta["kind"] == "int" else float
        parser.add_argument(flags.get(name, option_flag(name)), **kw)


def _checked(name: str, value: Any, meta: Any) -> Any:
    kind = meta["kind"]
    if kind == "int":
        return check_int(name, value, int(meta["low"]), meta["none_ok"])
    if kind == "real":
        return check_real(name, value, meta["low"], meta["high"], meta["none_ok"])
    if kind == "choice":
        return check_choice(name, value, meta["choices"])
    if kind in ("bool", "bool_or_none"):
        if not isinstance(value, bool) and not (value is None and kind == "bool_or_none"):
            raise OptionError(name, "True or False" + (" or None" if kind == "bool_or_none" else ""), value)
        return value
    if value is not None and not isinstance(value, torch.dtype):  # dtype
        raise OptionError(name, "a torch.dtype (e.g. torch.bfloat16) or None", value)
    return value


SegEveryOptions.__doc__ = (SegEveryOptions.__doc__ or "") + "".join(
    f"\n    {f.name} (default {f.default!r}): {f.metadata['help']}." for f in fields(SegEveryOptions))
