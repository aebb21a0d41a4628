"""benchmarks.box_diagnostics on two shared COCO val images with a tiny random model (skips without ../shared)."""
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
