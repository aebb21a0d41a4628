"""SegEvery's options as a benchmark's flags.

The options are declared once, in ``litesam_pl.inference.segevery_options.SegEveryOptions`` (default, type, choices,
help line), and ``add_option_flags`` turns them into the ``litesam segment-everything`` flags. A benchmark takes the
flags of the options it varies from there (``add_segevery_flags``: ``add_option_flags`` with ``names`` required),
under the flag name and with the default it has always had where those differ (``benchmarks.coco``'s
``--ppn-top-n``, ``benchmarks.bsds``'s 16 points per side); the values are checked when the options are built
(``SegEveryOptions(...)`` / ``SegEveryOptions.from_args``).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from litesam_pl.inference.segevery_options import add_option_flags, option_flag

__all__ = ["add_segevery_flags", "option_flag"]


def add_segevery_flags(parser: Any, names: Sequence[str], *, defaults: Optional[Mapping[str, Any]] = None,
                       flags: Optional[Mapping[str, str]] = None) -> None:
    """Add to ``parser`` (a parser or an argument group) the ``litesam segment-everything`` flag of each option of
    ``names`` (type, choices, help), with the benchmark's own ``defaults`` and flag names (``flags``:
    ``{"top_n": "--ppn-top-n"}``, the value then in ``args.ppn_top_n``): ``add_option_flags``."""
    add_option_flags(parser, names, defaults=defaults, flags=flags)
