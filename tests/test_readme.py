"""README.md as a user reads it: every ```python block runs as written, and every command it names exists.

* Each ```python block runs in a fresh namespace in a temporary working directory that holds what the README tells
  the user to have: a model file ``litesam.pt`` (a tiny random-weight ``litesam`` export, the format of
  ``litesam export``) and a photo ``photo.jpg``. A block that reads another file fails here with that name.
* Shell blocks are not run; but every ``make <target>`` the README names is a target ``make help`` lists, with only
  the variables and ``ARGS`` its help line gives; every ``python -m X`` (and every ``data_prep.X`` /
  ``benchmarks.X`` module named in code) is a module file of this repository; every ``litesam <subcommand>`` is one.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from litesam_pl.cli import SUBCOMMANDS
from tests.helpers import REPO

README = (REPO / "README.md").read_text()
# the files the README's Python blocks may read, made by the `workdir` fixture
PREPARED = {"litesam.pt", "photo.jpg"}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>\w*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)


def fenced_blocks(text: str, lang: str) -> List[Tuple[int, str]]:
    """``(first line number of the code, dedented code)`` of each ```lang block (also indented, in lists)."""
    out = []
    for m in _FENCE.finditer(text):
        if m.group("lang") == lang:
            line = text.count("\n", 0, m.start("body")) + 1
            out.append((line, textwrap.dedent(m.group("body"))))
    return out


def code_texts(text: str) -> List[str]:
    """Everything the README shows as code: fenced blocks (continuation lines joined) and inline `spans`."""
    fenced = [body.replace("\\\n", " ") for m in _FENCE.finditer(text) for body in [m.group("body")]]
    prose = _FENCE.sub("", text)
    inline = re.findall(r"`([^`\n]+)`", prose)
    return fenced + inline


def make_commands(text: str) -> List[Tuple[str, str]]:
    """``(target, the rest of the command)`` for every ``make <target> ...`` shown as code (comments dropped)."""
    out = []
    for code in code_texts(text):
        for line in code.splitlines():
            line = re.sub(r"\s#\s.*$", "", line)
            for m in re.finditer(r"(?:^|[\s;&|(])make ([a-z0-9][\w-]*)([^;&|]*)", line):
                out.append((m.group(1), m.group(2).strip()))
    return out


def help_lines() -> Dict[str, str]:
    """``{target: help text}`` as ``make help`` prints it (from the Makefile's ``## `` comments without make)."""
    if shutil.which("make"):
        out = subprocess.run(["make", "-s", "--no-print-directory", "help"], cwd=REPO, capture_output=True,
                             text=True, timeout=120, check=True).stdout
        rows = [re.match(r"\s*make (\S+)\s+(.*)$", line) for line in out.splitlines()]
        return {m.group(1): m.group(2) for m in rows if m}
    text = (REPO / "Makefile").read_text()
    return dict(re.findall(r"^([a-zA-Z0-9_-]+):.*?## (.*)$", text, re.M))


# ------------------------------------------------------------------------------------------------------------------
# Python blocks


PYTHON_BLOCKS = fenced_blocks(README, "python")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A user's folder after the README's 'Weights' steps: ``litesam.pt`` and a photo, ``photo.jpg``."""
    import skimage.data
    from PIL import Image

    import litesam_pl
    from litesam_pl.inference.export import export_weights

    d = tmp_path_factory.mktemp("readme")
    model = litesam_pl.create_model("litesam", img_size=64)  # tiny and random: the blocks must run, not segment well
    export_weights(model, d / "litesam.pt")
    photo = Image.fromarray(skimage.data.astronaut()).resize((240, 180))  # not square, as most photos
    photo.save(d / "photo.jpg", quality=90)
    return d


def test_readme_has_python_blocks():
    assert PYTHON_BLOCKS, "README.md has no ```python block"


@pytest.mark.parametrize("line,code", PYTHON_BLOCKS, ids=[f"README.md:{line}" for line, _ in PYTHON_BLOCKS])
def test_python_block_runs_as_written(line, code, workdir, monkeypatch):
    """Runs as a user would paste it (the traceback points at README.md's own lines)."""
    for name in re.findall(r"""["']([^"'\s]+\.(?:pt|pth|ckpt|jpe?g|png|tiff?|json))["']""", code):
        assert name in PREPARED, (f"README.md:{line}: the block reads {name!r}; say where it comes from and add it "
                                  f"to this test's workdir (prepared: {sorted(PREPARED)})")
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(sys, "argv", ["python"])
    exec(compile("\n" * (line - 1) + code, str(REPO / "README.md"), "exec"), {"__name__": "__main__"})


# ------------------------------------------------------------------------------------------------------------------
# commands named in shell blocks and inline code


def test_make_targets_exist_with_the_arguments_make_help_gives():
    helps = help_lines()
    assert {"help", "install", "test", "demo", "smoke"} <= set(helps), sorted(helps)
    commands = make_commands(README)
    assert {"demo", "test", "smoke", "real-smoke", "bench-coco"} <= {t for t, _ in commands}
    problems = []
    for target, rest in commands:
        if target not in helps:
            problems.append(f"`make {target}`: no such target in `make help` ({', '.join(sorted(helps))})")
            continue
        help_text = helps[target]
        allowed = set(re.findall(r"\b([A-Z_]+)=", help_text))
        for var, value in re.findall(r"\b([A-Z_]+)=('[^']*'|\S*)", rest):
            if var not in allowed:
                problems.append(f"`make {target} {rest}`: make help names no {var}= for {target}: {help_text}")
            elif var == "ARGS" and "ARGS='" in help_text:  # help shows the arguments: the README uses them
                shown = re.findall(r"'([^']*)'", help_text.split("ARGS=", 1)[1])
                if value.strip("'") not in shown:
                    problems.append(f"`make {target} {rest}`: make help gives ARGS= as "
                                    f"{' or '.join(repr(s) for s in shown)}")
    assert not problems, "\n".join(problems)


def _module_file(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__main__.py").is_file()


def test_python_modules_exist():
    codes = code_texts(README)
    run = {m for c in codes for m in re.findall(r"python(?:3[.\d]*)? -m ([\w.]+)", c)}
    named = {m for c in codes for m in re.findall(r"\b((?:data_prep|benchmarks)\.\w+)\b", c)}
    assert {"data_prep.sa1b", "benchmarks.coco"} <= run | named
    missing = sorted(m for m in run | named if not _module_file(m))
    assert not missing, f"README.md names modules that are no file of the repository: {missing}"


def test_litesam_subcommands_exist():
    used = {m for c in code_texts(README) for m in re.findall(r"(?:^|[\s/])litesam ([a-z][\w-]*)", c)}
    assert {"fit", "export", "segment-everything"} <= used
    assert used <= set(SUBCOMMANDS), f"not litesam subcommands: {sorted(used - set(SUBCOMMANDS))}"


def test_helpers_find_what_they_should():
    """The extraction itself: indented fences, continuation lines, comments, inline spans."""
    text = ("x\n1. step\n   ```bash\n   make foo ARGS='a b'   # c\n   python -m pkg.mod \\\n       --x\n   ```\n"
            "and `make bar DATA=d` and `litesam export --out y`.\n```python\nimport os\n```\n")
    assert make_commands(text) == [("foo", "ARGS='a b'"), ("bar", "DATA=d")]
    assert fenced_blocks(text, "python") == [(10, "import os\n")]
    assert fenced_blocks(text, "bash")[0][1].startswith("make foo")
    assert any(re.search(r"python -m pkg\.mod +--x", c) for c in code_texts(text))
