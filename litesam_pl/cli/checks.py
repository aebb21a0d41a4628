"""What jsonargparse refused in a ``litesam`` command line, found by checking the settings themselves.

When jsonargparse refuses a command line, its message is a dump of nested type errors. ``refused_setting(argv)``
finds the setting at fault without reading that dump: it merges the ``--config`` recipes and the options of ``argv``
as jsonargparse does (``merged_config``: later sources win; a new ``class_path`` keeps only the ``init_args`` its class
takes, a function none; ``init_args`` may be left out of a key) and checks, in this order:

- a link target given as an option outside the model's ``init_args`` (``--data.ppn_stride``, which jsonargparse has
  no option for: ``linked_value_set_by_user``);
- the module's arguments: each against the ``__init__`` arguments of the class named by ``model.class_path``, each
  field of a typed part (``mask_loss``, ...) against the part's dataclass;
- the module's ``optimizer`` / ``lr_scheduler``: what its ``class_path`` names (importable; of its kind, in the
  sentence jsonargparse words it in: ``JSONARGPARSE_MESSAGES["wrong_callable"]``), for a class its ``init_args`` keys
  against ``inspect.signature`` of that class, then its values by building it on a probe parameter
  (``modules.optim.optimization``). A function (jsonargparse takes one whose return type is of the kind, without
  ``init_args``) is checked no further.

Each finding is a ``ConfigError`` whose message is the one line ``litesam`` prints
(``litesam_pl.cli.lightning.ShortErrorParser``); ``refused_setting`` returns it, or ``""`` (nothing found:
jsonargparse's own message stands).

What is guaranteed: a finding is named only when jsonargparse refuses that setting too. Before it is raised, the
setting alone (the module's class with that one argument; the ``optimizer`` / ``lr_scheduler`` setting, as merged
here) is parsed by a jsonargparse parser against the type the module's ``__init__`` gives it, as LightningCLI parses
it (``_refusal``); a setting it accepts is not named (a value that parses but its class refuses, a negative lr, is left
to the module's construction), nor is a link target inside the model's ``init_args`` (jsonargparse takes it;
``LiteSAMCLI.before_instantiate_classes`` refuses it). What these checks cannot read or resolve (an unreadable recipe,
a model class that does not import, a type hint that does not resolve, a function, a refusal they have no line for)
is not named either. Limits: the merge is ``merged_config``'s reading of jsonargparse's rules; and when jsonargparse
refuses several settings, the one named here can be another than the first one jsonargparse met (both are refused).
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import os
import typing
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from litesam_pl.cli.config import dataclass_of, init_arguments, init_options, linked_value_set_by_user, suggest_option

__all__ = ["merged_config", "refused_setting", "check_settings", "command_line", "resolve_class", "resolve_object"]

_CONFIG_OPTIONS = ("--config", "-c")
_NO_VALUE = ("-h", "--help")  # the options that take no value (LightningCLI's bool options take one: true / false)
_META_KEYS = ("class_path", "init_args", "dict_kwargs")
# the keys whose value is a class and its init_args -> the kind of class
_CLASS_KEYS = {("model",): "model", ("model", "init_args", "optimizer"): "optimizer",
               ("model", "init_args", "lr_scheduler"): "lr_scheduler"}
_CALLABLES = tuple(kind for kind in _CLASS_KEYS.values() if kind != "model")  # optimizer, lr_scheduler


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


def resolve_object(class_path: Any, kind: str) -> Any:
    """What ``class_path`` names: a dotted import path (a class, or a function: jsonargparse takes both for a
    callable), or (as jsonargparse resolves it) the name of an imported subclass of the ``kind``'s base class
    (``SGD``); None when it names nothing."""
    from litesam_pl.modules.optim import import_object

    if not isinstance(class_path, str) or not class_path:
        return None
    obj = import_object(class_path) if "." in class_path else None
    if obj is None:
        obj = next((c for base in _kinds(kind) for c in _subclasses(base) if c.__name__ == class_path), None)
    return obj


def resolve_class(class_path: Any, kind: str) -> Optional[type]:
    """The class ``class_path`` names (``resolve_object``); None when it names no class."""
    obj = resolve_object(class_path, kind)
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


def _is_option(token: str) -> bool:
    """Whether an argv token is an option (``--a.b``, ``-c``), not a value (``-1``, ``-.5``: numbers)."""
    return token.startswith("--") or (token.startswith("-") and token[1:2].isalpha())


def _option(token: str) -> Tuple[str, Optional[str]]:
    """An option token as (its name, the value written in it or None): ``--a=1``, ``-c=x.yaml``, ``-cx.yaml``."""
    if not token.startswith("--") and token.startswith("-c") and len(token) > 2:
        return "-c", token[2:].removeprefix("=")
    key, eq, text = token.partition("=")
    return key, (text if eq else None)


def _sources(argv: Sequence[str]) -> Iterator[Dict[str, Any]]:
    """The settings of each ``--config`` and each ``--a.b value`` (``{"a": {"b": value}}``) of ``argv``, in order. An
    option's value is the next token only when that token is no option: ``--config`` / ``-c`` always start a source."""
    tokens = [str(t) for t in argv]
    i = 0
    while i < len(tokens):
        token, i = tokens[i], i + 1
        if not _is_option(token):
            continue  # the subcommand
        key, text = _option(token)
        if text is None:
            if key in _NO_VALUE or i >= len(tokens) or _is_option(tokens[i]):
                continue  # an option without a value (--help, --print_config, or one left without its value)
            text, i = tokens[i], i + 1
        tree: Any = _config(text) if key in _CONFIG_OPTIONS else _value(text)
        if key not in _CONFIG_OPTIONS:
            for part in reversed(key.lstrip("-").split(".")):
                tree = {part: tree}
        if isinstance(tree, dict):
            yield tree


