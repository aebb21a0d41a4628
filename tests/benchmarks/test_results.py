"""benchmarks._results.write_json: the one writer of every benchmark's JSON."""
from __future__ import annotations

import json

import numpy as np

from benchmarks._results import write_json


def test_write_json_is_strict_json_and_atomic(tmp_path):
    path = tmp_path / "sub" / "r.json"
    out = write_json(path, {"nan": float("nan"), "inf": float("inf"), "np": np.float32(0.5), "i": np.int64(3),
                            "arr": np.arange(3), "rows": [(1, float("nan"))], "obj": tmp_path})
    assert out == path
    text = path.read_text()
    data = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))  # no NaN / Infinity
    assert data == {"nan": None, "inf": None, "np": 0.5, "i": 3, "arr": [0, 1, 2], "rows": [[1, None]],
                    "obj": str(tmp_path)}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temporary file left
    write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
