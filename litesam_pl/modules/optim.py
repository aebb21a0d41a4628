"""The optimizer and its learning-rate schedule of ``LiteSAMTaskBase``: LightningCLI callables (``OptimizerCallable``,
``LRSchedulerCallable``: a recipe's ``{class_path, init_args}``), saved in the hyper-parameters as such plain dicts.

``optimization`` checks both at start-up and gives each as a ``CallableSpec`` with the factory the module calls;
``callable_from_spec`` turns a spec back into its callable. ``upgrade_hparams`` maps what checkpoints written
before hold onto today's arguments: the flat arguments of the first modules (``config.upgrade_flat_hparams``) and
the optimizer part of the next ones (``optimizer: {lr, weight_decay, betas, schedule, warmup_steps, min_lr_ratio}``:
``upgrade_optimizer``). The schedule class the recipes name is ``litesam_pl.modules.schedules.WarmupCosine``.
"""
from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any, Callable, Dict, Mapping, NamedTuple, Optional, Tuple

from .config import ConfigError, upgrade_flat_hparams

__all__ = ["CallableSpec", "PAPER_OPTIMIZER", "WARMUP_COSINE", "RECIPE_CALLABLES", "OLD_OPTIMIZER_FIELDS",
           "Optimization", "moved_option", "import_path", "import_object", "spec_of", "callable_from_spec",
           "optimization", "upgrade_optimizer", "upgrade_hparams", "upgraded_checkpoint"]


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
    """``LiteSAMTaskBase``'s optimizer and schedule, checked (``optimization``): each as its spec (the
    hyper-parameters) and as the factory the module calls (built from the spec; an opaque optimizer function is
    kept as given), the schedule's ``None`` when it leaves every step at the optimizer's lr."""

    optimizer: CallableSpec
    lr_scheduler: Optional[CallableSpec]
    make_optimizer: Callable[..., Any]
    make_lr_scheduler: Optional[Callable[..., Any]]


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


def import_object(class_path: Any) -> Any:
    """The object a dotted path names (``torch.optim.Adam``), or ``None`` when it cannot be imported."""
    module, _, name = str(class_path).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _import(class_path: Any, option: str) -> Any:
    obj = import_object(class_path)
    if obj is None:
        raise ConfigError(f"{option}.class_path: cannot import {class_path!r}")
    return obj


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
    elif isinstance(value, functools.partial) and inspect.isclass(value.func) and not value.args:
        cls, init_args = value.func, value.keywords
    elif isinstance(value, functools.partial) and _ends_with_the_class(value.args):
        # LightningCLI's callable: partial(<its instantiator function>, <instantiator>, cls, **init_args)
        cls, init_args = value.args[-1], value.keywords
    else:
        return None
    return {"class_path": import_path(cls), "init_args": _plain_data(dict(init_args), f"{option}.init_args")}


def _ends_with_the_class(args: Tuple[Any, ...]) -> bool:
    """Whether the last of ``args`` is their only optimizer or learning-rate scheduler class."""
    import torch

    kinds = (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)
    classes = [a for a in args if inspect.isclass(a) and issubclass(a, kinds)]
    return len(classes) == 1 and args[-1] is classes[0]


def callable_from_spec(spec: CallableSpec) -> Callable[..., Any]:
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

    if optimizer is None:
        optimizer = PAPER_OPTIMIZER
    optimizer, lr_scheduler = _upgraded(optimizer, lr_scheduler)
    opt_spec = spec_of(optimizer, "optimizer")
    if opt_spec is None and not callable(optimizer):
        raise ConfigError(f"optimizer must be a torch.optim class, {{class_path, init_args}} or a function of the "
                          f"parameters, got {optimizer!r}")
    make = optimizer if opt_spec is None else callable_from_spec(opt_spec)
    opt = _called("optimizer", make, [torch.nn.Parameter(torch.zeros(1))], opt_spec)
    if not isinstance(opt, torch.optim.Optimizer):
        raise ConfigError(f"optimizer must build a torch.optim.Optimizer, got a {type(opt).__name__}")
    if opt_spec is None:
        accepted = inspect.signature(type(opt)).parameters
        opt_spec = {"class_path": import_path(type(opt)), "init_args": _plain_data(
            {k: v for k, v in opt.defaults.items() if k in accepted}, "optimizer.init_args")}
    if lr_scheduler is None:
        return Optimization(opt_spec, None, make, None)
    sched_spec = spec_of(lr_scheduler, "lr_scheduler")
    if sched_spec is None:
        raise ConfigError("lr_scheduler must be a class, a functools.partial of one or {class_path, init_args} (the "
                          f"hyper-parameters save it so), got {lr_scheduler!r}")
    sched = _called("lr_scheduler", callable_from_spec(sched_spec), opt, sched_spec)
    lr_scheduler_types = torch.optim.lr_scheduler
    if not isinstance(sched, lr_scheduler_types.LRScheduler) or isinstance(sched, lr_scheduler_types.ReduceLROnPlateau):
        raise ConfigError(f"lr_scheduler must build a torch.optim.lr_scheduler.LRScheduler stepped every optimizer "
                          f"step (not on a metric), got a {type(sched).__name__}")
    constant = bool(getattr(sched, "is_constant", False))  # WarmupCosine constant without warm-up: no schedule
    return Optimization(opt_spec, sched_spec, make, None if constant else callable_from_spec(sched_spec))


def upgrade_hparams(hparams: Mapping[str, Any]) -> Dict[str, Any]:
    """A checkpoint's hyper-parameters as today's arguments: flat ones as the parts (``upgrade_flat_hparams``), then
    an old optimizer part (no ``class_path``) as ``optimizer`` and ``lr_scheduler`` specs (``upgrade_optimizer``).
    Today's pass unchanged."""
    out = upgrade_flat_hparams(hparams)
    if "optimizer" in out:
        out["optimizer"], out["lr_scheduler"] = _upgraded(out["optimizer"], out.get("lr_scheduler"))
    return out


def upgraded_checkpoint(checkpoint: Any) -> Any:
    """What to give Lightning's ``load_from_checkpoint``: ``checkpoint`` (a path or file) itself when its
    hyper-parameters are today's, else an in-memory copy with them upgraded (``upgrade_hparams``). Lightning rebuilds
    a module that ``litesam fit`` saved through LightningCLI's instantiator, which refuses older arguments; the
    copy gives it today's. A file ``torch.load(weights_only=True)`` cannot read is returned as it is."""
    import io
    import os

    import torch

    mmap = isinstance(checkpoint, (str, os.PathLike))  # a file on disk is mapped: tensors read only for a copy
    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception:  # noqa: BLE001 - Lightning's own loader reports it
        return checkpoint
    finally:
        if hasattr(checkpoint, "seek"):
            checkpoint.seek(0)
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    upgraded = upgrade_hparams(hparams) if hparams else None
    if upgraded is None or upgraded == dict(hparams):
        return checkpoint
    ckpt["hyper_parameters"] = upgraded
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    buf.seek(0)
    return buf
