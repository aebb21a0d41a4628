"""The typed parts of a training module's configuration: ``LiteSAMTaskBase(model, mask_loss, ppn_loss, optimizer,
lr_scheduler, prompts, validation, init_from)``. Each part is a frozen dataclass whose fields LightningCLI turns into
options (``--model.init_args.mask_loss.focal_weight 20``, or a ``mask_loss:`` block in a recipe); each checks its
values when built (``ConfigError``: one line naming the option). The loss parts' defaults are the training recipes'
loss settings (the paper's and ours, each field says which): they live here only, and a recipe writes a loss field
only to change it. The constructor also takes a part as a plain dict (what a checkpoint's hyper-parameters hold).

The optimizer and its learning-rate schedule are LightningCLI callables instead (``OptimizerCallable``,
``LRSchedulerCallable``: a recipe's ``{class_path, init_args}``); ``optimization`` checks them and gives each as such
a plain ``{class_path, init_args}`` dict (``CallableSpec``: what the hyper-parameters hold), ``build`` turns one back
into the callable.

``upgrade_hparams`` maps what checkpoints written before hold onto today's arguments: the flat arguments of the first
modules (``lr``, ``focal_weight``, ``model_kwargs``, ...: ``upgrade_flat_hparams``) and the optimizer part of the
next ones (``optimizer: {lr, weight_decay, betas, schedule, warmup_steps, min_lr_ratio}``: ``upgrade_optimizer``).
"""
from __future__ import annotations

import functools
import importlib
import inspect
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Callable, Dict, Mapping, NamedTuple, Optional, Tuple, Type, TypeVar

from litesam_pl.losses import BOX_UNITS

__all__ = ["ConfigError", "ModelSpec", "MaskLossConfig", "PPNLossConfig", "PromptConfig", "ValidationConfig", "PARTS",
           "POINT_LOSS_FOR_TARGETS", "FLAT_HPARAMS", "OLD_OPTIMIZER_FIELDS", "PAPER_OPTIMIZER", "WARMUP_COSINE",
           "RECIPE_CALLABLES", "CallableSpec", "Optimization", "coerce", "plain", "optimization", "build",
           "upgrade_optimizer", "upgrade_flat_hparams", "upgrade_hparams", "moved_option", "spec_of", "import_path"]

# the AutoPPN point loss each target form is trained with (Table 2 switch (2) "GT & loss": one setting)
POINT_LOSS_FOR_TARGETS = {"distance": "hard_mse", "gaussian": "focal"}


class ConfigError(ValueError):
    """A configuration value the user can fix; the message is one line that names the option."""


def _choice(option: str, value: Any, choices: Tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{option} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def _at_least(option: str, value: Any, low: float) -> None:
    if value < low:
        raise ConfigError(f"{option} must be >= {low}, got {value!r}")


@dataclass(frozen=True)
class ModelSpec:
    """The network: ``litesam_pl.create_model(name, **kwargs)``, plus ``img_size`` / ``ppn_groups`` when set.

    Attributes:
        name: registry name (``litesam``, ``litesam_2x``, ``litesam_3x``, ``sam_vit_b``, ...).
        kwargs: the other ``create_model`` overrides (``backbone``, ``mixer``, ``ppn_stem``, ``autoppn``, ...).
            ``ppn_kwargs.stride`` (default 8) is the AutoPPN grid stride: ``litesam`` links it into
            ``data.ppn_stride`` (the targets' grid), so it is set here only.
        img_size: input side ``S``. ``litesam fit`` links it from ``data.img_size`` (set the size there, once);
            ``None``: the registry's default (640; 1024 for ``sam_vit_b``).
        ppn_groups: AutoPPN size groups (3, or 1 = object grouping off). ``litesam fit`` links it from
            ``data.num_groups``; ``None``: the registry's default (3).
    A key of ``kwargs`` that contradicts ``img_size`` / ``ppn_groups`` is an error.
    """

    name: str = "litesam"
    kwargs: Dict[str, Any] = field(default_factory=dict)
    img_size: Optional[int] = None
    ppn_groups: Optional[int] = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"model.name must be a registry name (a non-empty str), got {self.name!r}")
        if not isinstance(self.kwargs, Mapping):
            raise ConfigError(f"model.kwargs must be a dict, got {type(self.kwargs).__name__}")
        object.__setattr__(self, "kwargs", dict(self.kwargs))
        links = {"img_size": "data.img_size", "ppn_groups": "data.num_groups"}
        for key, source in links.items():
            value = getattr(self, key)
            if value is not None and key in self.kwargs and self.kwargs[key] != value:
                raise ConfigError(f"model.kwargs.{key}={self.kwargs[key]!r} contradicts model.{key}={value!r} "
                                  f"(linked from {source}): set it once, as {source}")

    def create_kwargs(self) -> Dict[str, Any]:
        """The keyword arguments of ``create_model``."""
        out = dict(self.kwargs)
        for key in ("img_size", "ppn_groups"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True)
