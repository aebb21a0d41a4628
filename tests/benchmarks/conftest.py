"""Fixtures of the benchmarks' tests: tiny COCO / LVIS instance sets (``tiny_sets.tiny_instances``), so that the
commands that read such sets have a fast test that needs no ../shared."""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import pytest

from tests.benchmarks.tiny_sets import tiny_instances


@pytest.fixture(scope="session")
def tiny_coco(tmp_path_factory) -> Tuple[Path, Path]:
    """``(instances.json, image folder)`` of 5 tiny COCO-format images (a crowd region among the instances)."""
    return tiny_instances(tmp_path_factory.mktemp("tiny_coco"))


@pytest.fixture(scope="session")
def tiny_lvis(tmp_path_factory) -> Tuple[Path, Path]:
    """The same images as an LVIS-format set (``frequency`` per category, ``coco_url`` per image)."""
    return tiny_instances(tmp_path_factory.mktemp("tiny_lvis"), lvis=True)
