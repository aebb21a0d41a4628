"""examples/onnx_segment_everything.py (numpy + OpenCV + onnxruntime only) against litesam_pl's segment_everything,
and ``litesam export --onnx``'s one-line install hint when onnx / onnxruntime are missing."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

import litesam_pl
from tests.helpers import REPO

EXAMPLE = REPO / "examples" / "onnx_segment_everything.py"
TOP_N = 64


def _load_example():
    spec = importlib.util.spec_from_file_location("onnx_segment_everything", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Noise over a horizontal ramp: RGB uint8."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 180, w)[None, :, None]
    return np.clip(rng.integers(0, 256, (h, w, 3)) * 0.3 + ramp, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny random-weights LiteSAM (img_size 64) and its ONNX export (no PyTorch check:
    tests/inference/test_export.py)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("cv2")
    from litesam_pl.inference.export import export_onnx

    torch.manual_seed(0)
    model = litesam_pl.create_model("litesam", img_size=64).eval()
    out = tmp_path_factory.mktemp("onnx")
    export_onnx(model, out, top_n=TOP_N, num_prompts=2, check=False)
    return model, out, _load_example()


def test_example_imports_neither_torch_nor_litesam():
    """A deployer copies the file: its imports are numpy, OpenCV, onnxruntime and the standard library."""
    import ast

    tree = ast.parse(EXAMPLE.read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= {"__future__", "argparse", "json", "math", "sys", "pathlib", "typing", "cv2", "numpy",
                     "onnxruntime"}, names


def test_sam_normalisation_matches_the_model(exported):
    model, _, ex = exported
    np.testing.assert_allclose(ex.PIXEL_MEAN, model.pixel_mean.flatten().numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(ex.PIXEL_STD, model.pixel_std.flatten().numpy(), rtol=0, atol=1e-6)
    assert ex.MASK_THRESHOLD == float(model.mask_threshold)


@pytest.mark.parametrize("hw", [(48, 80), (30, 40), (100, 37)])  # downscaled, upscaled, portrait
def test_resize_matches_torch(exported, hw):
    """The example's numpy resize is PyTorch's antialiased bilinear one (``preprocess_images``)."""
    _, _, ex = exported
    from litesam_pl.inference.sam_compat import preprocess_images

    model = exported[0]
    img = _image(*hw)
    pixels, (nh, nw) = ex.preprocess(img, 64)
    prep = preprocess_images(model, [torch.from_numpy(img).permute(2, 0, 1)], torch.device("cpu"))
    assert (nh, nw) == prep.input_sizes[0]
    np.testing.assert_allclose(pixels, prep.pixels.numpy(), rtol=0, atol=1e-4)


def test_main_writes_overlay_and_json(exported, tmp_path, capsys):
    import cv2

    _, onnx_dir, ex = exported
    img = _image(48, 80)
    path = tmp_path / "img.png"
    assert cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    out = tmp_path / "res" / "overlay.png"
    # random weights give low predicted IoU and stability: the filters off
    rc = ex.main([str(path), "--onnx", str(onnx_dir), "--out", str(out), "--pred-iou-thresh", "0",
                  "--stability-score-thresh", "0", "--nms", "none"])
    assert rc == 0
    assert "masks from" in capsys.readouterr().out
    over = cv2.imread(str(out))
    assert over is not None and over.shape == (48, 80, 3)
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["size"] == [48, 80] and data["prompts"] > 0
    recs = data["masks"]
    assert len(recs) > 0
    from pycocotools import mask as mask_utils

    for r in recs:
        seg = r["segmentation"]
        assert seg["size"] == [48, 80] and sum(seg["counts"]) == 48 * 80
        m = mask_utils.decode(mask_utils.frPyObjects(seg, 48, 80)).astype(bool)
        assert m.shape == (48, 80) and int(m.sum()) == r["area"] > 0
        x, y, w, h = r["bbox"]
        ys, xs = np.nonzero(m)
        assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max(), ys.max())
        assert 0 <= r["point_coords"][0][0] < 80 and 0 <= r["point_coords"][0][1] < 48
    # the default filters: a valid (possibly empty) result, and a hint when nothing passed
    assert ex.main([str(path), "--onnx", str(onnx_dir), "--out", str(tmp_path / "b.png")]) == 0
    assert ex.main([str(tmp_path / "missing.png"), "--onnx", str(onnx_dir)]) == 2
    assert ex.main([str(path), "--onnx", str(tmp_path / "nothing")]) == 2
    assert "litesam export" in capsys.readouterr().err


@pytest.mark.parametrize("hw,form,nms,nms_thresh", [
    ((48, 80), "point+box", "none", 0.7),  # SegEvery's prompt form, every mask
    ((30, 40), "point+box", "none", 0.7),  # upscaled
    ((100, 37), "point+box", "none", 0.7),  # portrait
    ((48, 80), "point+box", "mask", 0.97),  # mask NMS (SegEvery's default; 0.97 keeps several random-weight masks)
    ((100, 37), "point+box", "box", 0.97),  # box NMS (SAM's AMG)
    ((48, 80), "point", "none", 0.7),  # the multimask tokens 1..3
    ((30, 40), "box", "mask", 0.7),
])
def test_same_masks_as_segment_everything(exported, hw, form, nms, nms_thresh):
    """Same image, same settings (filters off): the example's prompts, mask count, masks, predicted IoU and
    points equal those of ``segment_everything`` (mask IoU 1 here; > 0.99 allowed for logits at 0)."""
    model, onnx_dir, ex = exported
    img = _image(*hw, seed=hw[0])
    enc, dec = ex.load_sessions(onnx_dir)
    kw = dict(pred_iou_thresh=0, stability_score_thresh=0, nms=nms)
    got = ex.segment_everything_onnx(img, enc, dec, prompt_form=form, nms_thresh=nms_thresh, **kw)
    res = litesam_pl.SegEvery(model, prompts="autoppn", top_n=TOP_N, prompt_type=form, box_nms_thresh=nms_thresh,
                              output_mode="tensors", **kw).run(img)
    ref = res.masks
    assert got["prompts"] == res.stats["prompts"][0] > 0
    k = len(ref["masks"])
    assert len(got["masks"]) == k > 0
    assert got["masks"].shape == (k, *hw)
    # pair each mask with its PyTorch twin: masks whose predicted IoU differs by ~1e-7 may swap places in the order
    rm = ref["masks"].numpy()
    inter = (got["masks"].reshape(k, 1, -1) & rm.reshape(1, k, -1)).sum(-1)
    union = (got["masks"].reshape(k, 1, -1) | rm.reshape(1, k, -1)).sum(-1)
    miou = inter / np.maximum(union, 1)
    fields = [("iou_preds", 1e-4), ("stability_scores", 1e-3), ("ppn_scores", 1e-4)]
    cost = (1 - miou) + np.abs(got["points"][:, None] - ref["points"].numpy()[None]).sum(-1) / 100
    for name, _ in fields:
        cost = cost + np.abs(got[name][:, None] - ref[name].numpy()[None])
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    assert miou[rows, cols].min() > 0.99
    for name, tol in fields:
        np.testing.assert_allclose(got[name][rows], ref[name].numpy()[cols], rtol=0, atol=tol, err_msg=name)
    np.testing.assert_allclose(got["points"][rows], ref["points"].numpy()[cols], rtol=0, atol=1e-3)
    moved = rows != cols  # only near-ties in the ranking change places
    assert np.abs(got["iou_preds"][rows[moved]] - got["iou_preds"][cols[moved]]).max(initial=0) < 1e-4
    assert moved.mean() < 0.25


def test_default_filters_agree(exported):
    """With the default filters (random weights: usually nothing passes) both keep the same number of masks."""
    model, onnx_dir, ex = exported
    img = _image(48, 80)
    got = ex.segment_everything_onnx(img, *ex.load_sessions(onnx_dir))
    ref = litesam_pl.segment_everything(model, img, top_n=TOP_N, output_mode="tensors")
    assert len(got["masks"]) == len(ref["masks"])


def test_export_onnx_missing_packages_one_line(monkeypatch, tmp_path, capsys):
    """Without onnx / onnxruntime, ``litesam export --onnx`` says in one line what to install (before loading)."""
    import importlib.util as iu

    from litesam_pl.inference import export

    real = iu.find_spec
    monkeypatch.setattr(iu, "find_spec", lambda name, *a, **k: None if name in ("onnx", "onnxruntime") else real(name, *a, **k))
    rc = export.main(["--ckpt", str(tmp_path / "not_loaded.pt"), "--onnx", str(tmp_path / "onnx")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert 'pip install "litesam-pl[onnx]"' in err and "onnx and onnxruntime" in err
    with pytest.raises(ImportError, match="litesam-pl\\[onnx\\]"):
        export.export_onnx(torch.nn.Identity(), tmp_path / "x")
    # onnx there, onnxruntime missing: only the check needs it
    monkeypatch.setattr(iu, "find_spec", lambda name, *a, **k: None if name == "onnxruntime" else real(name, *a, **k))
    assert export.main(["--ckpt", str(tmp_path / "not_loaded.pt"), "--onnx", str(tmp_path / "onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "onnxruntime" in err and "--no-check" in err and "litesam-pl[onnx]" in err
    assert export._missing_onnx_packages(check=False) == []