class MaskLossConfig:
    """SAM's mask loss ``L_mask`` (Eq. 2) on the prompted masks (``L_total = ppn_loss.weight * L_ppn + weight *
    L_mask``). The defaults are every recipe's settings.

    Attributes:
        focal_weight: weight of the sigmoid focal loss (paper: focal:dice = 10:1; SAM used 20:1).
        dice_weight: weight of the dice loss.
        iou_weight: weight of the IoU head's MSE (our choice: 1, SAM's; the paper names the term, not its weight).
        focal_alpha: focal loss class balance; ``< 0`` turns it off (our choice, -1: RetinaNet's 0.25 weights
            foreground pixels 1:3 and a young decoder under-segments; the paper states no alpha).
        focal_gamma: focal loss focusing parameter (RetinaNet's 2).
        resolution: ``full``: the low-res logits are upsampled (bilinear) to the input size ``S`` and compared with
            the full-resolution masks (small masks keep their pixels); ``low``: the masks are area-downsampled to the
            logits' ``S/4`` (16x fewer loss pixels; small masks can vanish); ``points``: focal and dice on ``points``
            points per mask output, 3/4 of them the most uncertain of 3x as many random candidates, 1/4 uniform
            (Mask2Former / PointRend), logits read bilinearly (what the upsampled mask has there), targets read from
            the full-resolution masks; the IoU head regresses the IoU at the logits' ``S/4``. Memory per mask
            output: ``points`` values instead of ``S x S``.
        points: points per mask output for ``resolution: points`` (Mask2Former: 112 x 112).
        min_train_mask_area: in training, prompts whose target mask has fewer pixels (at ``S``) are left out of the
            mask loss (our choice, 0: every mask, however small); validation always scores every mask.
        weight: the weight of ``L_mask`` in ``L_total`` (paper: 1).
    """

    focal_weight: float = 10.0
    dice_weight: float = 1.0
    iou_weight: float = 1.0
    focal_alpha: float = -1.0
    focal_gamma: float = 2.0
    resolution: str = "full"
    points: int = 12544
    min_train_mask_area: int = 0
    weight: float = 1.0

    def __post_init__(self) -> None:
        _choice("mask_loss.resolution", self.resolution, ("full", "low", "points"))
        _at_least("mask_loss.points", int(self.points), 1)
        _at_least("mask_loss.min_train_mask_area", int(self.min_train_mask_area), 0)


@dataclass(frozen=True)
class PPNLossConfig:
    """The AutoPPN loss ``L_ppn`` (Eq. 1): ``heatmap_weight * L_point + box_weight * L_box`` per size group
    (``litesam_pl.losses.PPNLoss``). The defaults are every recipe's settings.

    Attributes:
        heatmap_weight: weight of the point (heatmap) loss (paper: hard-mining MSE : Smooth-L1 = 2:1).
        box_weight: weight of the Smooth-L1 box loss.
        point_loss: ``hard_mse`` (ours, distance-transform targets) or ``focal`` (Gaussian targets, the Table 2
            baseline). ``litesam fit`` links it from ``data.target_mode`` (``distance`` -> ``hard_mse``,
            ``gaussian`` -> ``focal``: ``POINT_LOSS_FOR_TARGETS``).
        neg_ratio: hard negatives per positive in the hard-mining MSE.
        box_beta: Smooth-L1 beta, in ``box_unit`` units (our choice: 1/9, of the box side with ``box_unit: box``).
        box_unit: ``box`` (our choice: box distances relative to the target box's width/height, the same scale at
            any input size), ``cell`` (grid cells, i.e. stride units) or ``image`` (fractions of S).
        box_weighting: ``centerness`` (our choice: cells weighted by their point target, FCOS-style, so the box is
            learnt best where Point-NMS reads it) or ``uniform`` (every cell a mask owns alike).
        weight: the weight of ``L_ppn`` in ``L_total`` (paper: 1).
    """

    heatmap_weight: float = 2.0
    box_weight: float = 1.0
    point_loss: str = "hard_mse"
    neg_ratio: float = 3.0
    box_beta: float = 1.0 / 9.0
    box_unit: str = "box"
    box_weighting: str = "centerness"
    weight: float = 1.0

    def __post_init__(self) -> None:
        _choice("ppn_loss.point_loss", self.point_loss, tuple(POINT_LOSS_FOR_TARGETS.values()))
        _choice("ppn_loss.box_unit", self.box_unit, tuple(BOX_UNITS))
        _choice("ppn_loss.box_weighting", self.box_weighting, ("uniform", "centerness"))
        _at_least("ppn_loss.neg_ratio", self.neg_ratio, 0)


