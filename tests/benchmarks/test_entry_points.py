"""The rules benchmarks/ keeps (issue 14): every entry point (``python -m benchmarks.X``) has a test here, and no
function runs over 60 lines unless its docstring says why (a sentence starting "Long")."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.helpers import REPO

BENCHMARKS = REPO / "benchmarks"
MAX_LINES = 60


def entry_points() -> list:
    """The modules of benchmarks/ that run as ``python -m benchmarks.<name>``."""
    return sorted(p.stem for p in BENCHMARKS.glob("*.py") if 'if __name__ == "__main__"' in p.read_text())


def test_every_entry_point_has_a_test():
    names = entry_points()
    assert {"segevery", "coco", "lvis", "bsds", "ci", "complexity", "gpu_check"} <= set(names)
    tests = "\n".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    untested = [n for n in names if not re.search(rf"benchmarks\.{n}\b|from benchmarks import [\w, ]*\b{n}\b", tests)]
    assert not untested, f"entry points without a test in tests/benchmarks/: {untested}"


def test_no_long_function_without_a_reason():
    long = []
    for path in sorted(BENCHMARKS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES and not re.search(r"\bLong\b", ast.get_docstring(node) or ""):
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long
