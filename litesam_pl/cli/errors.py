"""The ``litesam`` command's errors: one line on stderr, exit status 2, no traceback (``litesam_pl.cli``).

``CLIError`` (a command line the user can fix), ``user_errors`` (every exception type printed that way), the
``did you mean`` guesses, the one-line forms of jsonargparse's messages (``parse_error_line``, used by
``litesam_pl.cli.lightning.ShortErrorParser``) and ``check_accelerator`` (a GPU recipe on a machine without CUDA).
Standard library only: ``litesam --help`` and the tools import no Lightning.
"""
from __future__ import annotations

import difflib
import os
import re
import sys
from typing import Any, List, Optional, Sequence

__all__ = ["CLIError", "SUBCOMMANDS", "LIGHTNING_SUBCOMMANDS", "TOOL_SUBCOMMANDS", "MOVED_OPTIONS", "check_accelerator",
           "did_you_mean", "fail", "parse_error_line", "recipe_files", "unknown_subcommand", "user_errors"]

# the ``litesam`` subcommands (``litesam_pl.cli`` dispatches them; an unknown one gets a did-you-mean from here)
LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")
TOOL_SUBCOMMANDS = ("segment-everything", "export", "app")
SUBCOMMANDS = (*LIGHTNING_SUBCOMMANDS, *TOOL_SUBCOMMANDS)

# what a GPU recipe needs on a CPU-only machine (tests/helpers.py's LOCAL, less the logger)
_CPU_OVERRIDES = ("--trainer.accelerator cpu --trainer.devices 1 --trainer.num_nodes 1 --trainer.strategy auto "
                  "--trainer.precision 32-true")


class CLIError(ValueError):
    """A command line the user can fix (unknown subcommand, a GPU recipe without CUDA): one line, no traceback."""


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """``did you mean 'x'?`` for the closest of ``choices`` (difflib), or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}?" if close else ""


def fail(prog: str, message: str, hint: str = "") -> None:
    """Print ``prog: error: message`` (+ a short hint line) on stderr and exit with status 2."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    if hint:
        sys.stderr.write(f"{hint}\n")
    raise SystemExit(2)


def unknown_subcommand(name: str, subcommands: Sequence[str] = SUBCOMMANDS) -> None:
    """Exit (status 2) naming every subcommand and the closest one."""
    guess = did_you_mean(name, subcommands)
    fail("litesam", f"unknown subcommand {name!r}" + (f"; {guess}" if guess else ""),
         f"subcommands: {', '.join(subcommands)} (litesam --help)")


def user_errors() -> tuple:
    """The exception types that are the user's to fix: printed as one line, exit status 2."""
    from litesam_pl.data.sa1b_stream import ShardsError
    from litesam_pl.models.registry import ModelError
    from litesam_pl.modules.config import ConfigError
    from litesam_pl.modules.prediction_writer import PredictOutputError

    return (CLIError, ModelError, ShardsError, ConfigError, PredictOutputError)


# --- jsonargparse's messages as one line -----------------------------------------------------------------------------
def _unrecognized_options(message: str) -> List[str]:
    """The ``--option`` names in jsonargparse's ``unrecognized arguments: --a 3 --b=x`` message."""
    if "unrecognized arguments" not in message:
        return []
    rest = message.split("unrecognized arguments:", 1)[1]
    return [tok.split("=", 1)[0] for tok in rest.split() if tok.startswith("--")]


def _rejected_init_arg(message: str) -> str:
    """One line for jsonargparse's multi-line ``Parser key "model": ... class_path 'X': Option 'y' is not
    accepted`` (an unknown ``--model.init_args.y``), with a did-you-mean; ``""`` for any other message."""
    from litesam_pl.cli.config import init_options, suggest_option

    m = re.search(r'Parser key "([^"]+)".*?class_path \'([^\']+)\'.*?Option \'([^\']+)\' is not accepted', message,
                  re.S)
    if not m:
        return ""
    key, class_path, option = m.groups()
    guess = suggest_option(option, init_options(class_path))
    return (f"unrecognized option --{key}.init_args.{option}: {class_path.rsplit('.', 1)[-1]} has no argument "
            f"{option!r}" + (f" ({guess})" if guess else ""))