@dataclass(frozen=True)
class PromptConfig:
    """The training prompts of the mask loss.

    Attributes:
        point_weight: weight of the point-prompted mask loss.
        box_weight: weight of the box-prompted mask loss (a point with a box counts as a box).
        max_per_image: at most this many (valid) prompts per image go through the decoder in training (``None``:
            every prompt the data gives, ``data.max_masks``).
    """

    point_weight: float = 1.0
    box_weight: float = 1.0
    max_per_image: Optional[int] = None

    def __post_init__(self) -> None:
        if self.max_per_image is not None:
            _at_least("prompts.max_per_image", int(self.max_per_image), 1)


@dataclass(frozen=True)
class ValidationConfig:
    """What validation (and ``litesam test``, as ``test/*``) computes. These are training-time proxies on the
    validation shards, at the input size ``S``, named apart from the benchmarks' official figures
    (``benchmarks/coco.py``: per-category COCO AP, and AR@1000 of 256 AutoPPN prompts with SAM's proposal ranking).

    Attributes:
        compute_map: also compute ``val/ap_1box`` and ``val/ap50_1box``: COCO AP (IoU 0.5:0.95, and at 0.5) of the
            1-box masks (prompted by the exact GT boxes) scored by the IoU head, all masks one class.
        top_n: AutoPPN prompts per image for SegEvery's mask AR and AutoPPN's box AR (class-agnostic, IoU
            0.5:0.95): ``val/ar100`` / ``val/box_ar100`` over the 100 best-ranked proposals, and, for ``top_n`` >
            100, ``val/ar_top<N>`` / ``val/box_ar_top<N>`` (N = ``top_n``; ``val/ar_top1000`` at the default) over
            all of them.
        ppn_score_threshold: score threshold of ``AutoPPN.decode`` in validation (0: every Point-NMS maximum).
    """

    compute_map: bool = True
    top_n: int = 1000
    ppn_score_threshold: float = 0.0

    def __post_init__(self) -> None:
        _at_least("validation.top_n", int(self.top_n), 1)


# the typed parts of ``LiteSAMTaskBase(...)``: argument name -> type (``optimizer`` and ``lr_scheduler`` are callables)
PARTS = {"model": ModelSpec, "mask_loss": MaskLossConfig, "ppn_loss": PPNLossConfig, "prompts": PromptConfig,
         "validation": ValidationConfig}

T = TypeVar("T")


def coerce(cls: Type[T], value: Any, option: str) -> T:
    """``value`` as a ``cls``: itself, a dict of its fields (a checkpoint's hyper-parameters), or ``None`` (the
    defaults)."""
    if isinstance(value, cls):
        return value
    if value is None:
        return cls()
    if isinstance(value, Mapping):
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ConfigError(f"{option}: unknown field(s) {unknown}; {cls.__name__} has {sorted(names)}")
        return cls(**value)
    raise ConfigError(f"{option} must be a {cls.__name__} or a dict, got {type(value).__name__}")


def plain(value: Any) -> Any:
    """A part as a plain dict (hyper-parameters: YAML- and ``weights_only``-loadable); other values unchanged."""
    return asdict(value) if is_dataclass(value) and not isinstance(value, type) else value


# ------------------------------------------------------------------------------------------------------------------
# the optimizer and its learning-rate schedule: LightningCLI callables, saved as {class_path, init_args}

