"""What jsonargparse refused in a ``litesam`` command line, found by checking the settings themselves.

When jsonargparse refuses a command line, its message is a dump of nested type errors. ``refused_setting(argv)``
finds the setting at fault without reading that dump: it merges the ``--config`` recipes and the options of ``argv``
as jsonargparse does (``merged_config``: later sources win; a new ``class_path`` keeps only the ``init_args`` its class
takes; ``init_args`` may be left out of a key) and checks, in this order:

- a link target given as an option (``linked_value_set_by_user``);
- the module's arguments: each against the ``__init__`` arguments of the class named by ``model.class_path``, each
  field of a typed part (``mask_loss``, ...) against the part's dataclass;
- the module's ``optimizer`` / ``lr_scheduler``: the class named by its ``class_path`` (importable, of its kind), its
  ``init_args`` keys against ``inspect.signature`` of that class, then its values by building both on a probe
  parameter (``modules.optim.optimization``).

Each finding is a ``ConfigError`` whose message is the one line ``litesam`` prints
(``litesam_pl.cli.lightning.ShortErrorParser``); ``refused_setting`` returns it (``""``: nothing found, jsonargparse's
own message stands). It runs only once jsonargparse has refused the command line, so a setting jsonargparse accepts
is never refused here.
"""
from __future__ import annotations

import dataclasses
import inspect
import os
import typing
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

from litesam_pl.cli.config import dataclass_of, init_arguments, init_options, linked_value_set_by_user, suggest_option

__all__ = ["merged_config", "refused_setting", "check_settings"]

_CONFIG_OPTIONS = ("--config", "-c")
_META_KEYS = ("class_path", "init_args", "dict_kwargs")
# the keys whose value is a class and its init_args -> the kind of class
_CLASS_KEYS = {("model",): "model", ("model", "init_args", "optimizer"): "optimizer",
               ("model", "init_args", "lr_scheduler"): "lr_scheduler"}
# how the type LightningCLI gives each callable names its kind (the messages jsonargparse printed for a wrong class)
_KIND_NAMES = {"optimizer": "<class 'Optimizer'>", "lr_scheduler": "Union[LRScheduler, ReduceLROnPlateau]"}


