"""benchmarks.box_diagnostics (``python -m benchmarks.box_diagnostics``) with a tiny random model: on a synthetic set,
and on two shared COCO val images (skips without ../shared)."""
from __future__ import annotations

import json

import pytest


def test_box_diagnostics_reports_every_group(shared_data, tmp_path):
    from benchmarks import box_diagnostics

    coco = shared_data / "coco2017_subset"
    if not (coco / "val2017").is_dir():
        pytest.skip(f"no COCO sample under {coco}")
    out = tmp_path / "d.json"
    res = box_diagnostics.main(["--ann", str(coco / "annotations" / "instances_val2017_subset.json"),
                                "--images", str(coco / "val2017"), "--limit", "2", "--img-size", "64",
                                "--json", str(out)])
    assert res["img_size"] == 64 and json.loads(out.read_text()) == res
    g = res["groups"]["all"]
    assert g["instances"] > 0
    for k in ("miou_t+0", "clipped_miou", "box_fill_miou", "inside_box_pct"):
        assert 0.0 <= g[k] <= 100.0, k
    assert g["box_fill_miou"] > 0  # the box overlaps its own object
    assert sum(v["instances"] for k, v in res["groups"].items() if k != "all") == g["instances"]


def test_box_diagnostics_on_a_tiny_set(tiny_coco, tmp_path, capsys):
    """The command on a synthetic set (no ../shared): every non-crowd instance, its size groups, the JSON."""
    from benchmarks import box_diagnostics

    ann, images = tiny_coco
    out = tmp_path / "d" / "d.json"
    res = box_diagnostics.main(["--ann", str(ann), "--images", str(images), "--limit", "2", "--img-size", "64",
                                "--json", str(out)])
    assert json.loads(out.read_text()) == res and res["images"] == 2 and res["ckpt"] is None
    groups = res["groups"]
    assert groups["all"]["instances"] == 5  # image 11: 3 instances; image 18: 2 (its crowd region is left out)
    assert sum(g["instances"] for k, g in groups.items() if k != "all") == 5
    for g in groups.values():
        assert g["box_fill_miou"] == 100.0  # the instances are rectangles: their box is their mask
        for k in ("miou_t-3", "miou_t+0", "miou_t+1", "clipped_miou", "inside_box_pct", "pred_iou_pct"):
            assert 0.0 <= g[k] <= 100.0, k
    assert capsys.readouterr().out.startswith("all instances=5")
