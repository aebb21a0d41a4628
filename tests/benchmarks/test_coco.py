"""benchmarks.coco / benchmarks.lvis end to end (random tiny model): on a synthetic set, and on the shared samples
(skip without ../shared); the prompting they use (litesam_pl.evaluation.prompting) is tested in
tests/inference/test_prompting.py."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.helpers import tiny_sam

COCO_ANN = "coco2017_subset/annotations/instances_val2017_subset.json"
LVIS_ANN = "lvis_v0.5_val100/annotations/lvis_v0.5_val100_subset.json"


# ----------------------------------------------------------------------------------------------- end to end


PERCENT_KEYS = ("miou_1box", "miou_1point", "ap", "ap_s", "ap_m", "ap_l", "ar1000",
                "miou_1box_small", "miou_1box_medium", "miou_1box_large",
                "miou_1point_small", "miou_1point_medium", "miou_1point_large")


def test_benchmark_coco_end_to_end(shared_data, tmp_path, capsys):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from benchmarks.coco import main

    out, saved = tmp_path / "coco.json", tmp_path / "results.json"
    main(["--ann", str(shared_data / COCO_ANN), "--images", str(shared_data / "coco2017_subset/val2017"),
          "--limit", "2", "--img-size", "256", "--device", "cpu", "--json", str(out), "--save-results", str(saved),
          "--segevery", "grid", "--points-per-side", "4", "--no-progress", "--no-baselines"])  # baselines: own tests
    r = json.loads(out.read_text())
    for k in PERCENT_KEYS + ("images", "instances", "mask_select", "missing_images", "random_weights"):
        assert k in r, k
    assert r["images"] == 2 and r["instances"] > 0 and r["missing_images"] == 0
    assert r["random_weights"] is True and "RANDOM" in r["warning"]
    assert r["mask_select"].startswith("prompt_form")
    assert (r["mask_select_box"], r["mask_select_point"]) == ("single", "max_pred_iou")
    for k in ("miou_1box", "miou_1point", "ap", "ar1000"):
        assert 0.0 <= r[k] <= 100.0, k
    assert r["instances_small"] + r["instances_medium"] + r["instances_large"] >= r["instances"]
    assert r["proposals"] > 0
    printed = capsys.readouterr()
    assert "Lite-SAM (paper, r640)" in printed.out and "RANDOM" in printed.err

    # the saved GT-box-prompt results re-score to the same AP with plain pycocotools
    res = json.loads(saved.read_text())
    assert len(res) == r["instances"] and all("segmentation" in d and "score" in d for d in res)
    gt = COCO(str(shared_data / COCO_ANN))
    e = COCOeval(gt, gt.loadRes(str(saved)), "segm")
    e.params.imgIds = sorted({d["image_id"] for d in res})
    e.evaluate(), e.accumulate(), e.summarize()
    assert r["ap"] == pytest.approx(100 * max(e.stats[0], 0.0), abs=1e-9)
    assert r["ap50"] == pytest.approx(100 * max(e.stats[1], 0.0), abs=1e-9)


def test_coco_and_lvis_commands_on_a_tiny_set(tiny_coco, tiny_lvis, tmp_path, capsys):
    """``python -m benchmarks.coco`` / ``lvis`` in process on a synthetic set (no ../shared), random 64 px model:
    COCO with AutoPPN proposals (AR), box fill and the saved results; LVIS with its AP_r/c/f."""
    from benchmarks.coco import main as coco
    from benchmarks.lvis import main as lvis
    from benchmarks.toolkit.paper import TABLE5_6

    (ann, images), out, saved = tiny_coco, tmp_path / "c" / "coco.json", tmp_path / "c" / "res.json"
    r = coco(["--ann", str(ann), "--images", str(images), "--img-size", "64", "--device", "cpu", "--json", str(out),
              "--ppn-top-n", "8", "--baselines", "box_fill", "--save-results", str(saved), "--no-progress"])
    assert json.loads(out.read_text()) == json.loads(json.dumps(r))
    assert (r["images"], r["instances"], r["skipped_crowd"], r["missing_images"]) == (5, 13, 1, 0)
    for k in PERCENT_KEYS:
        assert r[k] is None or 0.0 <= r[k] <= 100.0, k
    assert r["ar1000"] is not None and 0 < r["proposals"] <= 5 * 8 and r["segevery"].startswith("autoppn")
    assert r["baselines"]["box_fill"]["miou_1box"] == 100.0  # rectangles: the box is the mask
    assert len(json.loads(saved.read_text())) == 13
    printed = capsys.readouterr().out
    assert "Lite-SAM (paper, r640)" in printed and f"{TABLE5_6['coco']['miou_1box']:.1f}" in printed

    (ann, images), out = tiny_lvis, tmp_path / "l" / "lvis.json"
    r = lvis(["--ann", str(ann), "--images", str(images), "--img-size", "64", "--device", "cpu", "--json", str(out),
              "--skip-ar", "--no-baselines", "--no-progress"])
    assert (r["images"], r["instances"], r["skipped_crowd"], r["dataset"]) == (5, 13, 0, "lvis")
    for k in ("ap", "ap_r", "ap_c", "ap_f", "miou_1box", "miou_1point"):
        assert k in r and (r[k] is None or 0.0 <= r[k] <= 100.0), k
    assert r["ar1000"] is None and r["baselines"] is None and json.loads(out.read_text())["dataset"] == "lvis"


def test_benchmark_lvis_with_checkpoint_counts_missing_images(shared_data, tmp_path, capsys):
    import litesam_pl
    from benchmarks.lvis import main
    from litesam_pl.models.checkpoint import EXPORT_FORMAT
    from litesam_pl.models.registry import model_config

    model = litesam_pl.create_model("litesam", img_size=256)
    ckpt = tmp_path / "tiny.pt"
    torch.save({"format": EXPORT_FORMAT, "model": model_config(model), "state_dict": model.state_dict()}, ckpt)
    out = tmp_path / "lvis.json"
    main(["--ann", str(shared_data / LVIS_ANN), "--images", str(shared_data / "lvis_v0.5_val100/val2017"),
          "--limit", "1", "--ckpt", str(ckpt), "--device", "cpu", "--json", str(out), "--skip-ar", "--no-progress",
          "--no-baselines"])
    r = json.loads(out.read_text())
    assert r["random_weights"] is False and r["ckpt"] == str(ckpt) and r["img_size"] == 256
    assert r["images"] == 1 and r["missing_images"] == 64 and r["images_in_annotations"] == 66
    for k in ("miou_1box", "miou_1point", "ap", "ap_r", "ap_c", "ap_f", "ar1000", "instances", "mask_select"):
        assert k in r, k
    assert r["ar1000"] is None and r["instances"] > 0
    assert 0.0 <= r["miou_1box"] <= 100.0
    assert "64 of 66 images" in capsys.readouterr().err


def test_benchmark_cli_errors_are_clean(tmp_path, capsys):
    from benchmarks.coco import main

    with pytest.raises(SystemExit) as e:
        main(["--ann", str(tmp_path / "none.json"), "--images", str(tmp_path), "--json", str(tmp_path / "o.json")])
    assert e.value.code == 2 and "annotation file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit):
        main(["--ann", str(bad), "--images", str(tmp_path), "--json", str(tmp_path / "o.json")])
    assert "not valid JSON" in capsys.readouterr().err


def test_proposals_path_scores_oracle_proposals_as_full_recall(shared_data):
    """GT masks fed through the SegEvery record path (binary masks and RLEs) give AR@1000 = 100."""
    from benchmarks._eval_common import evaluate_instances, score
    from litesam_pl.data.coco import CocoInstances, ann_to_mask
    from litesam_pl.metrics.coco import results_from_masks

    data = CocoInstances(shared_data / COCO_ANN, shared_data / "coco2017_subset/val2017", limit=2)
    calls = []

    def oracle(image: np.ndarray) -> list[dict]:
        image_id = data.image_ids[len(calls)]
        calls.append(image_id)
        recs = []
        for i, a in enumerate(data.annotations(image_id)):
            m = ann_to_mask(a, image.shape[0], image.shape[1])
            seg = m if i % 2 else results_from_masks(image_id, m[None], [0], [1])[0]["segmentation"]
            recs.append({"segmentation": seg, "predicted_iou": 0.5, "stability_score": 0.9 - 0.01 * i})
        return recs

    run = evaluate_instances(tiny_sam(), data, proposer=oracle, progress=False)
    run["proposals_evaluated"] = True
    r = score("coco", shared_data / COCO_ANN, run)
    assert calls == data.image_ids and len(run["proposals"]) == sum(len(data.annotations(i)) for i in calls)
    assert r["ar1000"] == pytest.approx(100.0) and r["ar100"] == pytest.approx(100.0)
    assert run["proposals"][0]["score"] == pytest.approx(0.7)  # mean(predicted IoU, stability), best first
    assert 0.0 <= r["miou_1box"] <= 100.0 and len(run["box_ious"]) == len(run["areas"]) == len(run["point_ious"])


class _OneImage:
    """A ``CocoInstances`` stand-in: one 40 x 60 image with two rectangle instances (no files needed)."""

    format = "coco"
    image_ids = [7]

    def load(self, image_id):
        from types import SimpleNamespace

        anns = [{"id": i, "image_id": 7, "category_id": 1, "iscrowd": 0, "bbox": [x, y, bw, bh], "area": bw * bh,
                 "segmentation": [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]}
                for i, (x, y, bw, bh) in enumerate([(5, 4, 20, 16), (30, 10, 25, 25)])]
        image = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
        return SimpleNamespace(height=40, width=60, image=image, annotations=anns)


def _decoder_calls(model, mask_select=None):
    """(prompt form, multimask_output) of every mask-decoder call of the benchmark's 1-box / 1-point path."""
    from benchmarks._eval_common import evaluate_instances

    forms, calls = [], []
    hooks = [
        model.prompt_encoder.register_forward_pre_hook(
            lambda m, a, kw: forms.append("box" if kw.get("boxes") is not None else "point"), with_kwargs=True),
        model.mask_decoder.register_forward_pre_hook(
            lambda m, a, kw: calls.append((forms[-1], kw["multimask_output"])), with_kwargs=True),
    ]
    try:
        kw = {} if mask_select is None else {"mask_select": mask_select}
        run = evaluate_instances(model, _OneImage(), progress=False, **kw)
    finally:
        for h in hooks:
            h.remove()
    assert len(run["box_ious"]) == len(run["point_ious"]) == 2
    return calls