CallableSpec = Dict[str, Any]
"""``{"class_path": "torch.optim.Adam", "init_args": {"lr": 4e-5, ...}}``: a callable as a recipe (and LightningCLI's
``config.yaml``) writes it, and as the hyper-parameters hold it (plain data: YAML, ``weights_only``)."""

# the paper's optimizer, Adam at lr 4e-5 (Adam's own betas, no weight decay): LiteSAMTaskBase's default
PAPER_OPTIMIZER: CallableSpec = {"class_path": "torch.optim.Adam",
                                 "init_args": {"lr": 4e-5, "betas": [0.9, 0.999], "weight_decay": 0.0}}
WARMUP_COSINE = "litesam_pl.modules.schedules.WarmupCosine"
# the classes the recipes give each callable (``litesam_pl.cli.config.init_options`` lists their arguments)
RECIPE_CALLABLES = {"optimizer": PAPER_OPTIMIZER["class_path"], "lr_scheduler": WARMUP_COSINE}
# the optimizer part's fields before the callables -> the option that holds each now
OLD_OPTIMIZER_FIELDS = {
    "lr": "optimizer.init_args.lr", "weight_decay": "optimizer.init_args.weight_decay",
    "betas": "optimizer.init_args.betas", "schedule": "lr_scheduler.init_args.schedule",
    "warmup_steps": "lr_scheduler.init_args.warmup_steps", "min_lr_ratio": "lr_scheduler.init_args.min_lr_ratio",
}


class Optimization(NamedTuple):
    """``LiteSAMTaskBase``'s optimizer and schedule, checked (``optimization``)."""

    optimizer: CallableSpec
    lr_scheduler: Optional[CallableSpec]
    constant_lr: bool  # no schedule, or one that leaves every step at the optimizer's lr (``WarmupCosine.is_constant``)


def moved_option(part: str, name: str) -> str:
    """Where ``part.name`` of the typed parts is set now: the old optimizer fields moved into the callables
    (``optimizer.schedule`` -> ``lr_scheduler.init_args.schedule``); the others stay."""
    return OLD_OPTIMIZER_FIELDS[name] if part == "optimizer" and name in OLD_OPTIMIZER_FIELDS else f"{part}.{name}"


def import_path(obj: Any) -> str:
    """The shortest import path of a class (``torch.optim.Adam`` for ``torch.optim.adam.Adam``)."""
    parts, name = obj.__module__.split("."), obj.__qualname__
    for i in range(1, len(parts)):
        parent = ".".join(parts[:i])
        try:
            if getattr(importlib.import_module(parent), name, None) is obj:
                return f"{parent}.{name}"
        except ImportError:
            continue
    return f"{obj.__module__}.{name}"


def _import(class_path: Any, option: str) -> Any:
    module, _, name = str(class_path).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"{option}.class_path: cannot import {class_path!r}") from None


