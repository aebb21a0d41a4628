"""The ``litesam`` command's errors: one line on stderr, exit status 2, no traceback (``litesam_pl.cli``).

``CLIError`` (a command line the user can fix), ``user_errors`` (every exception type printed that way), the
``did you mean`` guesses, the one line of a refused command line (``parse_error_line``, used by
``litesam_pl.cli.lightning.ShortErrorParser``), the jsonargparse messages ``litesam`` reads
(``JSONARGPARSE_MESSAGES``, the one place that knows their wording) and ``check_accelerator`` (a GPU recipe on a
machine without CUDA). Standard library only: ``litesam --help`` and the tools import no Lightning.
"""
from __future__ import annotations

import difflib
import os
import re
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence

__all__ = ["CLIError", "SUBCOMMANDS", "LIGHTNING_SUBCOMMANDS", "TOOL_SUBCOMMANDS", "MOVED_OPTIONS", "check_accelerator",
           "did_you_mean", "fail", "parse_error_line", "recipe_files", "unknown_subcommand", "user_errors",
           "JSONARGPARSE_MESSAGES", "jsonargparse_message"]

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


# --- jsonargparse's messages ----------------------------------------------------------------------------------------
# The jsonargparse messages ``litesam`` reads: a name -> the pattern of the message and what it captures. This is the
# only place in ``litesam_pl`` that knows their wording (checked against jsonargparse 4.53.0, which words the first
# three as Python 3.11's argparse does); tests/cli/test_errors.py checks each pattern on the message LightningCLI's
# parser prints. The settings jsonargparse refuses inside a class (an unknown argument, a part's field, the optimizer)
# are found without its message (``litesam_pl.cli.checks``), but for the sentence that says a class or function is not
# an optimizer / a schedule, which ``checks`` reads off jsonargparse's refusal of that one setting.
JSONARGPARSE_MESSAGES = {
    # an unknown subcommand: ``name``
    "invalid_subcommand": re.compile(r"argument subcommand: invalid choice: '(?P<name>[^']*)'"),
    # ``litesam fit`` without a recipe: the ``subcommand`` whose model is missing
    "model_required": re.compile(r"arguments are required: (?P<subcommand>\w+)\.model\b"),
    # options no parser takes: the ``arguments`` (options and their values) as given
    "unrecognized_arguments": re.compile(r"unrecognized arguments: (?P<arguments>.*)", re.S),
    # a callable (``model.init_args.optimizer``) of the wrong kind: the ``sentence`` (without its full stop) and the
    # ``class_path`` it names: "Expected 'x.StepLR' to be a subclass of <class 'Optimizer'>" (a class) or "Expected
    # 'x.f' to be a function that returns <class 'Optimizer'>" (a function)
    "wrong_callable": re.compile(r"(?P<sentence>Expected '(?P<class_path>[^']+)' to be "
                                 r"(?:a subclass of|a function that returns) [^\n]+?)\.(?=\.|\s|$)"),
}


def jsonargparse_message(name: str, message: str) -> Optional[Dict[str, str]]:
    """What the ``JSONARGPARSE_MESSAGES`` pattern ``name`` captures in ``message``, or None when it does not match."""
    match = JSONARGPARSE_MESSAGES[name].search(message)
    return match.groupdict() if match else None


def _unrecognized_options(message: str) -> List[str]:
    """The ``--option`` names in jsonargparse's ``unrecognized arguments: --a 3 --b=x`` message."""
    found = jsonargparse_message("unrecognized_arguments", message)
    return [tok.split("=", 1)[0] for tok in found["arguments"].split() if tok.startswith("--")] if found else []


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


def parse_error_line(message: str, ex: Optional[Exception], known_options: Sequence[str],
                     refused_setting: Callable[[], str] = lambda: "") -> str:
    """The line that matters when jsonargparse refuses a command line: a bad config value (the ``ConfigError``
    jsonargparse wrapped), else ``refused_setting()`` (the caller's finder of the setting at fault,
    ``litesam_pl.cli.checks.refused_setting`` on the command line: a linked value, an unknown module argument or part
    field, a refused optimizer or schedule; ``""`` when it finds none), else the message itself (short ones on one
    line); an unknown option gets where it moved (``MOVED_OPTIONS``) or the closest of ``known_options``."""
    from litesam_pl.cli.config import config_error_in

    guesses = [g for g in (_moved_or_close(o, known_options) for o in _unrecognized_options(message)) if g]
    config_error = config_error_in(ex) if ex is not None else None
    line = (str(config_error) if config_error else "") or refused_setting() or _short(message)
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