def test_benchmark_reads_each_prompt_form_from_the_output_training_supervises():
    """By default box prompts use ``multimask_output_for("box")`` (the single output training supervises) and
    point prompts ``multimask_output_for("point")``: the benchmark cannot drift from ``prompt_forms`` again."""
    from benchmarks._eval_common import MASK_SELECT, add_common_args, mask_select_for
    from litesam_pl.models.prompt_forms import multimask_output_for

    calls = _decoder_calls(tiny_sam())
    assert sorted(set(calls)) == [("box", multimask_output_for("box")), ("point", multimask_output_for("point"))]
    # the CLI default is that rule; the other selections stay available as explicit options
    import argparse

    p = argparse.ArgumentParser()
    add_common_args(p, "coco")
    assert p.get_default("mask_select") == "prompt_form" and set(MASK_SELECT) == {"prompt_form", "max_pred_iou",
                                                                                 "single"}
    assert set(_decoder_calls(tiny_sam(), "max_pred_iou")) == {("box", True), ("point", True)}
    assert set(_decoder_calls(tiny_sam(), "single")) == {("box", False), ("point", False)}
    with pytest.raises(ValueError, match="mask_select"):
        mask_select_for("best", "box")


def test_benchmark_rules_are_prompt_predictor_rules():
    from benchmarks._eval_common import MASK_SELECT
    from litesam_pl.evaluation.prompting import MASK_SELECT_RULES

    assert set(MASK_SELECT) == set(MASK_SELECT_RULES)
