"""The shape of the code base (issue 14): every module on the test map, focused files and functions, no private
names imported across packages, and docs that name only test files that exist."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.helpers import REPO

# examples/ is left out: each example is one self-contained file to copy to a deployment (its top says so)
CODE_DIRS = ("litesam_pl", "benchmarks", "data_prep")
MAX_MODULE_LINES = 420  # "no module over ~400 lines"
MAX_FUNCTION_LINES = 60  # longer only with "Long" and the reason at the top of its docstring
TEST_MAP = REPO / "tests" / "README.md"


def _modules() -> list[Path]:
    return sorted(p for d in CODE_DIRS for p in (REPO / d).rglob("*.py") if "__pycache__" not in p.parts)


def _sections(text: str) -> list[tuple[list[tuple[str, str]], set[str]]]:
    """The map's ``###`` sections: the (code folder, test folder) pairs its title names (``litesam_pl/data`` ->
    ``tests/data``) and the names it writes in backticks (``coco.py``, ``toolkit/paper.py``, ``tests/x/test_y.py``,
    and ``benchmarks.coco`` for the benchmark entry points)."""
    out = []
    for part in re.split(r"^### ", text, flags=re.M)[1:]:
        title, body = part.split("\n", 1)
        pairs = [(c.rstrip("/"), t.rstrip("/")) for c, t in re.findall(r"`([\w/]+)` -> `(tests/?[\w/]*)`", title)]
        if not pairs and "-> `tests/`" in title:  # the top-level section: full paths
            pairs = [("", "tests")]
        body = body.split("\n## ")[0]
        names = set(re.findall(r"`([\w/]+\.py)`", body))
        names |= {f"{m}.py" for m in re.findall(r"`benchmarks\.(\w+)`", body)}
        out.append((pairs, names))
    return out


def _on_map(rel: str, sections, side: int) -> bool:
    """``rel`` (a repository path) is named by its full path anywhere, or by its path below the folder of a section
    whose title pairs that folder (``side`` 0: code, 1: tests)."""
    if any(rel in names for _, names in sections):
        return True
    for pairs, names in sections:
        for pair in pairs:
            folder = pair[side]
            if folder and rel.startswith(folder + "/") and rel[len(folder) + 1:] in names:
                return True
    return False


def test_every_module_and_test_file_is_on_the_test_map():
    """Each module is named in the map section of its folder, each test file in the section of its test folder (or
    by its full path), and each test file a section names exists in that section's test folder."""
    sections = _sections(TEST_MAP.read_text())
    rel = [str(p.relative_to(REPO)) for p in _modules() if p.name != "__init__.py"]
    missing = [m for m in rel if not _on_map(m, sections, 0)]
    assert not missing, f"modules that tests/README.md does not map in their folder's section: {missing}"
    tests = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*.py") if "__pycache__" not in p.parts)
    unmapped = [t for t in tests if not _on_map(t, sections, 1)]
    assert not unmapped, f"test files tests/README.md does not name in their folder's section: {unmapped}"
    stale = sorted(f"{name} ({', '.join(t for _, t in pairs)})" for pairs, names in sections for name in names
                   if name.split("/")[-1].startswith("test_") and not (REPO / name).is_file()
                   and not any((REPO / t / name).is_file() for _, t in pairs))
    assert not stale, f"tests/README.md names test files that do not exist where it says: {stale}"


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


def _private(name: str) -> bool:
    return name.startswith("_") and not name.endswith("__")


def _imported_module(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module of ``from <module> import ...`` in ``path`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = list(path.relative_to(REPO).with_suffix("").parts[:-1])
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def test_no_private_name_imported_from_another_package():
    """No ``from <other package> import _name`` (absolute or relative) and no private module of another package."""
    found = []
    for path in _modules():
        here = _package(".".join(path.relative_to(REPO).with_suffix("").parts))
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            module = _imported_module(path, node)
            if module.split(".")[0] not in CODE_DIRS or _package(module) == here:
                continue
            if any(_private(a.name) for a in node.names) or any(_private(p) for p in module.split(".")):
                found.append(f"{path.relative_to(REPO)}:{node.lineno} from {module} import "
                             f"{', '.join(a.name for a in node.names)}")
    assert not found, found


def test_third_party_privates_only_in_compat():
    """Outside ``litesam_pl/compat.py`` (the one documented place), no private name of another library: neither
    ``from lib import _name`` nor ``lib._name`` / ``alias._name`` on an imported library module."""
    found = []
    for path in _modules():
        if path == REPO / "litesam_pl" / "compat.py":
            continue
        tree = ast.parse(path.read_text())
        libs = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                libs |= {(a.asname or a.name).split(".")[0] for a in node.names
                         if a.name.split(".")[0] not in CODE_DIRS}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module.split(".")[0] not in CODE_DIRS:
                if any(_private(a.name) for a in node.names):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} from {node.module} import _...")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                    and node.value.id in libs):
                found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value.id}.{node.attr}")
    assert not found, found


def test_docs_name_only_test_files_that_exist():
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    stale = sorted({f"{d.relative_to(REPO)}: {m}" for d in docs
                    for m in re.findall(r"\btests/[\w/]+\.py\b", d.read_text()) if not (REPO / m).is_file()})
    assert not stale, stale


# What each part of the library may import (docs/architecture.md, "Walls": packages on floors, no edge going up);
# every import counts, also those inside functions. ``litesam_pl`` alone is the package's face (``__init__.py``).
MAY_IMPORT = {
    "constants": set(), "compat": set(), "files": set(), "mask_resampling": set(),
    "data": {"constants", "compat", "files"},
    "models": {"constants", "files"},
    "losses": {"mask_resampling"},
    "metrics": {"data", "compat", "files"},
    "inference": {"data", "models", "files", "compat", "constants"},
    "evaluation": {"data", "models", "inference", "constants"},
    "web": {"data", "models", "inference", "files", "constants"},
    "modules": {"data", "models", "metrics", "inference", "losses", "mask_resampling", "compat", "files", "constants"},
    "cli": {"data", "models", "modules", "inference", "compat", "files", "constants"},
    "litesam_pl": {"models", "inference"},
}


def _unit(module: str) -> str:
    """The wall-side of a module: ``litesam_pl.data.rle`` -> ``data``, ``litesam_pl`` -> ``litesam_pl``."""
    parts = module.split(".")
    return parts[0] if parts[0] != "litesam_pl" or len(parts) == 1 else parts[1]


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = _imported_module(path, node)
            out |= ({f"{module}.{a.name}" for a in node.names} if module == "litesam_pl" else {module})
    return {m for m in out if m.split(".")[0] in CODE_DIRS}


def test_library_imports_only_downwards():
    """Each part of ``litesam_pl`` imports only the parts below it (``MAY_IMPORT``; ``cli`` may read the face's
    ``__version__``), and the library never imports ``benchmarks`` or ``data_prep``."""
    found = []
    for path in sorted((REPO / "litesam_pl").rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("").parts
        me = _unit(".".join(rel[:-1] if rel[-1] == "__init__" else rel))
        for module in sorted(_imports(path)):
            if me == "cli" and module == "litesam_pl.__version__":  # the one name cli reads from the face
                continue
            target = _unit(module)
            if module.startswith("litesam_pl.") and module.split(".")[1] not in MAY_IMPORT:  # a name of the face
                target = "litesam_pl"
            if target != me and target not in MAY_IMPORT.get(me, set()):
                found.append(f"{path.relative_to(REPO)}: {me} imports {module}")
    assert not found, found
