"""Writing files: atomically (``AtomicPath``, ``atomic_write``) and as strict JSON (``json_text``, ``write_json``).
The one home of both for the library, the benchmarks and ``data_prep``: their results, reports, manifests, exported
weights and ``metrics.json`` are written here (not: the ONNX graphs, which ``torch.onnx`` writes, Lightning's own
checkpoints, pictures, and the streamed ``results.json`` that ``litesam predict`` merges from its ranks' parts).

Atomic: the content goes to a temporary file beside the target (the parent folders are created), optionally flushed
to disk (``fsync``), then ``os.replace``-d onto the target. A reader sees the old file or the new one, never half of
one; an exception during the write removes the temporary file and leaves the target as it was. The temporary file
is ``<name>.<pid>.<random>.tmp``, so two processes writing the same file never share it (the last rename wins), or
``<name>.tmp`` with ``unique=False`` (``data_prep``'s shards, whose stale ``.tmp`` files a resumed run finds by
name and deletes). A process killed mid-write leaves its temporary file behind: a ``*.tmp`` beside the target, never
read as the target.

Strict JSON: NaN and +-inf are written as ``null`` (``allow_nan=False``: any JSON reader parses the file), numpy
scalars and arrays as Python numbers and lists, and anything else that JSON does not know as its ``str``. The layout
is the caller's (``indent``, ``sort_keys``, a trailing newline), so every file keeps the layout it has always had.
"""
from __future__ import annotations

import json
import math
import os
import secrets
from pathlib import Path
from typing import Any, Optional

import numpy as np

__all__ = ["TMP_SUFFIX", "AtomicPath", "atomic_write", "json_safe", "json_text", "write_json"]

TMP_SUFFIX = ".tmp"


class AtomicPath:
    """The temporary file ``tmp`` of ``path`` (see the module docstring): write it by name, then ``commit`` renames it
    onto ``path`` (after an ``fsync`` when asked) and ``discard`` deletes it. As a context manager it gives ``tmp`` and
    commits when the block ends normally, discards when it raises::

        with AtomicPath(out) as tmp:
            torch.save(obj, tmp)

    ``commit`` / ``discard`` by hand serve a write spread over several calls (``data_prep``'s ``ShardWriter``).
    """

    def __init__(self, path: str | os.PathLike, fsync: bool = False, unique: bool = True) -> None:
        self.path = Path(path)
        tag = f".{os.getpid()}.{secrets.token_hex(4)}" if unique else ""
        self.tmp = self.path.with_name(self.path.name + tag + TMP_SUFFIX)
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def commit(self) -> Path:
        """Make the temporary file ``path`` (it is deleted if that fails); returns ``path``."""
        try:
            if self.fsync:
                fd = os.open(self.tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()
            raise
        return self.path

    def discard(self) -> None:
        """Delete the temporary file (if any); ``path`` stays as it was."""
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.commit()
        else:
            self.discard()
        return False


def atomic_write(path: str | os.PathLike, data: bytes | str, fsync: bool = False) -> Path:
    """Write ``data`` (``str`` as UTF-8) to ``path`` atomically (see the module docstring); returns the path."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with AtomicPath(path, fsync=fsync) as tmp:
        tmp.write_bytes(raw)
    return Path(path)


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


def json_text(obj: Any, indent: Optional[int] = None, sort_keys: bool = False) -> str:
    """``obj`` as strict JSON text (see the module docstring), without a trailing newline; ``indent=None``: one
    line (a JSON-lines record, a COCO results file)."""
    try:  # plain finite values (the usual case): encoded as they are, without a converted copy
        return json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=False)
    except (TypeError, ValueError):  # NaN / inf, numpy values or unknown objects: the same text once converted
        return json.dumps(json_safe(obj), indent=indent, sort_keys=sort_keys, default=str)


def write_json(path: str | os.PathLike, obj: Any, indent: Optional[int] = 1, *, sort_keys: bool = False,
               newline: bool = True, fsync: bool = False) -> Path:
    """Write ``json_text(obj, indent, sort_keys)`` (plus ``"\\n"`` when ``newline``) to ``path`` atomically; the
    defaults (one-space indent, a final newline) are the benchmarks' and ``data_prep``'s files. Returns the path."""
    return atomic_write(path, json_text(obj, indent, sort_keys) + ("\n" if newline else ""), fsync=fsync)
