"""benchmarks.resolution_ceiling: the low-res round trip is exact for big blocks and loses thin structures; the
command on a synthetic set and on the shared COCO sample (skips without ../shared)."""
from __future__ import annotations

import json

import numpy as np

from benchmarks.resolution_ceiling import ceiling_ious, main


def test_round_trip():
    m = np.zeros((64, 64), bool)
    m[16:48, 16:48] = True
    assert ceiling_ious(m, 64) > 0.99          # a block of whole 4-px low-res cells survives (edges blur)
    thin = np.zeros((64, 64), bool)
    thin[:, 30] = True
    assert ceiling_ious(thin, 64) < 0.5        # a 1-px line is lost on a grid of 4-px cells
    assert ceiling_ious(thin, 256) == 1.0      # at 4x the input side it is kept


def test_cli_on_shared(shared_data, tmp_path, capsys):
    ann = shared_data / "coco2017_subset/annotations/instances_val2017_subset.json"
    res = main(["--ann", str(ann), "--sizes", "128", "512", "--limit", "3", "--json", str(tmp_path / "r.json")])
    a, b = res["sizes"]["128"], res["sizes"]["512"]
    assert a["instances"] == b["instances"] > 0
    assert a["miou_1box"] < b["miou_1box"] <= 100
    assert "ceiling" in capsys.readouterr().out


def test_cli_on_a_tiny_set(tiny_coco, tmp_path, capsys):
    ann, _ = tiny_coco
    out = tmp_path / "r" / "r.json"
    res = main(["--ann", str(ann), "--sizes", "32", "640", "--json", str(out)])
    assert json.loads(out.read_text()) == res and res["images"] == 5
    low, high = res["sizes"]["32"], res["sizes"]["640"]
    assert low["instances"] == high["instances"] == 13  # every non-crowd instance of the 5 images
    assert low["miou_1box"] < high["miou_1box"] <= 100 and high["miou_1box"] > 95
    assert low["miou_1box_medium"] is None  # no instance in COCO's medium range: no figure, not 0
    assert low["miou_1box_small"] < low["miou_1box_large"]  # a coarse grid loses small objects first
    printed = capsys.readouterr().out
    assert "ceiling" in printed and "     -" in printed