# LightningCLI's own optimizer options, which ``litesam`` leaves out: the module takes its optimizer and schedule
MOVED_OPTIONS = {"--optimizer": "--model.init_args.optimizer", "--lr_scheduler": "--model.init_args.lr_scheduler"}


def _moved_or_close(option: str, known_options: Sequence[str]) -> str:
    """``did you mean 'x'?`` for an unknown ``option``: where it moved (``MOVED_OPTIONS``), else the closest."""
    if option in MOVED_OPTIONS:
        return f"did you mean {MOVED_OPTIONS[option]!r}?"
    return did_you_mean(option, known_options)


def _short(message: str, max_lines: int = 3) -> str:
    """A short multi-line parser message on one line; a longer one (a validation dump) as it is."""
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    return " ".join(lines) if len(lines) <= max_lines else message.rstrip()


def parse_error_line(message: str, ex: Optional[Exception], known_options: Sequence[str]) -> str:
    """The line that matters in a jsonargparse error: a bad config value (``ConfigError``), a refused optimizer or
    schedule (``callable_error_line``), an unknown ``--model.init_args.X`` or config-part field, else the message
    itself (short ones on one line); an unknown option gets where it moved (``MOVED_OPTIONS``) or the closest of
    ``known_options``."""
    from litesam_pl.cli.config import callable_error_line, config_error_in, linked_target_line, unknown_part_field

    guesses = [g for g in (_moved_or_close(o, known_options) for o in _unrecognized_options(message)) if g]
    config_error = config_error_in(ex) if ex is not None else None
    line = (str(config_error) if config_error else "") or callable_error_line(message) \
        or _rejected_init_arg(message) or unknown_part_field(message) or linked_target_line(message) \
        or _short(message)
    if guesses and not line.startswith("unrecognized option"):
        line += f" ({'; '.join(guesses)})"
    return line


# --- a GPU recipe without CUDA ---------------------------------------------------------------------------------------
def _accelerator_name(value: Any) -> str:
    """``trainer.accelerator`` as a lower-case name (a string, or the class path of an Accelerator object)."""
    if isinstance(value, str):
        return value.lower()
    class_path = getattr(value, "class_path", None) or (value.get("class_path") if isinstance(value, dict) else None)
    return str(class_path or "").rsplit(".", 1)[-1].lower()


def recipe_files(config: Any) -> List[str]:
    """The ``--config`` files of a parsed config (relative paths as given)."""
    files = config.get("config") if hasattr(config, "get") else None
    out = []
    for f in files or []:
        rel = getattr(f, "relative", None) or str(f)
        out.append(str(rel))
    return out


def _smoke_overlay(recipes: Sequence[str]) -> str:
    """``recipes/smoke/<name>.yaml`` next to the first base recipe that has one, else a generic pattern."""
    for r in recipes:
        head, name = os.path.split(r)
        cand = os.path.join(head, "smoke", name)
        if os.path.basename(head) != "smoke" and os.path.isfile(cand):
            return f"--config {r} --config {cand}"
    return "--config recipes/<stage>.yaml --config recipes/smoke/<stage>.yaml"


def check_accelerator(config: Any) -> None:
    """``CLIError`` when the trainer asks for GPUs (``accelerator: gpu``/``cuda``) and CUDA is unavailable, before
    the Trainer is built (Lightning would end in a 33-line ``No supported gpu backend found!`` traceback)."""
    import torch

    trainer = config.get("trainer") if hasattr(config, "get") else None
    if trainer is None:
        return
    acc = _accelerator_name(trainer.get("accelerator"))
    if acc not in ("gpu", "cuda", "cudaaccelerator") or torch.cuda.is_available():
        return
    recipes = recipe_files(config)
    what = " + ".join(recipes) if recipes else "this configuration"
    raise CLIError(
        f"{what} wants GPUs (trainer.accelerator: {trainer.get('accelerator')}) but CUDA is not available on this "
        f"machine; to run on the CPU add {_CPU_OVERRIDES}, or use a smoke overlay: {_smoke_overlay(recipes)}"
    )
