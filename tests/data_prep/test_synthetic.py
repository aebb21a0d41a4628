"""data_prep.synthetic: synthetic SA-1B tars (layout, schema, determinism, parts and occlusion, the command) and the
``smoke`` scene preset (the data of ``make smoke`` and ``make demo``).

The learning bar itself (held-out ``val/miou_1box`` and ``val/ar100`` after ``make smoke``) is measured by running
``make smoke`` (~15-17 min on this 2-core CPU) and reading ``runs/smoke/litesam/metrics.json``; see docs/training.md.
"""
from __future__ import annotations

import tarfile
from collections import Counter

import numpy as np
import pytest

from data_prep.synthetic import PRESETS, make_scene, size_group, write_synthetic_sa1b
from litesam_pl.data.rle import decode_rle, rle_to_bbox
from tests.data_prep.tars import read_tar, samples_of, sha


def test_synthetic_layout_and_schema(synthetic_sa1b):
    tars = sorted(synthetic_sa1b.glob("*.tar"))
    assert [t.name for t in tars] == ["sa_000000.tar", "sa_000001.tar", "sa_000002.tar"]
    groups = Counter()
    n_images = 0
    for t in tars:
        names = [n for n, _ in read_tar(t)]
        # jpg before json per key, keys contiguous
        assert len(names) == 8
        for i in range(0, len(names), 2):
            assert names[i].endswith(".jpg") and names[i + 1] == names[i][:-4] + ".json"
        with tarfile.open(t) as tar:
            for m in tar.getmembers():
                assert m.mtime == tar.getmembers()[0].mtime and m.uid == 0 and m.gid == 0
        for key, (img, rec) in samples_of(t).items():
            n_images += 1
            assert img.shape == (192, 256, 3)
            im = rec["image"]
            assert im["width"] == 256 and im["height"] == 192 and im["file_name"] == f"{key}.jpg"
            assert isinstance(im["image_id"], int)
            assert key == f"sa_{im['image_id']}"
            union = np.zeros((192, 256), bool)
            anns = rec["annotations"]
            assert len(anns) > 0
            assert len({a["id"] for a in anns}) == len(anns)
            for a in anns:
                assert set(a) == {"id", "segmentation", "bbox", "area", "predicted_iou", "stability_score",
                                  "point_coords", "crop_box"}
                seg = a["segmentation"]
                assert seg["size"] == [192, 256] and isinstance(seg["counts"], str)
                m = decode_rle(seg)
                assert a["area"] == int(m.sum()) > 0
                assert a["bbox"] == rle_to_bbox(seg)
                assert a["crop_box"] == [0, 0, 256, 192]
                x, y = a["point_coords"][0]
                assert m[int(y), int(x)], "point prompt must lie inside its mask"
                assert 0 <= a["predicted_iou"] <= 1 and 0 <= a["stability_score"] <= 1
                groups[size_group((a["bbox"][3], a["bbox"][2]), (192, 256))] += 1
                union |= m
            assert 0.02 < (~union).mean() < 0.98, "some background must stay unlabeled"
    assert n_images == 12
    assert groups[0] > 0 and groups[1] > 0 and groups[2] > 0, groups


def test_synthetic_deterministic(tmp_path, synthetic_sa1b):
    a = write_synthetic_sa1b(tmp_path / "a", num_images=12, seed=0, images_per_tar=4, size=(192, 256))
    assert [sha(p) for p in a] == [sha(synthetic_sa1b / p.name) for p in a]
    b = write_synthetic_sa1b(tmp_path / "b", num_images=4, seed=1, images_per_tar=4, size=(192, 256))
    assert sha(b[0]) != sha(a[0])
    # the image content depends on (seed, index), not on how images are grouped into tars
    c = write_synthetic_sa1b(tmp_path / "c", num_images=4, seed=0, images_per_tar=2, size=(192, 256))
    assert read_tar(c[1]) == read_tar(a[0])[4:8]


def test_synthetic_parts_and_occlusion(synthetic_sa1b):
    """Masks are visible regions: any two are disjoint (occlusion removed the hidden pixels) or nested (a part
    inside its whole, the whole's mask including the part); some nesting exists."""
    nested = 0
    for t in sorted(synthetic_sa1b.glob("*.tar")):
        for key, (img, rec) in samples_of(t).items():
            masks = [decode_rle(a["segmentation"]) for a in rec["annotations"]]
            for i in range(len(masks)):
                for j in range(i + 1, len(masks)):
                    inter = (masks[i] & masks[j]).sum()
                    if inter == 0:
                        continue
                    small, big = sorted((masks[i], masks[j]), key=lambda m: m.sum())
                    assert inter == small.sum(), f"{key}: masks {i} and {j} overlap without nesting"
                    assert (small & ~big).sum() == 0
                    nested += 1
    assert nested > 0


def test_synthetic_cli(tmp_path):
    from data_prep.synthetic import main

    main(["--out", str(tmp_path), "--num-images", "3", "--seed", "5", "--images-per-tar", "2", "--size", "64", "80"])
    assert sorted(p.name for p in tmp_path.glob("*.tar")) == ["sa_000000.tar", "sa_000001.tar"]
    with pytest.raises(ValueError):
        write_synthetic_sa1b(tmp_path / "x", num_images=0)
    # the smallest allowed size still draws every image
    (tiny,) = write_synthetic_sa1b(tmp_path / "tiny", num_images=10, seed=3, images_per_tar=10, size=(32, 32))
    assert len(samples_of(tiny)) == 10


# ----------------------------------------------------------------------------------------------- smoke preset
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


# ----------------------------------------------------------------------------------------------- dense preset
def test_dense_preset_many_overlapping_masks(tmp_path):
    """``dense``: ``dense_scene`` with 50-100 masks (``DENSE_MASKS``), the count drawn from the image's own RNG;
    deterministic tars through the same writer, ``quality`` reaching the jpgs."""
    from data_prep.synthetic import DENSE_MASKS, PRESET_NAMES, dense_scene
    from tests.data_prep.tars import samples_of

    assert PRESET_NAMES == (*PRESETS, "dense")
    img, masks = make_scene(np.random.default_rng([0, 1]), (64, 96), "dense")
    rng = np.random.default_rng([0, 1])
    img2, masks2 = dense_scene(rng, (64, 96), int(rng.integers(DENSE_MASKS[0], DENSE_MASKS[1] + 1)))
    assert np.array_equal(img, img2) and all(np.array_equal(m, m2) for m, m2 in zip(masks, masks2, strict=True))
    assert img.shape == (64, 96, 3) and DENSE_MASKS[0] <= len(masks) <= DENSE_MASKS[1]
    assert all(m.sum() >= 16 for m in masks)
    assert np.sum(masks, axis=0).max() > 1  # masks overlap (parts inside wholes, shapes over shapes)
    a = write_synthetic_sa1b(tmp_path / "a", 3, seed=2, images_per_tar=3, size=(64, 96), preset="dense", quality=90)
    b = write_synthetic_sa1b(tmp_path / "b", 3, seed=2, images_per_tar=3, size=(64, 96), preset="dense", quality=90)
    c = write_synthetic_sa1b(tmp_path / "c", 3, seed=2, images_per_tar=3, size=(64, 96), preset="dense")
    assert a[0].read_bytes() == b[0].read_bytes() != c[0].read_bytes()  # quality 90 vs the default 92
    for _, rec in samples_of(a[0]).values():
        assert DENSE_MASKS[0] <= len(rec["annotations"]) <= DENSE_MASKS[1]