def command_line(args: Any) -> List[str]:
    """LightningCLI's ``args`` as the command line these checks read: a list or tuple as it is; a dict or a
    jsonargparse ``Namespace`` (LightningCLI parses it with ``parse_object``, without ``sys.argv``) as one
    ``--config`` source, its settings as JSON, after its subcommand (its ``subcommand`` key, or its one key that is a
    subcommand). ``[]`` (nothing checked) for one that is not plain data (numbers, strings, lists, dicts)."""
    from litesam_pl.cli.errors import LIGHTNING_SUBCOMMANDS

    if isinstance(args, (list, tuple)):
        return [str(a) for a in args]
    try:  # anything odd in a user's dict means nothing to check, never an error of its own
        tree = args.as_dict() if hasattr(args, "as_dict") else args
        if not isinstance(tree, dict):
            return []
        subs = [k for k in tree if k in LIGHTNING_SUBCOMMANDS]
        sub = tree.get("subcommand") or (subs[0] if len(subs) == 1 else None)
        settings = tree.get(sub) if sub else tree
        settings = settings.as_dict() if hasattr(settings, "as_dict") else settings
        return [*([str(sub)] if sub else []), "--config", json.dumps(settings)]
    except Exception:  # noqa: BLE001
        return []


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
        kind = _CLASS_KEYS[path]
        obj = resolve_object(new_path, kind)
        if obj is not None and not inspect.isclass(obj):
            init = {}  # a function: jsonargparse takes its path alone
        else:
            taken = init_arguments(obj) if obj is not None and kind == "model" else _signature_arguments(obj)
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


def _refusal(hint: Any, value: Any) -> Optional[str]:
    """jsonargparse's message when it refuses ``value`` for the type ``hint`` (the setting alone, parsed as
    LightningCLI parses it); None when it takes it, or when the parse cannot tell (no hint, another error)."""
    import argparse

    from jsonargparse import ArgumentParser

    if hint is None:
        return None
    parser = ArgumentParser(exit_on_error=False)
    try:
        parser.add_argument("--value", type=hint)
        parser.parse_object({"value": value})
    except argparse.ArgumentError as err:
        return str(err)
    except Exception:  # noqa: BLE001 - not a refusal of the value: say nothing
        return None
    return None


def _guess(hint: str) -> str:
    return f" ({hint})" if hint else ""


