"""The ``litesam`` command's side of the modules' typed configuration (``litesam_pl.modules.config``).

- ``DATA_LINKS``: what data and model must agree on is set once, on the data side (``data.img_size``,
  ``data.num_groups``, ``data.target_mode``), and linked into the model (``model.img_size``, ``model.ppn_groups``,
  ``ppn_loss.point_loss``); ``MODEL_LINKS``: the one the network decides, the AutoPPN grid stride
  (``model.kwargs.ppn_kwargs.stride``), linked into ``data.ppn_stride``; ``linked_value_set_by_user`` refuses a
  recipe or option that sets a linked value itself.
- What the one-line errors need: a part's bad value (``config_error_in``: the ``ConfigError`` jsonargparse wrapped),
  the arguments a module class takes (``init_arguments``, ``init_options``) and a did-you-mean that knows the parts'
  fields and where the old flat arguments and optimizer fields went (``suggest_option``); ``litesam_pl.cli.checks``
  finds the setting at fault with them.
- ``upgrade_ckpt_hparams``: a checkpoint's hyper-parameters written before the parts (flat) or before the optimizer
  callables (the optimizer part) for ``--ckpt_path``.

No Lightning import here; ``litesam_pl.cli`` calls these.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import inspect
import typing
from typing import Any, Dict, List, Mapping, Optional, Sequence

__all__ = ["DATA_LINKS", "MODEL_LINKS", "add_links", "apply_data_links", "linked_value_set_by_user",
           "config_error_in", "dataclass_of", "init_arguments", "init_options", "suggest_option",
           "ckpt_model_config", "upgrade_ckpt_hparams", "point_loss_for", "ppn_stride_of"]


def point_loss_for(target_mode: str) -> str:
    """``ppn_loss.point_loss`` for ``data.target_mode`` (``distance`` -> ``hard_mse``, ``gaussian`` -> ``focal``)."""
    from litesam_pl.modules.config import POINT_LOSS_FOR_TARGETS

    return POINT_LOSS_FOR_TARGETS.get(target_mode, target_mode)


def ppn_stride_of(kwargs: Optional[Mapping[str, Any]]) -> int:
    """The AutoPPN grid stride of a model's ``create_model`` kwargs: ``ppn_kwargs.stride``, else ``AutoPPN``'s
    default (8)."""
    import inspect

    from litesam_pl.models.autoppn import AutoPPN

    stride = ((kwargs or {}).get("ppn_kwargs") or {}).get("stride")
    return int(inspect.signature(AutoPPN).parameters["stride"].default if stride is None else stride)


# (source, target, conversion): parse-time links of the LightningCLI parser, data -> model
DATA_LINKS = (
    ("data.img_size", "model.init_args.model.img_size", None),
    ("data.num_groups", "model.init_args.model.ppn_groups", None),
    ("data.target_mode", "model.init_args.ppn_loss.point_loss", point_loss_for),
)
# (source, target, conversion, the setting): model -> data, for what the network decides; the setting is the key
# inside the source that a user sets (the grid stride is the AutoPPN head's upsampling, a model kwarg)
MODEL_LINKS = (
    ("model.init_args.model.kwargs", "data.ppn_stride", ppn_stride_of,
     "model.init_args.model.kwargs.ppn_kwargs.stride"),
)


def _linked() -> List[tuple]:
    """``(setting, target)`` of every link: what a user sets, and the value the link sets from it."""
    return [(source, target) for source, target, _ in DATA_LINKS] + [(setting, target)
                                                                    for _, target, _, setting in MODEL_LINKS]


def _how_to_set(setting: str) -> str:
    """A link's setting as the user gives it: ``--data.img_size`` (an option), or a key inside an option's value
    (``model.init_args.model.kwargs.ppn_kwargs.stride``, inside ``--model.init_args.model.kwargs``)."""
    return f"--{setting}" if any(setting == source for source, _, _ in DATA_LINKS) else setting


def add_links(parser: Any) -> None:
    """Add ``DATA_LINKS`` and ``MODEL_LINKS`` to a LightningCLI parser (``LightningCLI.add_arguments_to_parser``)."""
    for source, target, fn, *_ in (*DATA_LINKS, *MODEL_LINKS):
        parser.link_arguments(source, target, compute_fn=fn)


def apply_data_links(model_args: Mapping[str, Any], data_args: Mapping[str, Any]) -> Dict[str, Any]:
    """A module's ``init_args`` (parts as dicts, e.g. a recipe's) with what ``DATA_LINKS`` takes from a data module's
    ``init_args`` (``SA1BDataModule``'s defaults for keys not given): what ``litesam fit`` builds, for code that
    builds the module itself (benchmarks)."""
    import inspect

    from litesam_pl.data.datamodule import SA1BDataModule

    defaults = {k: p.default for k, p in inspect.signature(SA1BDataModule.__init__).parameters.items()}
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in model_args.items()}
    for source, target, fn in DATA_LINKS:
        key = source.split(".", 1)[1]
        value = data_args.get(key, defaults[key])
        part, field = target.split(".")[-2:]
        out.setdefault(part, {})[field] = fn(value) if fn else value
    return out


def _lookup(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, Mapping) or part not in tree:
            return _MISSING
        tree = tree[part]
    return tree


_MISSING = object()


def linked_value_set_by_user(config_files: Sequence[str], argv: Sequence[str],
                             config: Optional[Any] = None) -> Optional[str]:
    """The error line when a ``--config`` file or a ``--model.init_args...`` option sets a link target (the link
    would silently replace it), else None. (jsonargparse itself refuses a target outside a subclass's ``init_args``
    given on the command line; ``litesam_pl.cli.checks`` names it with this.) With the parsed ``config``, a file's
    ``MODEL_LINKS`` target equal to the linked value passes: the ``config.yaml`` a run saved before that link holds
    it."""
    import yaml

    model_targets = {target for _, target, *_ in MODEL_LINKS}
    for source, target in _linked():
        for path in config_files:
            try:
                with open(path) as f:
                    tree = yaml.safe_load(f)
            except (OSError, yaml.YAMLError):
                continue
            value = _lookup(tree, target)
            if value is _MISSING or (config is not None and target in model_targets
                                     and config.get(target) == value):
                continue
            return f"{path} sets {target}, which is linked from {source}: set {source} instead"
        for tok in argv:
            if tok.split("=", 1)[0] == f"--{target}":
                return f"--{target} is linked from {source}: set {_how_to_set(source)} instead"
    return None


def config_error_in(err: BaseException) -> Optional[BaseException]:
    """The ``ConfigError`` that caused ``err`` (jsonargparse wraps the ones the parts raise), or None."""
    from litesam_pl.modules.config import ConfigError

    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, ConfigError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def dataclass_of(annotation: Any) -> Optional[type]:
    """The dataclass a type hint names (``MaskLossConfig``, also inside ``Optional[...]``), or None."""
    for cand in (annotation, *typing.get_args(annotation)):
        if dataclasses.is_dataclass(cand) and isinstance(cand, type):
            return cand
    return None


def _is_callable_type(annotation: Any) -> bool:
    return any(typing.get_origin(a) is collections.abc.Callable for a in (annotation, *typing.get_args(annotation)))


def _recipe_callable_options(name: str) -> List[str]:
    """``name.init_args.<arg>`` for the class the recipes give the module's callable ``name`` (``RECIPE_CALLABLES``:
    ``optimizer`` Adam, ``lr_scheduler`` WarmupCosine), so that a did-you-mean finds their arguments."""
    from litesam_pl.modules.optim import RECIPE_CALLABLES, import_object

    cls = import_object(RECIPE_CALLABLES[name]) if name in RECIPE_CALLABLES else None
    params = list(inspect.signature(cls).parameters.values())[1:] if cls is not None else []
    return [f"{name}.init_args.{p.name}" for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def init_arguments(cls: Any) -> Dict[str, Any]:
    """The keyword arguments of ``cls``'s ``__init__`` along its MRO (what jsonargparse takes as its
    ``init_args``) -> their type hints (None where unresolvable)."""
    out: Dict[str, Any] = {}
    for klass in getattr(cls, "__mro__", ()):
        if "__init__" not in vars(klass):
            continue
        try:
            hints = typing.get_type_hints(klass.__init__)
        except Exception:  # noqa: BLE001 - an unresolvable annotation: names only
            hints = {}
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                out.setdefault(p.name, hints.get(p.name))
    return out


def init_options(cls: type) -> List[str]:
    """``init_arguments`` of a class, with the fields of the typed parts as ``part.field`` and the arguments of the
    recipes' optimizer and schedule classes as ``optimizer.init_args.lr``: what ``--<key>.init_args.*`` accepts,
    for a did-you-mean."""
    names: List[str] = []
    for name, hint in init_arguments(cls).items():
        names.append(name)
        part = dataclass_of(hint)
        names += [f"{name}.{f.name}" for f in dataclasses.fields(part)] if part else []
        names += _recipe_callable_options(name) if _is_callable_type(hint) else []
    return sorted(set(names))


def suggest_option(option: str, choices: Sequence[str]) -> str:
    """``did you mean 'x'?`` for the closest of ``choices`` (also by the last dotted part: ``focal_weigth`` ->
    ``mask_loss.focal_weight``); ``now 'part.field'`` for a flat argument of the modules before the typed parts and
    for an old optimizer field (``now 'lr_scheduler.init_args.schedule'``); or ``""``."""
    from litesam_pl.modules.config import FLAT_HPARAMS
    from litesam_pl.modules.optim import moved_option

    if option in FLAT_HPARAMS:
        return f"now {moved_option(*FLAT_HPARAMS[option])!r}"
    part, dot, name = option.partition(".")
    if dot and moved_option(part, name) != option:
        return f"now {moved_option(part, name)!r}"
    close = difflib.get_close_matches(option, list(choices), n=1, cutoff=0.5)
    if not close:
        leaves: Dict[str, str] = {c.rsplit(".", 1)[-1]: c for c in choices if "." in c}
        near = difflib.get_close_matches(option.rsplit(".", 1)[-1], list(leaves), n=1, cutoff=0.6)
        close = [leaves[near[0]]] if near else []
    return f"did you mean {close[0]!r}?" if close else ""


def ckpt_model_config(ckpt_path: str) -> Optional[Dict[str, Any]]:
    """The ``model`` config that LightningCLI's ``--ckpt_path`` parsing puts over the recipe's: the checkpoint's
    hyper-parameters (``upgrade_ckpt_hparams``) under its ``_class_path``; None without hyper-parameters."""
    import torch

    hparams = dict(torch.load(ckpt_path, weights_only=True, map_location="cpu").get("hyper_parameters") or {})
    hparams.pop("_instantiator", None)
    if not hparams:
        return None
    hparams = upgrade_ckpt_hparams(hparams)
    class_path = hparams.pop("_class_path", None)
    return {"class_path": class_path, "dict_kwargs": hparams} if class_path else hparams


def upgrade_ckpt_hparams(hparams: Mapping[str, Any]) -> Dict[str, Any]:
    """A checkpoint's ``hyper_parameters`` for LightningCLI's ``--ckpt_path`` parsing: older ones as today's
    arguments (``upgrade_hparams``: flat ones as the parts' dicts, an optimizer part as the optimizer and schedule
    callables' ``{class_path, init_args}``), and the values ``DATA_LINKS`` sets left out (the data's win)."""
    from litesam_pl.modules.optim import upgrade_hparams

    out = upgrade_hparams(hparams)
    for _, target, _ in DATA_LINKS:
        part, field = target.split(".")[-2:]
        if isinstance(out.get(part), Mapping):
            out[part] = {k: v for k, v in out[part].items() if k != field}
            if isinstance(out[part].get("kwargs"), Mapping):  # a flat checkpoint's model_kwargs.img_size
                out[part]["kwargs"] = {k: v for k, v in out[part]["kwargs"].items() if k != field}
    return out
