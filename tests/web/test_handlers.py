"""``litesam app``'s work without a server (no Gradio needed): photos, SegEvery, grid search, prompts, downloads,
the errors the page shows, and the command's behaviour without Gradio."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from litesam_pl.inference.images import ImageLoadError
from litesam_pl.inference.postprocess import decode_rle
from litesam_pl.models.registry import ModelError
from litesam_pl.web import handlers as H
from litesam_pl.web import prompts as P
from litesam_pl.web import server

SIDE = 64  # photos are downscaled to this: a tiny model on tiny pictures keeps the file fast


@pytest.fixture(scope="module")
def photo() -> H.Photo:
    return H.read_photo(None, "astronaut", max_side=SIDE)


@pytest.fixture(scope="module")
def seg(slot, photo) -> H.Segmentation:
    return H.run_everything(slot, photo, 0.0, 0.0, 0.7, 64, None, 0.0)


def test_examples_are_bundled_scikit_image_photos():
    import skimage

    photos = H.example_photos()
    assert {"astronaut", "coffee", "chelsea"} <= set(photos)
    root = Path(skimage.__file__).parent
    for path in photos.values():
        assert path.is_file() and root in path.parents  # inside the installed package: nothing downloaded


def test_read_photo_sources_and_downscale(tmp_path):
    ex = H.read_photo(None, "coffee", max_side=SIDE)
    assert ex.name == "coffee" and ex.original_size == (400, 600) and ex.image.shape == (43, 64, 3)
    arr = np.random.default_rng(0).integers(0, 255, (30, 50), dtype=np.uint8)  # grey: read as RGB
    Image.fromarray(arr).save(tmp_path / "mine.png")
    up = H.read_photo(str(tmp_path / "mine.png"), "coffee", max_side=SIDE)  # the upload wins over the example
    assert up.name == "mine" and up.image.shape == (30, 50, 3) and (up.image[..., 0] == arr).all()
    assert H.read_photo({"path": str(tmp_path / "mine.png")}).name == "mine"


def test_read_photo_bad_input_is_one_readable_line(tmp_path):
    with pytest.raises(H.PageError, match="no photo"):
        H.read_photo(None, None)
    with pytest.raises(H.PageError, match="unknown example 'moon-landing'; choose one of astronaut"):
        H.read_photo(None, "moon-landing")
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(ImageLoadError) as err:
        H.read_photo(str(text))
    assert str(err.value).startswith("notes.png: not a readable image") and str(tmp_path) not in str(err.value)
    Image.new("RGB", (200, 100)).save(tmp_path / "big.png")
    with pytest.raises(ImageLoadError, match=r"big.png: 200x100 = 0 MP is above the 0 MP limit"):
        H.read_photo(str(tmp_path / "big.png"), max_pixels=10_000)


def test_load_slot(tmp_path, slot):
    assert slot.random_weights and slot.label == "litesam (random weights)" and slot.has_autoppn
    assert slot.default_score_threshold == 0.0 and not slot.model.training
    with pytest.raises(ModelError):
        H.load_slot(str(tmp_path / "missing.ckpt"))
    with pytest.raises(ModelError, match="backbone"):
        H.load_slot(None, model_name="litevit")
    from litesam_pl.inference.export import export_weights

    ckpt = export_weights(slot.model, tmp_path / "m.pt")
    trained = H.load_slot(str(ckpt))
    assert not trained.random_weights and trained.label == f"litesam ({ckpt})"
    assert trained.default_score_threshold == 0.05  # AutoPPN's decode default


def test_everything_records_masks_phases(slot, photo, seg):
    h, w = photo.image.shape[:2]
    assert len(seg.records) >= 1 and len(seg.masks) == len(seg.records)
    for rec, mask in zip(seg.records, seg.masks):
        assert mask.shape == (h, w) and mask.any()
        assert (decode_rle(rec["segmentation"]) == mask).all()
    assert set(seg.phases_ms) >= {"encoder", "prompts", "decoder", "postprocess"}
    assert all(v >= 0 for v in seg.phases_ms.values()) and seg.total_ms >= seg.phases_ms["encoder"] > 0
    assert seg.proposals.shape[1] == 2 and len(seg.proposals) >= len(seg.records)
    assert (seg.proposals >= 0).all() and (seg.proposals[:, 0] <= w).all() and (seg.proposals[:, 1] <= h).all()
    assert "decode" not in vars(slot.model.autoppn)  # the proposal recorder is gone
    text = H.segmentation_summary(seg)
    for word in ("encoder", "AutoPPN", "decoder", "post-processing", f"{len(seg.records)} mask", "proposals"):
        assert word in text


def test_everything_filters_apply_and_report(slot, photo, seg):
    capped = H.run_everything(slot, photo, 0.0, 0.0, 0.7, 64, 1, 0.0)
    assert len(capped.records) == 1 and capped.records[0]["predicted_iou"] == seg.records[0]["predicted_iou"]
    none = H.run_everything(slot, photo, 1.0, 0.0, 0.7, 64, None, 0.0)
    assert none.records == [] and none.funnel["kept"] == 0
    report = H.segmentation_summary(none)
    assert "removed by predicted IoU" in report and "--" not in report  # the flags are named as the sliders
    with pytest.raises(H.PageError, match=r"pred_iou_thresh must be a number in \[0, 1\]"):
        H.run_everything(slot, photo, 1.5)
    with pytest.raises(H.PageError, match="top_n"):
        H.run_everything(slot, photo, top_n=0)


def test_overlay_draws_masks_and_points(photo, seg):
    plain = H.draw_everything(photo, seg, show_points=False)
    dots = H.draw_everything(photo, seg, show_points=True)
    assert plain.shape == photo.image.shape and plain.dtype == np.uint8
    union = np.any(seg.masks, axis=0)
    assert (plain[union] != photo.image[union]).any(axis=-1).mean() > 0.5  # filled
    assert (dots != plain).any()  # the AutoPPN points


def test_grid_search_baseline(slot, photo):
    grid = H.run_grid(slot, photo, 2, 0.0, 0.0, 0.7)
    assert "SamAutomaticMaskGenerator 2x2" in grid.method and grid.proposals.shape == (0, 2)
    assert grid.phases_ms["encoder"] > 0 and grid.phases_ms["decoder"] > 0 and grid.total_ms > 0
    assert all(m.shape == photo.image.shape[:2] for m in grid.masks)
    assert "prompt encoder" in H.segmentation_summary(grid)
    for hook_owner in (slot.model.image_encoder, slot.model.mask_decoder):
        assert not hook_owner._forward_hooks and not hook_owner._forward_pre_hooks
    with pytest.raises(H.PageError, match="grid points per side"):
        H.run_grid(slot, photo, 0)


def test_prompt_texts_and_clicks():
    pts, box = P.add_click("", "", 10.4, 20.6, "positive point")
    pts, box = P.add_click(pts, box, 30, 5, "negative point")
    coords, labels = P.parse_points(pts)
    assert coords.tolist() == [[10, 21], [30, 5]] and labels.tolist() == [1, 0]
    pts, box = P.add_click(pts, box, 40, 30, "box corner")
    assert box == "40, 30"
    with pytest.raises(H.PageError, match="only one corner"):
        P.parse_box(box)
    pts, box = P.add_click(pts, box, 5, 8, "box corner")
    assert P.parse_box(box).tolist() == [5, 8, 40, 30]  # any two opposite corners
    assert P.add_click(pts, box, 1, 1, "box corner")[1] == "1, 1"  # a third corner starts a new box
    with pytest.raises(H.PageError, match="unknown click mode"):
        P.add_click("", "", 1, 1, "lasso")
    for bad in ("[[1, 2]]", "not json", "[[1, 2, 5]]"):
        with pytest.raises(H.PageError, match="points"):
            P.parse_points(bad)
    for bad in ("1, 2, 3", "a, b, c, d", "5, 5, 5, 9"):
        with pytest.raises(H.PageError, match="box"):
            P.parse_box(bad)
    assert P.parse_box("  ") is None and len(P.parse_points("")[0]) == 0


def test_prompt_is_sam_predictor(slot, photo):
    from segment_anything import SamPredictor

    coords, labels = np.array([[20, 30], [50, 10]], np.float32), np.array([1, 0])
    box = np.array([5, 5, 60, 50], np.float32)
    first = P.run_prompt(slot, photo, coords, labels, box)
    again = P.run_prompt(slot, photo, coords, labels, box)
    assert first.masks.shape == (3, *photo.image.shape[:2]) and first.ious.shape == (3,)
    assert first.encoder_ms > 0 and again.encoder_ms == 0.0  # the photo is embedded once
    ref = SamPredictor(slot.model)
    ref.set_image(photo.image)
    masks, ious, _ = ref.predict(point_coords=coords, point_labels=labels, box=box, multimask_output=True)
    assert (first.masks == masks).all() and np.allclose(first.ious, ious, atol=1e-6)
    records = P.prompt_records(first, coords, box)
    assert [r["multimask_output"] for r in records] == np.argsort(-first.ious, kind="stable").tolist()
    assert all((decode_rle(r["segmentation"]) == first.masks[r["multimask_output"]]).all() for r in records)
    picture = P.draw_prompts(photo.image, coords, labels, box)
    assert tuple(picture[30, 20]) == P.POINT_COLOURS[1] and tuple(picture[10, 50]) == P.POINT_COLOURS[0]


def test_prompt_errors(slot, photo):
    none = np.zeros((0, 2), np.float32), np.zeros(0, np.int64)
    with pytest.raises(H.PageError, match="no prompt"):
        P.run_prompt(slot, photo, *none, None)
    with pytest.raises(H.PageError, match="outside"):
        P.run_prompt(slot, photo, np.array([[500, 5]], np.float32), np.array([1]), None)
    with pytest.raises(H.PageError, match="outside"):
        P.run_prompt(slot, photo, *none, np.array([0, 0, 500, 10], np.float32))


def test_downloads_coco_rle_and_png(tmp_path, slot, photo, seg):
    files = H.save_downloads(tmp_path / "out", photo, seg.records, ["caption"], H.random_weights_alert(slot))
    assert all(tmp_path / "out" in p.parents for p in files.values())
    data = json.loads(files["masks"].read_text())
    assert data["image"]["width"] == photo.image.shape[1] and data["image"]["original_height"] == 512
    assert len(data["annotations"]) == len(seg.records)
    for ann, mask in zip(data["annotations"], seg.masks):
        assert (decode_rle(ann["segmentation"]) == mask).all() and ann["area"] == int(mask.sum())
    png = np.asarray(Image.open(files["overlay"]))
    assert png.shape == photo.image.shape
    again = H.save_downloads(tmp_path / "out", photo, seg.records)
    assert again["masks"].parent != files["masks"].parent  # one folder per result: no overwrite


def test_app_without_gradio_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setattr(server.importlib.util, "find_spec", lambda name: None)
    assert server.main(["--ckpt", "x.pt"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Gradio is not installed" in err and "pip install 'litesam-pl[app]'" in err


def test_app_subcommand_and_defaults(monkeypatch, capsys):
    from litesam_pl import cli

    cli.main(["--help"])
    assert "app" in capsys.readouterr().out and cli.TOOLS["app"] == ("litesam_pl.web.server", "main")
    args = server.build_parser().parse_args([])
    assert args.host == "127.0.0.1" and args.ckpt is None
    monkeypatch.setattr(server.importlib.util, "find_spec", lambda name: object())
    assert server.main(["--model", "litevit"]) == 2  # a one-line model error before any server starts
    assert "backbone" in capsys.readouterr().err
