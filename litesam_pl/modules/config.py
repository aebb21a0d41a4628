"""The typed parts of a training module's configuration: ``LiteSAMTaskBase(model, mask_loss, ppn_loss, optimizer,
lr_scheduler, prompts, validation, init_from)``. Each part is a frozen dataclass whose fields LightningCLI turns into
options (``--model.init_args.mask_loss.focal_weight 20``, or a ``mask_loss:`` block in a recipe); each checks its
values when built (``ConfigError``: one line naming the option). The loss parts' defaults are the training recipes'
loss settings (the paper's and ours, each field says which): they live here only, and a recipe writes a loss field
only to change it. The constructor also takes a part as a plain dict (what a checkpoint's hyper-parameters hold).

The optimizer and its learning-rate schedule are LightningCLI callables instead: ``litesam_pl.modules.optim``.
``upgrade_flat_hparams`` maps the flat arguments of checkpoints written before these parts (``lr``, ``focal_weight``,
``model_kwargs``, ...) onto them (``optim.upgrade_hparams`` also upgrades the optimizer part of the next ones).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Dict, Mapping, Optional, Type, TypeVar

from litesam_pl.losses import BOX_UNITS

__all__ = ["ConfigError", "ModelSpec", "MaskLossConfig", "PPNLossConfig", "PromptConfig", "ValidationConfig", "PARTS",
           "POINT_LOSS_FOR_TARGETS", "FLAT_HPARAMS", "coerce", "plain", "upgrade_flat_hparams"]

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
