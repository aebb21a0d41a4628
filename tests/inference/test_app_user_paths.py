"""Issue 13, "the user's paths", app side: why there are 0 masks, overlays with outlines and a caption, the
per-image and summary lines, and one-line errors (``--out`` a file, an empty folder, a URL) without tracebacks."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from PIL import Image

from litesam_pl.cli import main as litesam
from litesam_pl.inference.app import filter_report, main
from litesam_pl.inference.images import load_image
from litesam_pl.inference.overlay import OUTLINE_DARK, OUTLINE_LIGHT, draw_caption, draw_masks, draw_overlay
from litesam_pl.inference.segevery import FILTERS

TINY = ["--img-size", "64", "--device", "cpu", "--top-n", "16"]
ERROR = "litesam segment-everything: error: "


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    a = np.full((60, 80, 3), 90, np.uint8)
    a[10:40, 20:60] = (200, 60, 60)
    Image.fromarray(a + rng.integers(0, 20, a.shape, dtype=np.uint8)).save(d / "a.png")
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(d / "b.jpg")
    return d


def _run(capsys, argv):
    """``litesam ARGV`` through the console entry: (exit status, stdout, stderr)."""
    try:
        litesam(argv)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------- 0 masks, a reason
def test_zero_masks_say_why_in_one_line(photos, tmp_path, capsys):
    out_dir = tmp_path / "out"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = _run(capsys, ["segment-everything", str(photos / "a.png"), str(photos / "b.jpg"),
                                       "--out", str(out_dir)] + TINY)
    assert code == 0
    assert err.count("RANDOM WEIGHTS") == 1  # the warning once: no UserWarning repeating the banner
    assert not [w for w in caught if "random weights" in str(w.message).lower()]
    lines = out.splitlines()
    per_image = [s for s in lines if re.search(r": 0 masks, \d+ ms -> \w+_overlay\.png, \w+_masks\.json$", s)]
    assert len(per_image) == 2
    reasons = [s for s in lines if "masks kept" in s]
    assert len(reasons) == 2  # one line per image, after its line
    for s in reasons:
        assert re.search(r"0 of (\d+) masks kept \(\1 prompts decoded, from \d+ AutoPPN proposals", s)
        assert re.search(r"removed by predicted IoU <= 0\.88: \d+ \(best -?\d\.\d{3}\)", s)
        assert "stability < 0.95: 0" in s and "NMS: 0" in s and "max masks: 0" in s
        assert re.search(r"try --pred-iou-thresh \d", s)
    assert re.fullmatch(r"2 images, 0 masks, \d+ ms/image median; results saved to .+", lines[-1])
    assert lines[-1].endswith(str(out_dir))
    assert "Traceback" not in out + err


def test_the_suggested_flags_give_masks(photos, tmp_path, capsys):
    """Following the report's advice (at most twice: the IoU filter, then stability) yields masks (reruns into the
    same --out: --exist-ok lets them overwrite the previous files)."""
    argv = ["segment-everything", str(photos / "a.png"), "--out", str(tmp_path), "--exist-ok"] + TINY
    for _ in range(3):
        code, out, _ = _run(capsys, argv)
        assert code == 0
        n = int(re.search(r"a\.png: (\d+) masks?, \d+ ms", out).group(1))
        if n > 0:
            break
        flags = re.search(r"try (.+)$", out.splitlines()[1]).group(1).split()
        argv += flags
    assert n > 0, out
    assert "--pred-iou-thresh" in argv


def _funnel(**over):
    f = {"prompt_source": "autoppn", "proposals": 80, "removed_score_threshold": 2, "best_ppn_score": 0.4,
         "prompts": 78, "masks_per_prompt": 1, "candidates": 78, "kept": 0, "best_pred_iou": 0.868,
         "best_stability": None, "removed": dict(zip(FILTERS, (78, 0, 0, 0, 0))),
         "thresholds": {"top_n": 256, "score_threshold": 0.05, "points_per_side": None, "pred_iou_thresh": 0.88,
                        "stability_score_thresh": 0.95, "box_nms_thresh": 0.7, "nms": "mask", "max_masks": None}}
    f.update(over)
    return f


def test_filter_report_names_the_flag():
    line = filter_report(_funnel())
    assert "\n" not in line
    assert line.startswith("0 of 78 masks kept (78 prompts decoded, from 80 AutoPPN proposals: 2 under score "
                           "threshold 0.05 (best score 0.400))")
    assert "predicted IoU <= 0.88: 78 (best 0.868)" in line
    assert line.endswith("try --score-threshold 0.4 --pred-iou-thresh 0.8")
    stab = filter_report(_funnel(removed=dict(zip(FILTERS, (40, 38, 0, 0, 0))), best_stability=0.71,
                                 removed_score_threshold=0))
    assert stab.endswith("try --pred-iou-thresh 0.8 --stability-score-thresh 0.7")
    none = filter_report(_funnel(proposals=0, prompts=0, candidates=0, removed_score_threshold=0,
                                 best_ppn_score=None, best_pred_iou=None, removed=dict.fromkeys(FILTERS, 0)))
    assert none.endswith("try --prompts grid")


# ---------------------------------------------------------------------------------------------- overlays
def test_overlay_outlines_and_caption():
    photo = np.full((120, 160, 3), 128, np.uint8)
    mask = np.zeros((120, 160), bool)
    mask[50:90, 40:100] = True
    drawn = draw_masks(photo, [mask])
    fill = drawn[70, 70]
    assert not np.array_equal(fill, photo[70, 70])  # filled
    border = [drawn[50, 70], drawn[89, 70], drawn[70, 40], drawn[70, 99]]  # the square's edge pixels
    for px in border:
        assert not np.array_equal(px, fill) and tuple(px) in (OUTLINE_LIGHT, OUTLINE_DARK)
    assert np.array_equal(drawn[20, 20], photo[20, 20])  # outside: the photo
    captioned = draw_overlay(photo, [mask], lines=["litesam: 1 masks"], alerts=["random weights"])
    assert not np.array_equal(captioned[:12], drawn[:12])  # the caption band at the top
    assert np.array_equal(captioned[100:], drawn[100:])  # the rest unchanged
    assert captioned.shape == photo.shape


def test_zero_mask_overlay_is_not_the_photo(photos, tmp_path, capsys):
    code, out, _ = _run(capsys, ["segment-everything", str(photos / "a.png"), "--out", str(tmp_path)] + TINY)
    assert code == 0 and "a.png: 0 masks" in out
    over = np.asarray(Image.open(tmp_path / "a_overlay.png"))
    photo = load_image(photos / "a.png")
    assert over.shape == photo.shape
    assert not np.array_equal(over, photo)
    assert not np.array_equal(over[:10], photo[:10])  # the caption (with the reason) is at the top
    assert np.array_equal(draw_caption(photo, []), photo)  # no caption, no change


# ---------------------------------------------------------------------------------------------- one-line errors
def _one_line_error(code, out, err, *needles):
    assert code == 2
    assert "Traceback" not in out + err and "RANDOM WEIGHTS" not in err  # failed before loading a model
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR), err
    for needle in needles:
        assert needle in lines[0]


def test_out_naming_a_file_is_one_line(photos, tmp_path, capsys):
    target = tmp_path / "results.txt"
    target.write_text("keep me\n")
    code, out, err = _run(capsys, ["segment-everything", str(photos / "a.png"), "--out", str(target)] + TINY)
    _one_line_error(code, out, err, str(target), "existing file")
    assert target.read_text() == "keep me\n"
    code, out, err = _run(capsys, ["segment-everything", str(photos / "a.png"), "--out", str(target / "sub")] + TINY)
    _one_line_error(code, out, err, "is a file")


def test_empty_folder_is_one_line(tmp_path, capsys):
    empty = tmp_path / "holiday"
    empty.mkdir()
    (empty / "notes.txt").write_text("no image here\n")
    code, out, err = _run(capsys, ["segment-everything", str(empty), "--out", str(tmp_path / "o")] + TINY)
    _one_line_error(code, out, err, str(empty), "no images", ".jpg", ".png", ".tiff")
    assert not (tmp_path / "o").exists()


def test_url_is_one_line(tmp_path, capsys):
    url = "https://example.com/cat.jpg"
    code, out, err = _run(capsys, ["segment-everything", url, "--out", str(tmp_path / "o")] + TINY)
    _one_line_error(code, out, err, url, "URLs are not supported", "download")


def test_bad_inputs_among_good_ones_are_skipped(photos, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main([str(empty), "http://example.com/x.png", str(photos / "a.png"), "--out", str(tmp_path / "o")] + TINY)
    out, err = capsys.readouterr()
    assert code == 1
    assert f"{ERROR}{empty}: no images" in err and f"{ERROR}http://example.com/x.png: URLs" in err
    assert "2 of 3 inputs failed" in err and "Traceback" not in err
    assert re.search(r"^1 image, 0 masks, \d+ ms/image median; results saved to ", out, re.M)
    assert (tmp_path / "o" / "a_overlay.png").is_file()
