"""``litesam segment-everything`` (litesam_pl.inference.app) and robust image loading."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import litesam_pl
from litesam_pl.inference.app import main
from litesam_pl.inference.export import export_weights
from litesam_pl.inference.images import ImageLoadError, load_image
from litesam_pl.inference.postprocess import decode_rle

LOOSE = ["--pred-iou-thresh", "0", "--stability-score-thresh", "0", "--top-n", "16", "--score-threshold", "0"]




@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("app_inputs")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 56), dtype=np.uint8)).save(d / "grey.png")
    Image.fromarray(rng.integers(0, 255, (48, 36, 4), dtype=np.uint8)).save(d / "rgba.png")
    g16 = (np.linspace(0, 65535, 30 * 44).reshape(30, 44)).astype(np.uint16)
    Image.fromarray(g16).save(d / "deep16.png")
    Image.fromarray(np.full((2, 3, 3), 200, np.uint8)).save(d / "tiny.png")
    (d / "notes.txt").write_text("this is not an image\n")
    return d


def test_load_image_modes(inputs):
    for name, shape in [("grey.png", (40, 56)), ("rgba.png", (48, 36)), ("deep16.png", (30, 44)), ("tiny.png", (2, 3))]:
        img = load_image(inputs / name)
        assert img.shape == shape + (3,) and img.dtype == np.uint8
    deep = load_image(inputs / "deep16.png")
    assert deep[0, 0, 0] == 0 and deep[-1, -1, 0] == 255  # 16 bit scaled, not clipped
    with pytest.raises(ImageLoadError, match="not a readable image"):
        load_image(inputs / "notes.txt")
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(inputs / "missing.png")
    with pytest.raises(ImageLoadError, match="MP limit"):
        load_image(inputs / "grey.png", max_pixels=100)


def _check_outputs(out, stem, shape):
    png, js = out / f"{stem}_overlay.png", out / f"{stem}_masks.json"
    assert png.is_file() and js.is_file()
    over = np.asarray(Image.open(png))
    assert over.shape == shape + (3,)
    data = json.loads(js.read_text())
    assert data["image"]["height"] == shape[0] and data["image"]["width"] == shape[1]
    for ann in data["annotations"]:
        m = decode_rle(ann["segmentation"])
        assert m.shape == shape and int(m.sum()) == ann["area"]
    return data


def test_app_random_weights_all_modes(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main([str(inputs / n) for n in ("grey.png", "rgba.png", "deep16.png", "tiny.png")]
              + ["--out", str(out), "--img-size", "64", "--device", "cpu"] + LOOSE)
    assert rc == 0
    err = capsys.readouterr().err
    assert "RANDOM WEIGHTS" in err
    data = _check_outputs(out, "grey", (40, 56))
    assert len(data["annotations"]) > 0
    _check_outputs(out, "rgba", (48, 36))
    _check_outputs(out, "deep16", (30, 44))
    _check_outputs(out, "tiny", (2, 3))


def test_app_fails_clearly_on_text_and_missing(inputs, tmp_path, capsys):
    rc = main([str(inputs / "notes.txt"), str(inputs / "nope.png"), str(inputs / "grey.png"),
               "--out", str(tmp_path), "--img-size", "64", "--device", "cpu"] + LOOSE)
    assert rc == 1
    err = capsys.readouterr().err
    assert "notes.txt: not a readable image file" in err and "nope.png: no such file" in err
    assert (tmp_path / "grey_overlay.png").is_file()  # the good image still went through
    assert not (tmp_path / "notes_overlay.png").exists()


def test_app_with_ckpt(inputs, tmp_path, capsys):
    torch.manual_seed(1)
    ckpt = export_weights(litesam_pl.create_model("litesam", img_size=64), tmp_path / "m.pt")
    rc = main([str(inputs / "grey.png"), "--ckpt", str(ckpt), "--out", str(tmp_path / "o"), "--device", "cpu"]
              + LOOSE + ["--prompts", "grid", "--points-per-side", "4"])
    assert rc == 0
    assert "RANDOM WEIGHTS" not in capsys.readouterr().err
    _check_outputs(tmp_path / "o", "grey", (40, 56))
    assert main([str(inputs / "grey.png"), "--ckpt", str(tmp_path / "absent.pt"), "--out", str(tmp_path)]) == 2
