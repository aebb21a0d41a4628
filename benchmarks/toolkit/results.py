"""Writing a benchmark's results: the JSON writer every ``benchmarks`` module uses, and the one-line text of an error
that a result records instead of a figure.

``write_json(path, obj)`` is ``litesam_pl.files.write_json`` (re-exported here for the benchmarks that import it
from their toolkit): parent folders made, NaN / inf as ``null`` (strict JSON that any reader parses), numpy scalars
as Python numbers, anything else unknown as its ``str``, one-space indent and a final newline, written atomically (a
temporary file beside the target, then ``os.replace``), so a run killed mid-write never leaves half a file and a
benchmark that rewrites its JSON after every configuration always leaves a readable one.
"""
from __future__ import annotations

from litesam_pl.files import write_json

__all__ = ["write_json", "error_text"]


def error_text(exc: BaseException, limit: int = 400) -> str:
    """``"Type: message"`` on one line (whitespace collapsed, cut at ``limit`` characters): what a failed row or step
    records in its ``error`` field."""
    msg = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
