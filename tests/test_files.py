"""litesam_pl.files: the atomic writer (``AtomicPath``, ``atomic_write``) and strict JSON (``json_text``,
``write_json``), byte for byte the layouts the library, the benchmarks and data_prep wrote before."""
from __future__ import annotations

import json
import math
import os
from pathlib import PurePosixPath

import numpy as np
import pytest

from litesam_pl import files
from litesam_pl.files import AtomicPath, atomic_write, json_text, write_json


def _strict_loads(text: str):
    """``json.loads`` that refuses ``NaN`` / ``Infinity`` tokens."""
    return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


# ------------------------------------------------------------------------------------------------------- atomic
def test_atomic_write_makes_parents_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "a" / "b" / "f.bin"
    assert atomic_write(path, b"\x00\x01") == path and path.read_bytes() == b"\x00\x01"
    atomic_write(path, "é")  # str: UTF-8
    assert path.read_bytes() == "é".encode("utf-8")
    assert [p.name for p in path.parent.iterdir()] == ["f.bin"]


@pytest.mark.parametrize("existed", [True, False])
def test_an_exception_mid_write_leaves_the_old_file_and_no_temporary(tmp_path, existed):
    path = tmp_path / "f.json"
    if existed:
        path.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with AtomicPath(path) as tmp:
            tmp.write_text("half of the new")
            raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == (["f.json"] if existed else [])
    if existed:
        assert path.read_text() == "old"


def test_a_failed_rename_removes_the_temporary(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    path.write_text("old")

    def refuse(src, dst):
        raise OSError("cross-device")

    monkeypatch.setattr(files.os, "replace", refuse)
    with pytest.raises(OSError, match="cross-device"):
        write_json(path, {"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"] and path.read_text() == "old"


def test_commit_and_discard_by_hand_and_fsync(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(files.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    target = AtomicPath(tmp_path / "shard.tar", fsync=True, unique=False)
    assert target.tmp == tmp_path / f"shard.tar{files.TMP_SUFFIX}"
    target.tmp.write_bytes(b"data")
    assert not target.path.exists()  # nothing at the target until commit
    assert target.commit() == target.path and target.path.read_bytes() == b"data" and len(synced) == 1
    other = AtomicPath(tmp_path / "other.tar")
    other.tmp.write_bytes(b"partial")
    other.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard.tar"] and len(synced) == 1  # fsync only if asked


def test_two_writers_of_one_file_never_share_a_temporary_file(tmp_path):
    """By default each write has its own temporary file (pid and a random tag), so two processes writing the same
    file both finish and the target is one of their contents, whole."""
    first, second = AtomicPath(tmp_path / "r.json"), AtomicPath(tmp_path / "r.json")
    assert first.tmp != second.tmp and first.tmp.name.startswith("r.json.") and first.tmp.suffix == ".tmp"
    first.tmp.write_text("first")
    second.tmp.write_text("second")
    first.commit()
    second.commit()
    assert (tmp_path / "r.json").read_text() == "second" and [p.name for p in tmp_path.iterdir()] == ["r.json"]


# -------------------------------------------------------------------------------------------------- strict JSON
def test_write_json_is_strict_json(tmp_path):
    path = tmp_path / "sub" / "r.json"
    out = write_json(path, {"nan": float("nan"), "inf": float("inf"), "ninf": -math.inf, "np": np.float32(0.5),
                            "i": np.int64(3), "b": np.bool_(True), "arr": np.arange(3), "nanarr": np.array([np.nan]),
                            "rows": [(1, float("nan"))], "obj": tmp_path})
    assert out == path
    assert _strict_loads(path.read_text()) == {"nan": None, "inf": None, "ninf": None, "np": 0.5, "i": 3, "b": True,
                                               "arr": [0, 1, 2], "nanarr": [None], "rows": [[1, None]],
                                               "obj": str(tmp_path)}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]
    assert json_text([np.float64("nan"), np.float64(0.25)]) == "[null, 0.25]"  # a float subclass, NaN too


# what benchmarks.toolkit.results.write_json wrote for BENCH before litesam_pl.files (captured from that code)
BENCH = {"rows": [{"name": "a", "ms": 1.5, "n": np.int64(3), "ok": True, "err": None, "nan": float("nan"),
                   "inf": -math.inf}], "f32": np.float32(0.1), "arr": np.linspace(0, 1, 3), "pair": (1, "é"),
         "obj": PurePosixPath("a/b")}
OLD_BENCH = {
    1: b'{\n "rows": [\n  {\n   "name": "a",\n   "ms": 1.5,\n   "n": 3,\n   "ok": true,\n   "err": null,\n'
       b'   "nan": null,\n   "inf": null\n  }\n ],\n "f32": 0.10000000149011612,\n "arr": [\n  0.0,\n  0.5,\n'
       b'  1.0\n ],\n "pair": [\n  1,\n  "\\u00e9"\n ],\n "obj": "a/b"\n}\n',
    None: b'{"rows": [{"name": "a", "ms": 1.5, "n": 3, "ok": true, "err": null, "nan": null, "inf": null}], '
          b'"f32": 0.10000000149011612, "arr": [0.0, 0.5, 1.0], "pair": [1, "\\u00e9"], "obj": "a/b"}\n',
}


@pytest.mark.parametrize("indent", [1, None])
def test_benchmark_files_are_byte_identical_to_the_old_writer(tmp_path, indent):
    path = tmp_path / "r.json"
    write_json(path, BENCH) if indent == 1 else write_json(path, BENCH, indent=indent)
    assert path.read_bytes() == OLD_BENCH[indent]


OBJECTS = [
    {"rows": [{"name": "a", "ms": 1.5, "n": 3, "ok": True, "err": None}], "nested": {"x": [1, 2.25, "é"]}},
    [{"image_id": 1, "category_id": 1, "segmentation": {"size": [4, 5], "counts": "abc"}, "score": 0.9,
      "bbox": [0.0, 1.0, 2.0, 3.0]}],
]


@pytest.mark.parametrize("obj", OBJECTS)
def test_library_layouts_are_byte_identical_to_plain_json_dumps(tmp_path, obj):
    """Finite plain values: the same bytes as the ``json.dumps`` calls each writer made before."""
    path = tmp_path / "f.json"
    for kwargs, old in [
        (dict(indent=None, newline=False), json.dumps(obj)),  # COCO results / images.json, <stem>_masks.json
        (dict(indent=2, newline=False), json.dumps(obj, indent=2)),  # ONNX report.json
        (dict(indent=2, sort_keys=True, newline=False), json.dumps(obj, indent=2, sort_keys=True)),  # metrics.json
        (dict(indent=1, newline=False), json.dumps(obj, indent=1)),  # data_prep state files
        (dict(), json.dumps(obj, indent=1) + "\n"),  # data_prep manifest.json, benchmarks
    ]:
        write_json(path, obj, **kwargs)
        assert path.read_bytes() == old.encode("utf-8")
