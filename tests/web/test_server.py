"""``litesam app`` served on a free local port and driven through ``gradio_client``: everything mode and a box
prompt on a bundled photo (the returned masks checked), bad input answered on the page while the server keeps
serving, the random-weights banner, and every file the server writes inside its temp folder."""
from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.web.page_server import SIDE, gradio, running_page  # first: Gradio's files in a temp folder; skips without

gradio_client = pytest.importorskip("gradio_client", reason="gradio_client is not installed")

from litesam_pl.inference.postprocess import decode_rle  # noqa: E402
from litesam_pl.web import handlers as H  # noqa: E402
from litesam_pl.web import prompts as P  # noqa: E402

NO_FILTERS = (0.0, 0.0, 0.7, 64, 0, 0.0, True)  # pred IoU, stability, NMS, top-N, max masks, score, show points


@pytest.fixture(scope="module")
def server(tmp_path_factory, slot):
    root = tmp_path_factory.mktemp("app")
    with running_page(root, slot, max_pixels=1_000_000) as (url, cfg):  # 1 MP: "huge" for these tests
        client = gradio_client.Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("client")))
        yield url, client, root


def _masks(path: str) -> list:
    data = json.loads(Path(path).read_text())
    return [decode_rle(a["segmentation"]) for a in data["annotations"]], data


def test_binds_localhost_and_shows_the_random_weights_banner(server):
    url, _, _ = server
    assert url.startswith("http://127.0.0.1:")
    config = urllib.request.urlopen(url + "config", timeout=30).read().decode()
    assert "RANDOM WEIGHTS" in config


def test_everything_mode_through_gradio_client(server):
    _, client, root = server
    overlay, text, masks_json, overlay_png = client.predict(None, "astronaut", *NO_FILTERS, api_name="/everything")
    masks, data = _masks(masks_json)
    photo = H.read_photo(None, "astronaut", max_side=SIDE).image
    assert len(masks) >= 1 and all(m.shape == (SIDE, SIDE) and m.any() for m in masks)
    assert data["image"]["original_width"] == 512 and f"**{len(masks)} mask" in text
    for phase in ("encoder", "AutoPPN", "decoder", "post-processing"):
        assert phase in text
    shown = np.asarray(Image.open(overlay).convert("RGB"))
    assert shown.shape == photo.shape and (shown != photo).any(axis=-1).mean() > 0.05
    assert np.asarray(Image.open(overlay_png)).shape == photo.shape
    saved = list((root / "downloads").rglob("astronaut_masks.json"))
    assert saved and json.loads(saved[0].read_text())["annotations"]  # written in the server's temp folder


def test_box_prompt_through_gradio_client(server, slot):
    _, client, _ = server
    best, gallery, text, masks_json, _ = client.predict(None, "astronaut", "", "10, 12, 80, 70", api_name="/prompt")
    masks, data = _masks(masks_json)
    assert len(gallery) == 3 and all("predicted IoU" in g["caption"] for g in gallery)
    assert len(masks) == 3 and all(a["box"] == [10, 12, 80, 70] for a in data["annotations"])
    photo = H.read_photo(None, "astronaut", max_side=SIDE)
    direct = P.run_prompt(slot, photo, np.zeros((0, 2), np.float32), np.zeros(0, np.int64),
                          np.array([10, 12, 80, 70], np.float32))
    for mask, ann in zip(masks, data["annotations"]):  # the page's masks are SamPredictor's
        assert (mask == direct.masks[ann["multimask_output"]]).all()
        assert ann["predicted_iou"] == pytest.approx(float(direct.ious[ann["multimask_output"]]), abs=1e-5)
    assert "SamPredictor" in text and np.asarray(Image.open(best)).shape[:2] == (SIDE, SIDE)


def test_bad_input_is_shown_and_the_server_keeps_serving(server, tmp_path):
    _, client, root = server
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture")
    out = client.predict(gradio_client.handle_file(str(notes)), None, *NO_FILTERS, api_name="/everything")
    assert out[0] is None and "notes.png: not a readable image file" in out[1]
    assert list((root / "gradio").rglob("notes.png"))  # the upload stayed in the server's temp folder
    Image.new("RGB", (1100, 1000)).save(tmp_path / "huge.png")
    out = client.predict(gradio_client.handle_file(str(tmp_path / "huge.png")), None, *NO_FILTERS,
                         api_name="/everything")
    assert out[0] is None and "huge.png: 1100x1000 = 1 MP is above the 1 MP limit" in out[1]
    out = client.predict(None, "coffee", "", "3, 4", api_name="/prompt")
    assert "only one corner" in out[2]
    out = client.predict(None, "coffee", "second checkpoint", 2, *NO_FILTERS, api_name="/compare")
    assert "no second checkpoint" in out[3]
    with pytest.raises(gradio_client.exceptions.AppError, match="not in the list of choices"):
        client.predict(None, "coffee", "lasso", 2, *NO_FILTERS, api_name="/compare")  # an odd mode
    _, text, masks_json, _ = client.predict(None, "chelsea", *NO_FILTERS, api_name="/everything")
    assert _masks(masks_json)[0] and "masks" in text  # still serving


def test_compare_with_grid_search(server):
    _, client, _ = server
    left, left_text, right, right_text = client.predict(None, "chelsea", "grid search", 2, *NO_FILTERS,
                                                        api_name="/compare")
    assert "AutoPPN top-64" in left_text and "SamAutomaticMaskGenerator 2x2" in right_text
    assert "x** the time of SegEvery with AutoPPN" in right_text and left and right


def test_every_failure_becomes_a_message(capsys):
    from litesam_pl.web.page import guarded

    def bad_input(x):
        raise H.PageError(f"no good: {x}")

    def bug(x):
        raise RuntimeError("boom")

    assert guarded(bad_input, 3, 1)("x") == (None, "⚠️ **Error**: no good: x", None)
    out = guarded(bug, 2, 0)("x")
    assert "Internal error" in out[0] and "RuntimeError: boom" in out[0] and out[1] is None
    assert "Traceback" in capsys.readouterr().err  # the details stay on the server's log
    kept = guarded(bug, 2, 1, keep=True)("x")
    assert kept[0] == gradio.skip() and "Internal error" in kept[1]  # the other outputs stay as they are
