"""Issue 13, "the user's paths", points 4 and 5 for ``litesam segment-everything``: masks at the original image size,
ultralytics' habits (a new ``runs/segment/predict<N>`` per run, a start line, ``--device``/``--half``, quoted globs
and ``--recursive``, a COCO ``results.json``), and no output file overwritten without ``--exist-ok``."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import litesam_pl
from litesam_pl.inference.app import build_parser, main
from litesam_pl.inference.export import export_weights
from litesam_pl.inference.outputs import collect_inputs, fit_side, image_ids, output_names
from litesam_pl.inference.postprocess import decode_rle

TINY = ["--img-size", "64", "--device", "cpu"]
# 2x2 grid prompts, no filters: a few masks from random weights, cheaply
GRID = ["--prompts", "grid", "--points-per-side", "2", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]
ERROR = "litesam segment-everything: error: "


def _photo(path: Path, h: int, w: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.full((h, w, 3), 80, np.uint8)
    a[h // 4 : h // 2, w // 4 : w // 2] = (210, 70, 60)
    a = a + np.random.default_rng(seed).integers(0, 30, a.shape, dtype=np.uint8)
    Image.fromarray(a).save(path)
    return path


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """photos/{a.jpg, b.png, notes.txt, sub/c.jpg, sub/deeper/d.png}."""
    d = tmp_path_factory.mktemp("tree") / "photos"
    for i, rel in enumerate(("a.jpg", "b.png", "sub/c.jpg", "sub/deeper/d.png")):
        _photo(d / rel, 24, 32, seed=i)
    (d / "notes.txt").write_text("not an image\n")
    return d


def _masks_json(out: Path, stem: str) -> dict:
    return json.loads((out / f"{stem}_masks.json").read_text())


# ------------------------------------------------------------------------------------------- 4: the original size
def test_masks_at_the_original_size_beyond_the_guard(tmp_path, capsys):
    """A 4200x300 photo is above the 4096 guard: the model sees it downscaled, the masks come back at 4200x300."""
    assert build_parser().parse_args(["x.jpg"]).max_side == 4096  # the memory guard is still on by default
    photo = _photo(tmp_path / "wide.png", 300, 4200)
    out = tmp_path / "out"
    assert main([str(photo), "--out", str(out), "--max-masks", "2"] + TINY + GRID) == 0
    err = capsys.readouterr().err
    assert "4200x300 downscaled to 4096x293 for the model (--max-side); masks at 4200x300" in err
    data = _masks_json(out, "wide")
    assert (data["image"]["height"], data["image"]["width"]) == (300, 4200) and "original_width" not in data["image"]
    assert data["annotations"]
    for ann in data["annotations"]:
        m = decode_rle(ann["segmentation"])
        assert m.shape == (300, 4200) and int(m.sum()) == ann["area"]
        ys, xs = np.nonzero(m)
        assert ann["bbox"] == [int(xs.min()), int(ys.min()), int(xs.max() - xs.min()), int(ys.max() - ys.min())]
    assert np.asarray(Image.open(out / "wide_overlay.png")).shape == (300, 4200, 3)


def test_points_in_original_pixels_and_max_output_side(tmp_path):
    photo = _photo(tmp_path / "p.png", 80, 100)
    out = tmp_path / "full"
    assert main([str(photo), "--out", str(out), "--max-side", "40"] + TINY + GRID) == 0
    anns = _masks_json(out, "p")["annotations"]
    assert anns and all(decode_rle(a["segmentation"]).shape == (80, 100) for a in anns)
    for a in anns:  # the 2x2 grid at 1/4 and 3/4 of the ORIGINAL width and height
        x, y = a["point_coords"][0]
        assert min(abs(x - 25), abs(x - 75)) < 0.5 and min(abs(y - 20), abs(y - 60)) < 0.5
    small = tmp_path / "small"
    assert main([str(photo), "--out", str(small), "--max-side", "40", "--max-output-side", "50"] + TINY + GRID) == 0
    data = _masks_json(small, "p")
    assert (data["image"]["height"], data["image"]["width"]) == (40, 50)
    assert (data["image"]["original_height"], data["image"]["original_width"]) == (80, 100)
    assert all(decode_rle(a["segmentation"]).shape == (40, 50) for a in data["annotations"])
    assert np.asarray(Image.open(small / "p_overlay.png")).shape == (40, 50, 3)
    assert fit_side((5320, 8000), 4096) == (2724, 4096) and fit_side((30, 40), 0) == (30, 40)


# ------------------------------------------------------------------------------------------- 5a: output folders
def test_default_out_is_a_new_folder_per_run(tree, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for expect in ("predict", "predict2"):
        assert main([str(tree / "a.jpg")] + TINY + GRID) == 0
        out = capsys.readouterr().out
        folder = Path("runs") / "segment" / expect
        assert out.rstrip().endswith(f"results saved to {folder}")
        assert sorted(p.name for p in folder.iterdir()) == ["a_masks.json", "a_overlay.png", "images.json",
                                                            "results.json"]
    assert sorted(p.name for p in (tmp_path / "runs" / "segment").iterdir()) == ["predict", "predict2"]


def test_explicit_out_never_overwrites_silently(tree, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("mine\n")
    argv = [str(tree / "a.jpg"), "--out", str(out)] + TINY + GRID
    assert main(argv) == 0  # an existing, non-empty folder is fine
    assert (out / "a_masks.json").is_file() and (out / "keep.txt").read_text() == "mine\n"
    capsys.readouterr()
    before = (out / "a_overlay.png").stat().st_mtime_ns
    assert main(argv) == 2  # the same run again: refused before any work, naming the file
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR), err
    assert f"{out / 'a_overlay.png'} already exists; pass --exist-ok" in lines[0]
    assert (out / "a_overlay.png").stat().st_mtime_ns == before
    assert main(argv + ["--exist-ok"]) == 0
    assert "--exist-ok" in build_parser().format_help()


# ------------------------------------------------------------------------------------------- 5b, c: start line, device
def test_start_line_names_model_device_and_size(tree, tmp_path, capsys):
    assert main([str(tree / "a.jpg"), "--out", str(tmp_path / "r")] + TINY + GRID) == 0
    err = capsys.readouterr().err
    start = [s for s in err.splitlines() if s.startswith("litesam segment-everything: model ")]
    assert start == ["litesam segment-everything: model litesam (random weights), device cpu, input 64x64 "
                     "(longest side resized), float32, 1 image"]
    torch.manual_seed(0)
    ckpt = export_weights(litesam_pl.create_model("litesam", img_size=64), tmp_path / "tiny.pt")
    assert main([str(tree / "a.jpg"), "--out", str(tmp_path / "c"), "--ckpt", str(ckpt)] + TINY + GRID) == 0
    err = capsys.readouterr().err
    assert re.search(r"^litesam segment-everything: model \w+ \(tiny\.pt\), device cpu, input 64x64 ", err, re.M)


def test_device_and_half(tree, tmp_path, capsys):
    assert main([str(tree / "a.jpg"), "--out", str(tmp_path / "h"), "--half"] + TINY + GRID) == 0
    err = capsys.readouterr().err
    assert ("litesam segment-everything: note: --half is ignored on cpu (bf16 autocast is for CUDA); running in "
            "float32") in err
    assert re.search(r"device cpu, input 64x64 \(longest side resized\), float32", err)
    bad = [("gpu7", "not a device; use auto, cpu, cuda or cuda:N")]
    if not torch.cuda.is_available():
        bad += [("cuda:0", "CUDA is not available on this machine; use --device cpu"),
                ("0", "CUDA is not available")]
    for spec, why in bad:
        assert main([str(tree / "a.jpg"), "--out", str(tmp_path / "x"), "--img-size", "64", "--device", spec]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines == [f"{ERROR}--device {spec}: {why}"] or (len(lines) == 1 and why in lines[0]), lines
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------------------- 5d: globs, --recursive
def test_globs_and_recursive_folders_find_the_files(tree, monkeypatch):
    def names(inputs, recursive=False):
        paths, errors = collect_inputs(inputs, recursive=recursive)
        return [p.relative_to(tree).as_posix() for p in paths], errors

    assert names([str(tree / "*.jpg")]) == (["a.jpg"], [])
    assert names([str(tree / "**" / "*.png")]) == (["b.png", "sub/deeper/d.png"], [])
    assert names([str(tree)]) == (["a.jpg", "b.png"], [])
    assert names([str(tree)], recursive=True) == (["a.jpg", "b.png", "sub/c.jpg", "sub/deeper/d.png"], [])
    paths, errors = names([str(tree / "*.gif")])
    assert paths == [] and errors == [f"{tree / '*.gif'}: no image file matches this pattern (accepted suffixes: "
                                      ".bmp .gif .jpeg .jpg .pgm .png .pnm .ppm .tif .tiff .webp)"]
    monkeypatch.chdir(tree)  # a quoted relative glob, as typed in a shell
    assert collect_inputs(["sub/*.jpg"])[0] == [Path("sub/c.jpg")]
    assert output_names([Path("x/a.jpg"), Path("y/a.png"), Path("a_1.jpg")]) == ["a", "a_1", "a_1_1"]


def test_recursive_run_and_glob_run(tree, tmp_path, capsys):
    out = tmp_path / "all"
    assert main([str(tree), "--recursive", "--out", str(out)] + TINY + GRID) == 0
    assert sorted(p.name for p in out.glob("*_masks.json")) == ["a_masks.json", "b_masks.json", "c_masks.json",
                                                                  "d_masks.json"]
    out = tmp_path / "glob"
    assert main([str(tree / "**" / "*.jpg"), "--out", str(out)] + TINY + GRID) == 0
    assert sorted(p.name for p in out.glob("*_masks.json")) == ["a_masks.json", "c_masks.json"]
    assert "Traceback" not in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- 5e: COCO results
def test_results_json_is_coco_results(tmp_path, capsys):
    from pycocotools.coco import COCO

    src = tmp_path / "val2017"
    photos = [_photo(src / "000000017627.jpg", 30, 40, 1), _photo(src / "000000000139.png", 24, 36, 2)]
    out = tmp_path / "out"
    assert main([str(src), "--out", str(out)] + TINY + GRID) == 0
    results = json.loads((out / "results.json").read_text())
    assert results and {r["image_id"] for r in results} == {17627, 139}
    for r in results:
        assert set(r) == {"image_id", "category_id", "segmentation", "score", "bbox"}
        assert r["category_id"] == 1 and isinstance(r["score"], float) and len(r["bbox"]) == 4
        assert isinstance(r["segmentation"]["counts"], str) and len(r["segmentation"]["size"]) == 2
    per_image = _masks_json(out, "000000017627")
    assert per_image["image"]["image_id"] == 17627
    mine = [r for r in results if r["image_id"] == 17627]
    assert [r["score"] for r in mine] == [a["predicted_iou"] for a in per_image["annotations"]]  # the ranking score
    images = json.loads((out / "images.json").read_text())["images"]
    assert sorted((i["id"], i["file_name"], i["height"], i["width"]) for i in images) == [
        (139, "000000000139.png", 24, 36), (17627, "000000017627.jpg", 30, 40)]
    capsys.readouterr()
    coco = COCO(str(out / "images.json")).loadRes(str(out / "results.json"))
    assert len(coco.getAnnIds()) == len(results) and sorted(coco.getImgIds()) == [139, 17627]
    assert image_ids(photos) == [17627, 139]
    assert image_ids([Path("cat.jpg"), Path("000000000139.jpg")]) == [0, 1]  # not all numeric: input order
