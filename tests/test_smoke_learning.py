"""The ``smoke`` scene preset of ``data_prep.synthetic`` (the data of ``make smoke`` and ``make demo``).

The learning bar itself (held-out ``val/miou_1box`` and ``val/ar100`` after ``make smoke``) is measured by running
``make smoke`` (~15-17 min on this 2-core CPU) and reading ``runs/smoke/litesam/metrics.json``; see docs/training.md.
"""
from __future__ import annotations


import numpy as np
import pytest

from data_prep.synthetic import PRESETS, make_scene, size_group, write_synthetic_sa1b



def _scenes(preset: str, n: int, hw=(128, 128)):
    return [make_scene(np.random.default_rng([7, i]), hw, preset) for i in range(n)]


def test_smoke_preset_fewer_larger_objects():
    smoke, sa1b = _scenes("smoke", 24), _scenes("sa1b", 24)
    area = lambda scenes: np.median([m.sum() for _, ms in scenes for m in ms])  # noqa: E731
    count = lambda scenes: np.mean([len(ms) for _, ms in scenes])  # noqa: E731
    assert area(smoke) >= 4 * area(sa1b)  # masks large enough to learn at 128 px
    assert count(smoke) < count(sa1b)
    groups = set()
    for img, masks in smoke:
        assert img.shape == (128, 128, 3) and img.dtype == np.uint8
        assert masks, "every smoke scene has at least one object"
        for m in masks:
            assert m.sum() >= PRESETS["smoke"].min_area
            ys, xs = np.nonzero(m)
            groups.add(size_group((ys.max() - ys.min() + 1, xs.max() - xs.min() + 1), (128, 128)))
    assert groups == {0, 1, 2}  # large, medium and small objects all occur across the set


def test_smoke_preset_deterministic_and_checked(tmp_path):
    a = write_synthetic_sa1b(tmp_path / "a", 4, seed=5, images_per_tar=2, size=(64, 64), preset="smoke")
    b = write_synthetic_sa1b(tmp_path / "b", 4, seed=5, images_per_tar=2, size=(64, 64), preset="smoke")
    d = write_synthetic_sa1b(tmp_path / "d", 4, seed=5, images_per_tar=2, size=(64, 64))
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert [p.read_bytes() for p in a] != [p.read_bytes() for p in d]  # the preset changes the scenes
    with pytest.raises(ValueError, match="preset"):
        write_synthetic_sa1b(tmp_path / "x", 1, preset="nope")