def _plain_data(value: Any, option: str) -> Any:
    """``value`` as YAML / ``weights_only`` data (tuples as lists); anything else is a ``ConfigError``."""
    if isinstance(value, Mapping):
        return {str(k): _plain_data(v, f"{option}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_data(v, option) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ConfigError(f"{option} must be plain data (numbers, strings, lists, dicts) to be saved in the "
                      f"hyper-parameters, got a {type(value).__name__}")


def spec_of(value: Any, option: str) -> Optional[CallableSpec]:
    """``value`` as a ``CallableSpec``: a class, a ``functools.partial`` of one (what LightningCLI builds from a
    recipe's ``{class_path, init_args}``: the class is its last positional argument, the init_args its keywords), or
    such a dict (a checkpoint's hyper-parameters); ``None`` for any other callable."""
    if isinstance(value, Mapping):
        if "class_path" not in value or set(value) - {"class_path", "init_args"}:
            raise ConfigError(f"{option} must be {{class_path, init_args}}, got the keys {sorted(value)}")
        cls, init_args = _import(value["class_path"], option), value.get("init_args") or {}
    elif inspect.isclass(value):
        cls, init_args = value, {}
    elif isinstance(value, functools.partial) and inspect.isclass((value.func, *value.args)[-1]):
        cls, init_args = (value.func, *value.args)[-1], value.keywords
    else:
        return None
    return {"class_path": import_path(cls), "init_args": _plain_data(dict(init_args), f"{option}.init_args")}


def build(spec: CallableSpec) -> Callable[..., Any]:
    """The callable ``spec`` names: its class with its ``init_args`` bound."""
    return functools.partial(_import(spec["class_path"], "class_path"), **spec["init_args"])


def _called(option: str, make: Callable[[Any], Any], arg: Any, spec: Optional[CallableSpec]) -> Any:
    """``make(arg)``, its bad arguments one ``ConfigError`` line naming ``option``: ``WarmupCosine``'s (a message
    that starts with the argument's name) and the class's own (torch's ``Invalid learning rate: -1.0``)."""
    try:
        return make(arg)
    except ConfigError as err:
        raise ConfigError(f"{option}.init_args.{err}") from err
    except (TypeError, ValueError) as err:
        what = spec["class_path"] if spec else getattr(make, "__qualname__", type(make).__name__)
        line = (str(err).splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"{option} ({what}): {line}") from err


def upgrade_optimizer(old: Mapping[str, Any]) -> Tuple[CallableSpec, Optional[CallableSpec]]:
    """The optimizer part of checkpoints written before the callables (``{lr, weight_decay, betas, schedule,
    warmup_steps, min_lr_ratio}``, any of them; its defaults were the paper's Adam, constant) as today's ``optimizer``
    (Adam) and ``lr_scheduler`` (``WarmupCosine``, or ``None`` where it left the lr constant, as it did then)."""
    unknown = sorted(set(old) - set(OLD_OPTIMIZER_FIELDS))
    if unknown:
        raise ConfigError(f"optimizer: unknown field(s) {unknown}: give {{class_path, init_args}} (the old "
                          f"optimizer fields were {sorted(OLD_OPTIMIZER_FIELDS)})")
    paper = PAPER_OPTIMIZER["init_args"]
    optimizer = {"class_path": PAPER_OPTIMIZER["class_path"],
                 "init_args": _plain_data({k: old.get(k, v) for k, v in paper.items()}, "optimizer")}
    schedule, warmup = old.get("schedule", "constant"), old.get("warmup_steps", 0)
    if schedule == "constant" and not warmup:
        return optimizer, None
    return optimizer, {"class_path": WARMUP_COSINE, "init_args": {"warmup_steps": warmup, "schedule": schedule,
                                                                  "min_lr_ratio": old.get("min_lr_ratio", 0.01)}}


def _upgraded(optimizer: Any, lr_scheduler: Any) -> Tuple[Any, Any]:
    """``(optimizer, lr_scheduler)`` with an old optimizer part (a dict without ``class_path``) as today's two
    arguments; a schedule in it contradicts a given ``lr_scheduler``."""
    if not isinstance(optimizer, Mapping) or "class_path" in optimizer:
        return optimizer, lr_scheduler
    optimizer, schedule = upgrade_optimizer(optimizer)
    if schedule is not None and lr_scheduler is not None:
        raise ConfigError("optimizer.schedule / optimizer.warmup_steps (the old optimizer fields) contradict "
                          "lr_scheduler: set the schedule once, as lr_scheduler")
    return optimizer, schedule if lr_scheduler is None else lr_scheduler


def optimization(optimizer: Any, lr_scheduler: Any) -> Optimization:
    """``LiteSAMTaskBase``'s ``optimizer`` and ``lr_scheduler`` as specs, checked at start-up by building both on a
    probe parameter: a bad value (a negative lr, an unknown schedule, a class that is not an optimizer) is one
    ``ConfigError`` line naming the argument.

    Each may be a callable (a class, LightningCLI's ``functools.partial`` of one, or for the optimizer any function
    of the parameters, e.g. the default lambda: it is described by the optimizer it builds, its class and the
    ``defaults`` torch optimizers keep of their arguments) or a ``CallableSpec`` (a checkpoint's hyper-parameters);
    ``optimizer`` may also be the old optimizer part's dict (``upgrade_optimizer``)."""
    import torch

    optimizer, lr_scheduler = _upgraded(optimizer, lr_scheduler)
    opt_spec = spec_of(optimizer, "optimizer")
    make = optimizer if callable(optimizer) else build(opt_spec)
    opt = _called("optimizer", make, [torch.nn.Parameter(torch.zeros(1))], opt_spec)
    if not isinstance(opt, torch.optim.Optimizer):
        raise ConfigError(f"optimizer must build a torch.optim.Optimizer, got a {type(opt).__name__}")
    if opt_spec is None:
        accepted = inspect.signature(type(opt)).parameters
        opt_spec = {"class_path": import_path(type(opt)), "init_args": _plain_data(
            {k: v for k, v in opt.defaults.items() if k in accepted}, "optimizer.init_args")}
    if lr_scheduler is None:
        return Optimization(opt_spec, None, True)
    sched_spec = spec_of(lr_scheduler, "lr_scheduler")
    if sched_spec is None:
        raise ConfigError("lr_scheduler must be a class, a functools.partial of one or {class_path, init_args} (the "
                          f"hyper-parameters save it so), got {lr_scheduler!r}")
    sched = _called("lr_scheduler", build(sched_spec), opt, sched_spec)
    lr_scheduler_types = torch.optim.lr_scheduler
    if not isinstance(sched, lr_scheduler_types.LRScheduler) or isinstance(sched, lr_scheduler_types.ReduceLROnPlateau):
        raise ConfigError(f"lr_scheduler must build a torch.optim.lr_scheduler.LRScheduler stepped every optimizer "
                          f"step (not on a metric), got a {type(sched).__name__}")
    return Optimization(opt_spec, sched_spec, bool(getattr(sched, "is_constant", False)))


# flat argument of the modules before the typed parts -> (part, field): what ``upgrade_flat_hparams`` moves and, with
# ``moved_option``, what ``litesam_pl.cli.config.suggest_option`` names for an old flag
FLAT_HPARAMS = {
    "model_name": ("model", "name"), "model_kwargs": ("model", "kwargs"),
    "lr": ("optimizer", "lr"), "weight_decay": ("optimizer", "weight_decay"), "betas": ("optimizer", "betas"),
    "lr_schedule": ("optimizer", "schedule"), "warmup_steps": ("optimizer", "warmup_steps"),
    "min_lr_ratio": ("optimizer", "min_lr_ratio"),
    **{k: ("mask_loss", k) for k in ("focal_weight", "dice_weight", "iou_weight", "focal_alpha", "focal_gamma",
                                     "min_train_mask_area")},
    "mask_loss_resolution": ("mask_loss", "resolution"), "mask_loss_points": ("mask_loss", "points"),
    "mask_loss_weight": ("mask_loss", "weight"),
    **{f"ppn_{k}": ("ppn_loss", k) for k in ("heatmap_weight", "box_weight", "point_loss", "neg_ratio", "box_beta",
                                             "box_unit", "box_weighting")},
    "ppn_loss_weight": ("ppn_loss", "weight"),
    "point_prompt_weight": ("prompts", "point_weight"), "box_prompt_weight": ("prompts", "box_weight"),
    "max_train_prompts": ("prompts", "max_per_image"),
    "compute_map": ("validation", "compute_map"), "val_top_n": ("validation", "top_n"),
    "ppn_score_threshold": ("validation", "ppn_score_threshold"),
}


def upgrade_flat_hparams(hparams: Mapping[str, Any]) -> Dict[str, Any]:
    """A checkpoint's flat hyper-parameters (``lr``, ``focal_weight``, ``model_kwargs``, ...) as the parts'
    nested dicts; other keys (``init_from``, stage arguments, ``_class_path``) are kept. Nested ones pass unchanged."""
    out: Dict[str, Any] = {}
    for key, value in hparams.items():
        if key in FLAT_HPARAMS and not isinstance(hparams.get(FLAT_HPARAMS[key][0]), Mapping):
            part, name = FLAT_HPARAMS[key]
            out.setdefault(part, {})[name] = dict(value or {}) if key == "model_kwargs" else value
        else:
            out[key] = value
    return out


def upgrade_hparams(hparams: Mapping[str, Any]) -> Dict[str, Any]:
    """A checkpoint's hyper-parameters as today's arguments: flat ones as the parts (``upgrade_flat_hparams``), then
    an old optimizer part (no ``class_path``) as ``optimizer`` and ``lr_scheduler`` specs (``upgrade_optimizer``).
    Today's pass unchanged."""
    out = upgrade_flat_hparams(hparams)
    if "optimizer" in out:
        out["optimizer"], out["lr_scheduler"] = _upgraded(out["optimizer"], out.get("lr_scheduler"))
    return out
