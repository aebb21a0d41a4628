"""Writing a benchmark's results: one JSON writer for every ``benchmarks`` module, and the one-line text of an error
that a result records instead of a figure.

``write_json(path, obj)`` makes the parent folders, turns NaN / inf into ``null`` (strict JSON that any reader
parses), numpy scalars into Python numbers and anything else unknown into its ``str``, and writes atomically (a
temporary file beside the target, then ``os.replace``), so a run killed mid-write never leaves half a file and a
benchmark that rewrites its JSON after every configuration always leaves a readable one.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["json_safe", "write_json", "error_text"]


def json_safe(x: Any) -> Any:
    """``x`` with NaN / inf floats as ``None`` and numpy scalars and arrays as Python values, recursively."""
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        x = x.item()
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return json_safe(x.tolist())
    return x


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> Path:
    """Write ``json_safe(obj)`` to ``path`` atomically (see the module docstring); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(json_safe(obj), indent=indent, default=str) + "\n")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def error_text(exc: BaseException, limit: int = 400) -> str:
    """``"Type: message"`` on one line (whitespace collapsed, cut at ``limit`` characters): what a failed row or step
    records in its ``error`` field."""
    msg = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