def _kinds(kind: str) -> Tuple[type, ...]:
    import torch

    if kind == "model":
        from litesam_pl.modules.base import LiteSAMTaskBase

        return (LiteSAMTaskBase,)
    if kind == "optimizer":
        return (torch.optim.Optimizer,)
    return (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def _subclasses(base: type) -> Iterator[type]:
    for sub in base.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def resolve_class(class_path: Any, kind: str) -> Optional[type]:
    """The class ``class_path`` names: a dotted import path, or (as jsonargparse resolves it) the name of an
    imported subclass of the ``kind``'s base class (``SGD``); None when there is none."""
    from litesam_pl.modules.optim import import_object

    if not isinstance(class_path, str) or not class_path:
        return None
    obj = import_object(class_path) if "." in class_path else None
    if obj is None:
        obj = next((c for base in _kinds(kind) for c in _subclasses(base) if c.__name__ == class_path), None)
    return obj if inspect.isclass(obj) else None


# ------------------------------------------------------------------------------------------- the merged settings
def _value(text: str) -> Any:
    """An option's value as YAML (numbers, lists, dicts, null), else the text itself."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _config(text: str) -> Any:
    """A ``--config`` value: the YAML file it names, else the value itself as YAML (jsonargparse takes both)."""
    import yaml

    if not os.path.isfile(text):
        return _value(text)
    try:
        with open(text) as f:
            return yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return None


def _sources(argv: Sequence[str]) -> Iterator[Dict[str, Any]]:
    """The settings of each ``--config`` and each ``--a.b value`` (``{"a": {"b": value}}``) of ``argv``, in order."""
    tokens = [str(t) for t in argv]
    i = 0
    while i < len(tokens):
        key, eq, text = tokens[i].partition("=")
        i += 1
        if not key.startswith("-"):
            continue  # the subcommand
        if not eq:
            if i >= len(tokens) or tokens[i].startswith("--"):
                continue  # a flag (--print_config, ...)
            text, i = tokens[i], i + 1
        tree: Any = _config(text) if key in _CONFIG_OPTIONS else _value(text)
        if key not in _CONFIG_OPTIONS:
            for part in reversed(key.lstrip("-").split(".")):
                tree = {part: tree}
        if isinstance(tree, dict):
            yield tree


def _as_class_setting(value: Any) -> Optional[Dict[str, Any]]:
    """``{class_path?, init_args}`` of a class setting: a class path, or a dict whose keys other than ``class_path``
    / ``init_args`` / ``dict_kwargs`` are ``init_args`` (jsonargparse's shorthand); None for anything else."""
    if isinstance(value, str):
        return {"class_path": value, "init_args": {}}
    if not isinstance(value, dict):
        return None
    init = dict(value["init_args"]) if isinstance(value.get("init_args"), dict) else {}
    init.update({k: v for k, v in value.items() if k not in _META_KEYS})
    return {**({"class_path": value["class_path"]} if value.get("class_path") else {}), "init_args": init}


def _merge_class(old: Any, new: Any, path: Tuple[str, ...]) -> Any:
    new_setting = _as_class_setting(new)
    if new_setting is None:
        return new
    old_setting = _as_class_setting(old) or {"init_args": {}}
    init = old_setting["init_args"]
    old_path, new_path = old_setting.get("class_path"), new_setting.get("class_path")
    if old_path and new_path and old_path != new_path:  # another class: the init_args it does not take are dropped
        cls, kind = resolve_class(new_path, _CLASS_KEYS[path]), _CLASS_KEYS[path]
        taken = init_arguments(cls) if cls is not None and kind == "model" else _signature_arguments(cls)
        init = {k: v for k, v in init.items() if taken is None or k in taken}
    class_path = new_path or old_path
    return {**({"class_path": class_path} if class_path else {}),
            "init_args": _merge(init, new_setting["init_args"], path + ("init_args",))}


def _merge(old: Any, new: Any, path: Tuple[str, ...] = ()) -> Any:
    """``new`` over ``old`` as jsonargparse merges two sources: dicts key by key, the class settings of
    ``_CLASS_KEYS`` as such, anything else replaced."""
    if path in _CLASS_KEYS:
        return _merge_class(old, new, path)
    if not isinstance(new, dict):
        return new
    out = dict(old) if isinstance(old, dict) else {}
    for key, value in new.items():
        out[key] = _merge(out.get(key), value, path + (str(key),))
    return out


def merged_config(argv: Sequence[str]) -> Dict[str, Any]:
    """The settings of a command line (its ``--config`` recipes and options, merged in order), with ``model`` and its
    ``optimizer`` / ``lr_scheduler`` as ``{class_path, init_args}``; values as YAML reads them (not yet typed)."""
    tree: Dict[str, Any] = {}
    for source in _sources(argv):
        tree = _merge(tree, source)
    return tree


# ------------------------------------------------------------------------------------------------------ checks
def _signature_arguments(cls: Optional[type]) -> Optional[set]:
    """The keyword arguments ``cls(first, **init_args)`` takes (its first, the parameters or the optimizer, left out);
    None when it takes any (``**kwargs``) or is unknown."""
    if cls is None:
        return None
    params = list(inspect.signature(cls).parameters.values())[1:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind is not p.VAR_POSITIONAL}


def _guess(hint: str) -> str:
    return f" ({hint})" if hint else ""


def _check_module(cls: type, init_args: Dict[str, Any]) -> None:
    """``ConfigError`` for an argument ``cls`` does not take, or a field a typed part does not have."""
    from litesam_pl.modules.config import ConfigError

    taken = init_arguments(cls)
    choices = init_options(cls)
    for key, value in init_args.items():
        if key not in taken:
            raise ConfigError(f"unrecognized option --model.init_args.{key}: {cls.__name__} has no argument "
                              f"{key!r}" + _guess(suggest_option(key, choices)))
        part = dataclass_of(taken[key])
        if part is None or not isinstance(value, dict):
            continue
        unknown = [field for field in value if field not in {f.name for f in dataclasses.fields(part)}]
        if unknown:
            option = f"{key}.{unknown[0]}"
            raise ConfigError(f"unrecognized option --model.init_args.{option}: {cls.__name__}'s {key} has no field "
                              f"{unknown[0]!r}" + _guess(suggest_option(option, choices)))


def _typed(value: Any, hint: Any) -> Any:
    """A number as jsonargparse types it for the type ``hint``: a string that reads as one (``1e-5``, a string to
    YAML 1.1) as that number, an int as a float where the hint takes floats but not ints."""
    if isinstance(value, str):
        for kind in (int, float):
            try:
                value = kind(value)
                break
            except ValueError:
                pass
    kinds = {hint, *typing.get_args(hint)}
    if float in kinds and int not in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _check_callable(key: str, setting: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """``ConfigError`` for the ``optimizer`` / ``lr_scheduler`` setting: a class that cannot be imported or is not of
    its kind, an argument its class does not take (with where an old optimizer field went, or the closest argument);
    else its spec (``{class_path, init_args}``), for the construction."""
    from litesam_pl.cli.errors import did_you_mean
    from litesam_pl.modules.config import ConfigError
    from litesam_pl.modules.optim import import_path, moved_option

    option, class_path = f"--model.init_args.{key}", setting.get("class_path")
    if not class_path:
        return None
    cls = resolve_class(class_path, key)
    if cls is None:
        raise ConfigError(f"{option}: cannot import {class_path!r}")
    if not issubclass(cls, _kinds(key)):
        raise ConfigError(f"{option}: Expected {class_path!r} to be a subclass of {_KIND_NAMES[key]}")
    shown = class_path if "." in class_path else import_path(cls)
    taken = _signature_arguments(cls)
    for name in setting["init_args"]:
        if taken is not None and name not in taken:
            moved = moved_option(key, name)
            elsewhere = moved not in (f"{key}.{name}", f"{key}.init_args.{name}")
            hint = f"now {moved!r}" if elsewhere else did_you_mean(name, sorted(taken))
            raise ConfigError(f"unrecognized option {option}.init_args.{name}: {shown} has no argument {name!r}"
                              + _guess(hint))
    hints = init_arguments(cls)
    return {"class_path": shown, "init_args": {k: _typed(v, hints.get(k)) for k, v in setting["init_args"].items()}}


def check_settings(argv: Sequence[str]) -> None:
    """``ConfigError`` (its message the line to print) for the first setting of ``argv`` that the checks of this
    module refuse (see the module's docstring); nothing when they find none."""
    from litesam_pl.modules.config import ConfigError
    from litesam_pl.modules.optim import optimization

    linked = linked_value_set_by_user((), argv)
    if linked:
        raise ConfigError(linked)
    model = merged_config(argv).get("model")
    cls = resolve_class(model.get("class_path"), "model") if isinstance(model, dict) else None
    if cls is None:
        return
    _check_module(cls, model["init_args"])
    specs = {key: _check_callable(key, model["init_args"][key]) for key in _KIND_NAMES
             if isinstance(model["init_args"].get(key), dict)}
    if any(specs.values()) and all(spec is not None for spec in specs.values()):
        optimization(specs.get("optimizer"), specs.get("lr_scheduler"))  # a value its class refuses: ConfigError


def refused_setting(argv: Sequence[str]) -> str:
    """The line naming the setting at fault in a command line jsonargparse refused (``check_settings``), or ``""``."""
    from litesam_pl.modules.config import ConfigError

    try:
        check_settings(argv)
    except ConfigError as err:
        return str(err)
    except Exception:  # noqa: BLE001 - a setting these checks cannot read: jsonargparse's own message stands
        return ""
    return ""
