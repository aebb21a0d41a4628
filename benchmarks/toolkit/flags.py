"""SegEvery's options as a benchmark's flags.

The options are declared once, in ``litesam_pl.inference.segevery_options.SegEveryOptions`` (default, type, choices,
help line), and ``add_option_flags`` turns them into the ``litesam segment-everything`` flags. A benchmark takes the
flags of the options it varies from there (``add_segevery_flags``), under the flag name and with the default it has
always had where those differ (``benchmarks.coco``'s ``--ppn-top-n``, ``benchmarks.bsds``'s 16 points per side);
the values are checked when the options are built (``SegEveryOptions(...)`` / ``SegEveryOptions.from_args``).
"""
from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any, Dict, Mapping, Optional, Sequence

from litesam_pl.inference.segevery_options import SegEveryOptions, add_option_flags

__all__ = ["add_segevery_flags", "option_flag"]


def option_flag(name: str) -> str:
    """The ``litesam segment-everything`` flag of option ``name`` (``--top-n`` for ``top_n``)."""
    return "--" + name.replace("_", "-")


class _Recorder(argparse.ArgumentParser):
    """A parser that keeps what ``add_option_flags`` asks of it: flag -> ``add_argument`` keywords."""

    def __init__(self) -> None:
        super().__init__(add_help=False)
        self.flags: Dict[str, Dict[str, Any]] = {}

    def add_argument(self, *names: str, **kwargs: Any) -> argparse.Action:
        self.flags[names[0]] = dict(kwargs)
        return super().add_argument(*names, **kwargs)


def add_segevery_flags(parser: Any, names: Sequence[str], *, defaults: Optional[Mapping[str, Any]] = None,
                       flags: Optional[Mapping[str, str]] = None) -> None:
    """Add to ``parser`` (a parser or an argument group) the ``add_option_flags`` flag of each option of ``names``:
    its type, choices and help as ``litesam segment-everything`` has them, its default unless ``defaults`` gives the
    benchmark's own, its flag name unless ``flags`` gives another (``{"top_n": "--ppn-top-n"}``; the value is then
    ``args.ppn_top_n``, argparse's name for that flag)."""
    defaults, flags = dict(defaults or {}), dict(flags or {})
    known = set(SegEveryOptions.flag_names())
    unknown = sorted((set(names) | set(defaults) | set(flags)) - known)
    if unknown:
        raise ValueError(f"not SegEvery option flags: {unknown}; choose from {sorted(known)}")
    stray = sorted((set(defaults) | set(flags)) - set(names))
    if stray:
        raise ValueError(f"defaults / flags for options not in names: {stray}")
    recorder = _Recorder()
    add_option_flags(recorder)
    help_line = {f.name: f.metadata["help"] for f in fields(SegEveryOptions)}
    for name in names:
        kwargs = dict(recorder.flags[option_flag(name)])
        if name in defaults:
            value = defaults[name]
            kwargs.update(default=value, help=help_line[name] + ("" if value is None else f" (default {value})"))
        parser.add_argument(flags.get(name, option_flag(name)), **kwargs)
