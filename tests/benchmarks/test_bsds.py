"""benchmarks.bsds with several edge sources in one run (--baselines): one table, JSON keyed per source, all curves."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from litesam_pl.data.bsds import seg_to_boundaries
from litesam_pl.metrics.bsds import thin_boundaries


@pytest.fixture(scope="module")
def one_bsds(tmp_path_factory) -> Path:
    """A 1-image BSDS500 layout (images/test/im0.jpg, groundTruth/test/im0.mat, one annotator): a square."""
    import cv2
    from scipy.io import savemat

    root = tmp_path_factory.mktemp("one_bsds")
    (root / "images" / "test").mkdir(parents=True)
    (root / "groundTruth" / "test").mkdir(parents=True)
    seg = np.ones((120, 160), np.uint16)
    seg[30:90, 40:120] = 2
    img = np.full((120, 160, 3), 40, np.uint8)
    img[seg == 2] = 210
    cv2.imwrite(str(root / "images" / "test" / "im0.jpg"), img)
    cell = np.empty((1, 1), dtype=object)
    cell[0, 0] = {"Segmentation": seg, "Boundaries": thin_boundaries(seg_to_boundaries(seg)).astype(np.uint8)}
    savemat(str(root / "groundTruth" / "test" / "im0.mat"), {"groundTruth": cell})
    return root


def test_model_beside_sobel_and_canny_in_one_run(one_bsds, tmp_path, capsys, monkeypatch):
    import benchmarks.bsds as bsds

    plotted = {}
    monkeypatch.setattr(bsds, "plot_pr_curves", lambda curves, path: plotted.update(curves))
    out = bsds.main(["--data", str(one_bsds), "--model", "litesam", "--img-size", "128", "--prompts", "grid",
                     "--points-per-side", "2", "--baselines", "sobel", "canny", "--thresholds", "3",
                     "--no-progress", "--json", str(tmp_path / "all.json"), "--plot", str(tmp_path / "pr.png"),
                     "--eval-dir", str(tmp_path / "ev")])
    saved = json.loads((tmp_path / "all.json").read_text())
    assert list(saved["sources"]) == ["model", "sobel", "canny"] == list(out["sources"])
    assert saved["methods"] == {"model": "litesam (random weights)", "sobel": "sobel", "canny": "canny"}
    assert saved["images"] == 1 and saved["thresholds"] == 3
    for key, r in saved["sources"].items():
        assert {"ods", "ois", "ap", "r50", "curve", "per_image", "method", "config"} <= set(r), key
        assert len(r["curve"]["thresholds"]) == 3 and r["images"] == 1
    assert saved["sources"]["canny"]["ods"] > 0.9  # a clean square
    assert saved["sources"]["sobel"]["config"]["source"] == {"detector": "sobel"}
    assert set(plotted) == {"litesam (random weights)", "sobel", "canny"}  # every curve on the one plot
    table = capsys.readouterr().out
    assert table.count("(ours, measured)") == 3 and table.count("Table 7") == 1
    # each source caches its own counts
    assert sorted(p.name for p in (tmp_path / "ev").iterdir()) == ["canny", "model", "sobel"]
    assert (tmp_path / "ev" / "canny" / "im0_ev1.txt").is_file()

    # a detector beside another: the numbers of each alone (the matcher is randomised: ~1e-3), and --plot-with
    # reads a multi-source JSON
    two = bsds.main(["--data", str(one_bsds), "--detector", "canny", "--baselines", "sobel", "--thresholds", "3",
                     "--no-progress", "--plot", str(tmp_path / "pr2.png"), "--plot-with", str(tmp_path / "all.json"),
                     "--name", "canny again"])
    assert list(two["sources"]) == ["canny", "sobel"] and two["methods"]["canny"] == "canny again"
    assert two["sources"]["sobel"]["ods"] == pytest.approx(saved["sources"]["sobel"]["ods"], abs=0.01)
    assert set(plotted) == {"litesam (random weights)", "sobel", "canny", "canny again"}
    alone = bsds.main(["--data", str(one_bsds), "--baselines", "canny", "--thresholds", "3", "--no-progress"])
    assert "sources" not in alone and alone["method"] == "canny"  # one source: the flat result, as before
    assert alone["ods"] == pytest.approx(saved["sources"]["canny"]["ods"], abs=0.01)


def test_gt_box_prompts_beside_box_fill(one_bsds, tmp_path, monkeypatch, capsys):
    """The oracle diagnostic: the model prompted with the annotator's region boxes, beside those boxes filled."""
    import benchmarks.bsds as bsds

    published = []
    monkeypatch.setattr(bsds, "publish", lambda name, out, images: published.append(name))
    out = bsds.main(["--data", str(one_bsds), "--model", "litesam", "--img-size", "128", "--prompts", "gt-boxes",
                     "--baselines", "box-fill", "canny", "--thresholds", "3", "--no-progress",
                     "--json", str(tmp_path / "o.json")])
    assert out["methods"] == {"model": "litesam (random weights) (GT-box prompts, annotator 0)",
                              "box-fill": "box-fill (GT boxes, annotator 0)", "canny": "canny"}
    model, fill = out["sources"]["model"], out["sources"]["box-fill"]
    seg = model["config"]["segevery"]
    assert seg["prompts"] == "gt-boxes" and seg["annotator"] == 0 and seg["img_size"] == 128
    assert seg["points_per_side"] is None and seg["nms"] is None and seg["box_nms_thresh"] is None  # not used
    assert fill["config"]["annotator"] == 0
    assert out["reads_ground_truth"] and model["reads_ground_truth"] and fill["reads_ground_truth"]
    assert not out["sources"]["canny"]["reads_ground_truth"]
    # never dressed as Table 7: its own title, no paper rows, and logged under its own name
    table = capsys.readouterr().out
    assert "Oracle diagnostic (not Table 7)" in table and "(paper)" not in table and "Table 7: zero-shot" not in table
    assert published == ["bsds-oracle"]
    assert 0 <= model["ods"] <= 1
    # the fixture's regions are the square and the frame around it: box fill draws the square's outline (just
    # outside it, within the matching distance) and the image border (suppressed by edge NMS)
    assert fill["ods"] > 0.9

    # the prompts reach the model: the boxes it is given are the annotator's regions
    from litesam_pl.evaluation import edges

    seen, real = [], edges.box_probability_maps

    def spy(model, image, boxes, **kw):
        seen.append(np.asarray(boxes).tolist())
        return real(model, image, boxes, **kw)

    monkeypatch.setattr(edges, "box_probability_maps", spy)
    bsds.main(["--data", str(one_bsds), "--model", "litesam", "--img-size", "128", "--prompts", "gt-boxes",
               "--thresholds", "3", "--no-progress"])
    assert seen == [[[0, 0, 160, 120], [40, 30, 120, 90]]]

    # --name keeps the ground-truth label; an annotator the images lack stops before any work, in one line
    named = bsds.main(["--data", str(one_bsds), "--detector", "box-fill", "--name", "boxes", "--thresholds", "3",
                       "--no-progress"])
    assert named["method"] == "boxes (GT boxes, annotator 0)"
    with pytest.raises(SystemExit, match="--annotator 1: image im0 has only 1 annotators"):
        bsds.main(["--data", str(one_bsds), "--detector", "box-fill", "--annotator", "1", "--thresholds", "3",
                   "--no-progress"])


