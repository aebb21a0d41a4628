"""The shape of the code base (issue 14): every module on the test map, focused files and functions, no private
names imported across packages, and docs that name only test files that exist."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.helpers import REPO

CODE_DIRS = ("litesam_pl", "benchmarks", "data_prep")
MAX_MODULE_LINES = 420  # "no module over ~400 lines"
MAX_FUNCTION_LINES = 60  # longer only with "Long" and the reason at the top of its docstring
TEST_MAP = REPO / "tests" / "README.md"


def _modules() -> list[Path]:
    return sorted(p for d in CODE_DIRS for p in (REPO / d).rglob("*.py") if "__pycache__" not in p.parts)


def _named_files(text: str) -> set[str]:
    """The file names the test map writes in backticks: ``foo.py``, ``toolkit/paper.py`` (the last part), and the
    benchmark entry points as ``python -m`` names (``benchmarks.coco`` is ``coco.py``)."""
    files = {m.split("/")[-1] for m in re.findall(r"`([\w/]+\.py)`", text)}
    return files | {m + ".py" for m in re.findall(r"`benchmarks\.(\w+)`", text)}


def test_every_module_and_test_file_is_on_the_test_map():
    named = _named_files(TEST_MAP.read_text())
    missing = [str(p.relative_to(REPO)) for p in _modules() if p.name != "__init__.py" and p.name not in named]
    assert not missing, f"modules that tests/README.md does not map to a test file: {missing}"
    tests = sorted(p for p in (REPO / "tests").rglob("test_*.py") if "__pycache__" not in p.parts)
    unmapped = [str(p.relative_to(REPO)) for p in tests if p.name not in named]
    assert not unmapped, f"test files tests/README.md does not name: {unmapped}"
    test_names = {p.name for p in tests}
    stale = sorted(n for n in named if n.startswith("test_") and n not in test_names)
    assert not stale, f"tests/README.md names test files that do not exist: {stale}"


def test_no_module_over_the_size_limit():
    big = [f"{p.relative_to(REPO)} ({n} lines)" for p in _modules()
           if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not big, big


def test_no_long_function_without_a_reason():
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and not re.search(r"\bLong\b", ast.get_docstring(node) or ""):
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def _package(module: str) -> str:
    """``litesam_pl.data.rle`` -> ``litesam_pl.data``; ``benchmarks.toolkit.paper`` -> ``benchmarks``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "litesam_pl" and len(parts) > 2 else parts[0]


def test_no_private_name_imported_from_another_package():
    found = []
    for path in _modules():
        here = _package(".".join(path.relative_to(REPO).with_suffix("").parts))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.split(".")[0] not in CODE_DIRS or _package(node.module) == here:
                    continue
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.endswith("__")]
                private_module = any(part.startswith("_") for part in node.module.split("."))
                if private or private_module:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} from {node.module} import "
                                 f"{', '.join(a.name for a in node.names)}")
    assert not found, found


def test_docs_name_only_test_files_that_exist():
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    stale = sorted({f"{d.relative_to(REPO)}: {m}" for d in docs
                    for m in re.findall(r"\btests/[\w/]+\.py\b", d.read_text()) if not (REPO / m).is_file()})
    assert not stale, stale
