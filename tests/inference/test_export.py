"""Weights-only export and ONNX export (litesam_pl.inference.export)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import litesam_pl
from litesam_pl.inference.export import EXPORT_FORMAT, export_onnx, export_weights, main






def test_weights_round_trip(tiny_model, tmp_path):
    path = export_weights(tiny_model, tmp_path / "sub" / "m.pt")
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]  # written atomically (checkpoint.save_atomic)
    obj = torch.load(path, weights_only=True)
    assert obj["format"] == EXPORT_FORMAT == "litesam-pl/weights-v1"
    assert obj["model"]["name"] == "litesam" and obj["model"]["kwargs"]["img_size"] == 64
    ref = tiny_model.state_dict()
    assert set(obj["state_dict"]) == set(ref)
    assert all(torch.equal(obj["state_dict"][k], ref[k]) for k in ref)
    back = litesam_pl.load_model(path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(back.image_encoder(x), tiny_model.image_encoder(x))
    img = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    kw = dict(prompts="autoppn", top_n=8, score_threshold=0.0, output_mode="tensors", pred_iou_thresh=0,
              stability_score_thresh=0)
    a, b = litesam_pl.segment_everything(back, img, **kw), litesam_pl.segment_everything(tiny_model, img, **kw)
    assert torch.equal(a["masks"], b["masks"])


def test_onnx_matches_pytorch(tiny_model, tmp_path):
    pytest.importorskip("onnxruntime")
    report = export_onnx(tiny_model, tmp_path / "onnx", top_n=16, num_prompts=3)
    assert (tmp_path / "onnx" / "encoder.onnx").is_file() and (tmp_path / "onnx" / "decoder.onnx").is_file()
    assert json.loads((tmp_path / "onnx" / "report.json").read_text())["max_abs_diff"] == report["max_abs_diff"]
    diffs = report["max_abs_diff"]
    assert {"encoder/image_embeddings", "encoder/heatmap_logits", "decoder/low_res_masks",
            "decoder/iou_predictions"} <= set(diffs)
    assert max(diffs.values()) < 1e-4, diffs


def test_cli(tiny_model, tmp_path, capsys):
    src = export_weights(tiny_model, tmp_path / "a.pt")
    assert main(["--ckpt", str(src), "--out", str(tmp_path / "b.pt")]) == 0
    back = torch.load(tmp_path / "b.pt", weights_only=True)
    assert back["format"] == EXPORT_FORMAT
    assert main(["--ckpt", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "c.pt")]) == 2
    assert "no model file" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    assert main(["--ckpt", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "d.pt")]) == 2
    with pytest.raises(SystemExit):
        main(["--ckpt", str(src)])  # neither --out nor --onnx


def test_onnx_encoder_respects_input_size(tiny_model, tmp_path):
    """A 32x200 image (resized to 10x64, then padded to 64x64): the exported encoder's ``input_size`` input keeps
    every valid prompt inside the image, as ``AutoPPN.decode(input_sizes=...)`` does in PyTorch."""
    ort = pytest.importorskip("onnxruntime")
    from litesam_pl.inference.sam_compat import preprocess_images

    export_onnx(tiny_model, tmp_path / "onnx", top_n=256, num_prompts=2, check=False)
    img = torch.from_numpy(np.random.default_rng(1).integers(0, 255, (32, 200, 3), dtype=np.uint8))
    prep = preprocess_images(tiny_model, [img.permute(2, 0, 1)], torch.device("cpu"))
    h, w = prep.input_sizes[0]
    assert (h, w) == (10, 64)
    sess = ort.InferenceSession(str(tmp_path / "onnx" / "encoder.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    assert [i.name for i in sess.get_inputs()] == ["image", "input_size"] and names[-1] == "valid"

    def run(size):
        out = dict(zip(names, sess.run(None, {"image": prep.pixels.numpy(), "input_size": np.array(size, np.int64)})))
        return out["points"][0][out["valid"][0]], out["boxes"][0][out["valid"][0]]

    pts, boxes = run([h, w])
    assert len(pts) > 0
    assert (pts[:, 0] >= 0).all() and (pts[:, 0] < w).all() and (pts[:, 1] >= 0).all() and (pts[:, 1] < h).all()
    assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= w).all() and (boxes[:, [1, 3]] <= h).all()
    with torch.no_grad():  # same prompts as PyTorch
        ref = tiny_model.autoppn.decode(tiny_model.autoppn(tiny_model.image_encoder(prep.pixels)), 64, top_n=256,
                                        score_threshold=0.0, input_sizes=[(h, w)])
    assert len(pts) == int(ref["valid"][0].sum())
    full, _ = run([64, 64])  # the whole padded square: the same graph proposes in the padding too
    assert (full[:, 1] >= h).any()