def test_baselines_argument_errors(one_bsds, capsys):
    from benchmarks.bsds import main

    for argv in (["--detector", "canny", "--baselines", "canny"], ["--baselines", "sobel", "sobel"],
                 ["--baselines", "sobel", "canny", "--name", "x"], ["--baselines", "hed"],
                 ["--detector", "sobel", "--pred", "x", "--baselines", "canny"],
                 ["--detector", "canny", "--prompts", "gt-boxes"], ["--detector", "box-fill", "--annotator", "-1"],
                 ["--detector", "canny", "--annotator", "1"]):
        with pytest.raises(SystemExit):
            main(["--data", str(one_bsds), "--thresholds", "3", *argv])
    err = capsys.readouterr().err
    assert "given twice" in err and "--name" in err and "exactly one edge source" in err
    assert "--prompts gt-boxes needs a model" in err and "--annotator must be >= 0" in err
    assert "--annotator only applies to --prompts gt-boxes and the box-fill detector" in err


def test_checkpoint_runs_at_another_input_side(one_bsds, tmp_path, monkeypatch):
    """--img-size with --ckpt: the checkpoint's weights rebuilt at that side (as benchmarks.coco), not refused."""
    import torch

    import benchmarks.bsds as bsds
    import litesam_pl
    from litesam_pl.models.checkpoint import EXPORT_FORMAT
    from litesam_pl.models.registry import model_config

    model = litesam_pl.create_model("litesam", img_size=128)
    ckpt = tmp_path / "tiny.pt"
    torch.save({"format": EXPORT_FORMAT, "model": model_config(model), "state_dict": model.state_dict()}, ckpt)
    sides = []
    real = bsds.load_edge_model

    def spy(args):
        model = real(args)
        sides.append(model.image_encoder.img_size)
        return model

    monkeypatch.setattr(bsds, "load_edge_model", spy)
    for extra in ([], ["--img-size", "192"]):
        out = bsds.main(["--data", str(one_bsds), "--ckpt", str(ckpt), "--prompts", "gt-boxes", "--thresholds", "3",
                         "--no-progress", *extra])
        assert out["config"]["segevery"]["img_size"] == (int(extra[1]) if extra else None)
        assert out["method"] == ("tiny @192px" if extra else "tiny") + " (GT-box prompts, annotator 0)"
    assert sides == [128, 192]
