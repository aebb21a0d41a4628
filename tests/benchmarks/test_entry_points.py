"""Every entry point of benchmarks/ (``python -m benchmarks.X``) has a test here (issue 14; the length rules for
functions and modules are in ``tests/test_layout.py``)."""
from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import REPO

BENCHMARKS = REPO / "benchmarks"


def entry_points() -> list:
    """The modules of benchmarks/ that run as ``python -m benchmarks.<name>``."""
    return sorted(p.stem for p in BENCHMARKS.glob("*.py") if 'if __name__ == "__main__"' in p.read_text())


def test_every_entry_point_has_a_test():
    names = entry_points()
    assert {"segevery", "coco", "lvis", "bsds", "ci", "complexity", "gpu_check"} <= set(names)
    tests = "\n".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    untested = [n for n in names if not re.search(rf"benchmarks\.{n}\b|from benchmarks import [\w, ]*\b{n}\b", tests)]
    assert not untested, f"entry points without a test in tests/benchmarks/: {untested}"