def _module_finding(cls: type, key: str, value: Any, taken: Dict[str, Any], choices: List[str]) -> str:
    """The line for ``init_args[key]`` of the module ``cls``: an argument it does not take, or a field its typed part
    does not have; ``""`` for neither."""
    if key not in taken:
        return (f"unrecognized option --model.init_args.{key}: {cls.__name__} has no argument {key!r}"
                + _guess(suggest_option(key, choices)))
    part = dataclass_of(taken[key])
    if part is None or not isinstance(value, dict):
        return ""
    unknown = [field for field in value if field not in {f.name for f in dataclasses.fields(part)}]
    if not unknown:
        return ""
    option = f"{key}.{unknown[0]}"
    return (f"unrecognized option --model.init_args.{option}: {cls.__name__}'s {key} has no field {unknown[0]!r}"
            + _guess(suggest_option(option, choices)))


def _check_module(cls: type, class_path: str, init_args: Dict[str, Any], taken: Dict[str, Any]) -> None:
    """``ConfigError`` for an argument ``cls`` does not take (``taken``: its ``init_arguments``), or a field a typed
    part does not have, when jsonargparse refuses the class with that argument (``_refusal``)."""
    from litesam_pl.modules.config import ConfigError

    choices = init_options(cls)
    for key, value in init_args.items():
        line = _module_finding(cls, key, value, taken, choices)
        if line and _refusal(_kinds("model")[0], {"class_path": class_path, "init_args": {key: value}}):
            raise ConfigError(line)


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


def _check_callable(key: str, setting: Dict[str, Any], hint: Any) -> Optional[Dict[str, Any]]:
    """For an ``optimizer`` / ``lr_scheduler`` setting jsonargparse refuses (``_refusal`` on ``hint``, the module's
    type for it): ``ConfigError`` for a class that cannot be imported or is not of its kind (jsonargparse's sentence),
    an argument its class does not take (with where an old optimizer field went, or the closest argument); else its
    spec (``{class_path, init_args}``), for the construction. None when jsonargparse takes it, or for a function."""
    from litesam_pl.cli.errors import did_you_mean, jsonargparse_message
    from litesam_pl.modules.config import ConfigError
    from litesam_pl.modules.optim import import_path, moved_option

    option, class_path = f"--model.init_args.{key}", setting.get("class_path")
    refusal = _refusal(hint, setting if setting["init_args"] else class_path) if class_path else None
    if refusal is None:
        return None
    obj = resolve_object(class_path, key)
    if obj is None:
        raise ConfigError(f"{option}: cannot import {class_path!r}")
    wrong = jsonargparse_message("wrong_callable", refusal)
    if wrong:
        raise ConfigError(f"{option}: {wrong['sentence']}")
    if not inspect.isclass(obj) or not issubclass(obj, _kinds(key)):
        return None  # a function, or a refusal without a line here: jsonargparse's message stands
    shown = class_path if "." in class_path else import_path(obj)
    taken = _signature_arguments(obj)
    for name in setting["init_args"]:
        if taken is not None and name not in taken:
            moved = moved_option(key, name)
            elsewhere = moved not in (f"{key}.{name}", f"{key}.init_args.{name}")
            hint = f"now {moved!r}" if elsewhere else did_you_mean(name, sorted(taken))
            raise ConfigError(f"unrecognized option {option}.init_args.{name}: {shown} has no argument {name!r}"
                              + _guess(hint))
    hints = init_arguments(obj)
    return {"class_path": shown, "init_args": {k: _typed(v, hints.get(k)) for k, v in setting["init_args"].items()}}


def check_settings(argv: Sequence[str]) -> None:
    """``ConfigError`` (its message the line to print) for the first setting of ``argv`` that the checks of this
    module refuse (see the module's docstring); nothing when they find none."""
    from litesam_pl.modules.config import ConfigError
    from litesam_pl.modules.optim import optimization

    outside_model = [str(t) for t in argv if not str(t).startswith("--model.")]  # jsonargparse takes those targets
    linked = linked_value_set_by_user((), outside_model)
    if linked:
        raise ConfigError(linked)
    model = merged_config(argv).get("model")
    cls = resolve_class(model.get("class_path"), "model") if isinstance(model, dict) else None
    if cls is None:
        return
    init_args, hints = model["init_args"], init_arguments(cls)
    _check_module(cls, model["class_path"], init_args, hints)
    specs = {key: _check_callable(key, init_args[key], hints.get(key)) for key in _CALLABLES
             if isinstance(init_args.get(key), dict)}
    if any(specs.values()):  # the refused ones, built (the other: the paper's Adam, no schedule)
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
