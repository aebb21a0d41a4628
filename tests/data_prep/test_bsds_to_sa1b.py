"""data_prep.bsds_to_sa1b: BSDS500 label maps -> SA-1B records, near-duplicates merged, then data_prep.sa1b shards."""
from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest

from data_prep.bsds_to_sa1b import bsds_to_sa1b, main, merge_regions, region_ious


def _maps():
    a = np.ones((20, 30), np.uint16)
    a[2:12, 3:13] = 2          # a 10x10 square
    a[15:17, 25:27] = 3        # 4 pixels: below min_area
    b = np.ones((20, 30), np.uint16)
    b[2:12, 3:12] = 2          # the same square less one column: IoU 0.9 with a's
    c = np.ones((20, 30), np.uint16)
    c[2:7, 3:13] = 2           # the square's upper half: a part, IoU 0.5
    return [a, b, c]


def test_region_ious_match_mask_ious():
    maps = _maps()
    ids, areas, iou = region_ious(maps)
    masks = [maps[k] == lab for k, lab in ids]
    for i in range(len(ids)):
        assert areas[i] == masks[i].sum()
        for j in range(len(ids)):
            inter, union = (masks[i] & masks[j]).sum(), (masks[i] | masks[j]).sum()
            want = inter / union if union else 0.0
            if ids[i][0] == ids[j][0] and i != j:
                want = 0.0  # regions of one map are disjoint
            if i == j:
                continue
            assert iou[i, j] == pytest.approx(want)


def test_merge_regions_rules():
    regions, dropped = merge_regions(_maps(), min_area=16, dedup_iou=0.85)
    sizes = [int(m.sum()) for m, _ in regions]
    votes = [v for _, v in regions]
    # kept, largest first: a's background (496), c's background (550)... the three backgrounds differ by the square
    # only; a's and b's squares merge (IoU 0.9), c's half square stays (IoU 0.5 with the square)
    assert dropped["small_region"] == 1
    assert dropped["duplicate"] >= 1
    assert 100 in sizes and 50 in sizes and 90 not in sizes
    assert votes[sizes.index(100)] == 2 and votes[sizes.index(50)] == 1
    assert sizes == sorted(sizes, reverse=True)
    # a stricter rule keeps both versions of the square
    regions2, _ = merge_regions(_maps(), min_area=16, dedup_iou=0.95)
    assert 90 in [int(m.sum()) for m, _ in regions2]


def test_whole_image_region_dropped():
    regions, dropped = merge_regions([np.ones((8, 8), np.uint16)], min_area=1)
    assert regions == [] and dropped["whole_image"] == 1


def test_bsds_to_sa1b_real_and_sharded(shared_data, tmp_path):
    from data_prep.sa1b import prepare_sa1b  # noqa: F401  (the same sharding as COCO and SA-1B)
    from data_prep.sa1b import main as sa1b_main
    from litesam_pl.data.rle import decode_rle

    root = shared_data / "bsds500"
    m = bsds_to_sa1b(root, tmp_path / "raw", splits=["train"], limit=3, images_per_tar=2, progress=False)
    assert m["samples"] == 3 and len(m["shards"]) == 2
    assert m["dropped_annotations"].get("duplicate", 0) > 0
    with tarfile.open(tmp_path / "raw" / m["shards"][0]["url"]) as t:
        js = [json.load(t.extractfile(x)) for x in t.getmembers() if x.name.endswith(".json")]
    rec = js[0]
    h, w = rec["image"]["height"], rec["image"]["width"]
    assert {h, w} == {321, 481}
    for a in rec["annotations"]:
        mask = decode_rle(a["segmentation"])
        assert mask.shape == (h, w) and mask.sum() == a["area"] >= 16
        x, y = a["point_coords"][0]
        assert mask[int(y), int(x)]
        assert 0 < a["predicted_iou"] <= 1
    assert sa1b_main(["--src", str(tmp_path / "raw"), "--out", str(tmp_path / "shards"), "--max-side", "256",
                      "--fraction", "1.0", "--workers", "1", "--no-progress"]) == 0
    assert json.loads((tmp_path / "shards" / "manifest.json").read_text())["samples"] == 3


def test_bsds_to_sa1b_errors(tmp_path, capsys):
    assert main(["--root", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "b").mkdir()
    assert main(["--root", str(tmp_path / "b"), "--out", str(tmp_path / "o")]) == 2
    assert "no BSDS500 split 'train'" in capsys.readouterr().err
