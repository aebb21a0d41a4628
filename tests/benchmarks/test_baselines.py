"""benchmarks.baselines (box fill, GrabCut) and their rows in benchmarks.coco / benchmarks.lvis."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks.baselines import Baselines, box_fill_mask, grabcut_crop, grabcut_mask, integer_box
from litesam_pl.metrics.miou import mask_iou

COCO_ANN = "coco2017_subset/annotations/instances_val2017_subset.json"
BASELINE_KEYS = {"miou_1box", "miou_1box_small", "miou_1box_medium", "miou_1box_large", "instances", "seconds"}


# ---------------------------------------------------------------------------------------------- box fill


def test_box_fill_of_a_rectangle_mask_has_iou_one():
    gt = np.zeros((40, 60), dtype=bool)
    gt[4:20, 5:25] = True
    assert mask_iou(box_fill_mask([5, 4, 20, 16], 40, 60), gt) == 1.0
    # pixel-centre rule: a pixel is in when its centre (col + .5, row + .5) lies in [x, x + w) x [y, y + h)
    assert integer_box([5.3, 4.5, 19.3, 15.1], 40, 60) == (5, 4, 25, 20)  # centres 5.5..24.5 < 24.6, 4.5..19.5
    assert mask_iou(box_fill_mask([5.3, 4.5, 19.3, 15.1], 40, 60), gt) == 1.0
    assert integer_box([5.6, 4.2, 19.8, 15.2], 40, 60) == (6, 4, 25, 19)  # 5.5 < 5.6; 19.5 >= 4.2 + 15.2
    assert integer_box([4.5, 3.5, 20.0, 16.0], 40, 60) == (4, 3, 24, 19)  # start inclusive, end exclusive
    # clipped to the image
    assert integer_box([-3, 30.5, 100, 50], 40, 60) == (0, 30, 60, 40)
    assert box_fill_mask([-3, 30.5, 100, 50], 40, 60).sum() == 60 * 10


def test_box_fill_takes_the_nearest_pixel_of_a_box_thinner_than_a_pixel():
    # [10.6, 11.4) holds no pixel centre: the column holding its centre (11.0 -> column 11); rows 2..4 as usual
    assert integer_box([10.6, 2, 0.8, 3], 40, 60) == (11, 2, 12, 5)
    assert integer_box([10.1, 2.1, 0.3, 0.2], 40, 60) == (10, 2, 11, 3)  # both axes: one pixel
    assert integer_box([59.7, 39.8, 0.25, 0.1], 40, 60) == (59, 39, 60, 40)  # at the image's corner
    assert box_fill_mask([10.6, 2, 0.8, 3], 40, 60).sum() == 3
    assert not box_fill_mask([10.6, 2, 0.0, 3], 40, 60).any()  # a degenerate box (w = 0) stays empty


def test_box_fill_matches_pycocotools_rasterising_the_box_as_a_polygon():
    mask_utils = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    h, w = 40, 60
    for _ in range(300):
        x, y = rng.uniform(-2, 45, 2)
        bw, bh = rng.uniform(1.0, 30, 2)
        if rng.random() < 0.3:
            x, y, bw, bh = np.round([x, y, bw, bh])
        poly = [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]
        want = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(poly, h, w))).astype(bool)
        np.testing.assert_array_equal(box_fill_mask([x, y, bw, bh], h, w), want)


def _rect_image(h=48, w=64, box=(16, 12, 28, 20)):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 40, (h, w, 3), dtype=np.uint8)
    x, y, bw, bh = box
    img[y:y + bh, x:x + bw] = rng.integers(200, 255, (bh, bw, 3), dtype=np.uint8)
    gt = np.zeros((h, w), dtype=bool)
    gt[y:y + bh, x:x + bw] = True
    return img, gt


def test_box_ellipse_is_the_inscribed_ellipse_within_the_box_pixels():
    from benchmarks.baselines import box_ellipse_mask

    m = box_ellipse_mask([10, 20, 40, 20], 60, 80)  # centre (30, 30), semi-axes 20 x 10
    ys, xs = np.nonzero(m)
    assert m[30, 30] and m[30, 10] and m[30, 49] and m[20, 30] and m[39, 30]  # the four ends (pixel centres in)
    assert not m[20, 10] and not m[39, 49] and not m[21, 12]  # corners of the box are out
    assert xs.min() >= 10 and xs.max() <= 49 and ys.min() >= 20 and ys.max() <= 39
    # area ~ pi * a * b against the box's 800 pixels
    assert abs(m.sum() - np.pi * 20 * 10) < 20
    tiny = box_ellipse_mask([5.2, 5.2, 0.4, 0.4], 10, 10)  # no pixel centre inside: the centre pixel
    assert tiny.sum() == 1 and tiny[5, 5]
    assert not box_ellipse_mask([12, 12, 5, 5], 10, 10).any()  # outside the image: empty


def test_grabcut_segments_a_bright_rectangle_from_a_loose_box():
    img, gt = _rect_image()
    m, reason = grabcut_mask(img, [10, 6, 40, 32])  # box 6 px loose on each side
    assert reason is None and m.dtype == bool and m.shape == gt.shape
    assert mask_iou(m, gt) > 0.9 > mask_iou(box_fill_mask([10, 6, 40, 32], 48, 64), gt)
    again, _ = grabcut_mask(img, [10, 6, 40, 32])  # seeded: the same result every call
    np.testing.assert_array_equal(m, again)
    cropped, reason = grabcut_mask(img, [10, 6, 40, 32], crop=True)
    assert reason is None and mask_iou(cropped, gt) > 0.9


def test_grabcut_crop_option_runs_on_a_crop_around_the_box_and_pastes_it_back(monkeypatch):
    # crop=True (not the baseline rows' default): margin max(16, ceil(0.5 * side)) per side, clipped to the image
    assert grabcut_crop((100, 50, 110, 90), 480, 640) == (84, 30, 126, 110)  # 10 wide: 16; 40 high: 20
    assert grabcut_crop((5, 400, 205, 470), 480, 640) == (0, 365, 305, 480)  # 200 wide: 100; 70 high: 35
    h, w = 200, 300
    rng = np.random.default_rng(1)
    img = rng.integers(0, 40, (h, w, 3), dtype=np.uint8)
    img[120:150, 200:240] = rng.integers(200, 255, (30, 40, 3), dtype=np.uint8)
    gt = np.zeros((h, w), dtype=bool)
    gt[120:150, 200:240] = True
    import cv2

    seen = []
    real = cv2.grabCut

    def spy(image, mask, rect, *a):
        seen.append((image.shape, tuple(rect)))
        return real(image, mask, rect, *a)

    monkeypatch.setattr(cv2, "grabCut", spy)
    # pixel box (194, 114, 246, 156): crop (168, 93, 272, 177)
    m, reason = grabcut_mask(img, [194, 114, 52, 42], crop=True)
    assert reason is None and m.shape == (h, w) and mask_iou(m, gt) > 0.9
    assert seen == [((177 - 93, 272 - 168, 3), (194 - 168, 114 - 93, 52, 42))]
    assert not m[:93].any() and not m[:, :168].any() and not m[177:].any() and not m[:, 272:].any()
    seen.clear()
    grabcut_mask(img, [194, 114, 52, 42])  # default: the whole image, the same pixel box
    assert seen == [((h, w, 3), (194, 114, 52, 42))]


def _sample(img, boxes):
    anns = [{"bbox": list(b), "area": float(b[2] * b[3])} for b in boxes]
    return SimpleNamespace(image=img), anns


def test_grabcut_falls_back_to_box_fill_on_degenerate_boxes_and_errors_and_counts_them(monkeypatch):
    img, gt = _rect_image()
    h, w = gt.shape
    boxes = [(16, 12, 28, 20), (30, 5, 1, 10), (0, 0, w, h)]  # fine; 1 px wide; the whole image (no background)
    sample, anns = _sample(img, boxes)
    gts = np.stack([box_fill_mask(b, h, w) for b in boxes])
    bl = Baselines()
    assert bl(sample, anns, gts) == {"gc_fallback": 2}
    s = bl.summary([a["area"] for a in anns])
    assert set(s) == {"box_fill", "box_ellipse", "grabcut"} and BASELINE_KEYS <= set(s["grabcut"])
    assert s["grabcut"]["fallbacks"] == 2 and s["grabcut"]["fallback_reasons"] == {"degenerate_box": 2, "error": 0}
    assert s["box_fill"]["miou_1box"] == pytest.approx(100.0)  # GT = the boxes themselves
    assert bl.ious["grabcut"][1:] == [1.0, 1.0]  # the fallbacks are the box fill
    assert s["grabcut"]["instances"] == s["box_fill"]["instances"] == 3

    import cv2

    def boom(*a, **k):
        raise cv2.error("no")

    monkeypatch.setattr(cv2, "grabCut", boom)
    m, reason = grabcut_mask(img, boxes[0])
    assert reason == "error" and m.sum() == 28 * 20
    bl2 = Baselines(["grabcut"])
    bl2(sample, anns[:1], gts[:1])
    assert bl2.summary()["grabcut"]["fallback_reasons"] == {"degenerate_box": 0, "error": 1}
    with pytest.raises(RuntimeError, match="instances"):
        bl2.summary([1.0, 2.0])
    with pytest.raises(ValueError):
        Baselines(["nope"])


# ------------------------------------------------------------------------------------ benchmarks.coco CLI


def _tiny_coco(tmp_path):
    """One 48 x 64 jpg with a bright rectangle, a second instance, a 1-px-wide one and a crowd region."""
    import cv2

    img, _ = _rect_image()
    (tmp_path / "img").mkdir()
    cv2.imwrite(str(tmp_path / "img" / "000000000001.jpg"), img[..., ::-1])

    def poly(x, y, w, h, i, crowd=0):
        return {"id": i, "image_id": 1, "category_id": 1, "iscrowd": crowd, "bbox": [x, y, w, h], "area": w * h,
                "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]}

    anns = [poly(16, 12, 28, 20, 1), poly(2, 2, 10, 8, 2), poly(50, 30, 1, 12, 3), poly(40, 36, 20, 10, 4, crowd=1)]
    ann = {"images": [{"id": 1, "file_name": "000000000001.jpg", "width": 64, "height": 48}],
           "annotations": anns, "categories": [{"id": 1, "name": "thing", "supercategory": "thing"}]}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    return tmp_path / "ann.json", tmp_path / "img"


def test_coco_cli_prints_and_writes_the_baselines_on_the_model_instances(tmp_path, capsys):
    from benchmarks.coco import main

    ann, images = _tiny_coco(tmp_path)
    r = main(["--ann", str(ann), "--images", str(images), "--img-size", "64", "--device", "cpu", "--skip-ar",
              "--json", str(tmp_path / "o.json"), "--no-progress"])
    saved = json.loads((tmp_path / "o.json").read_text())
    assert saved["baselines"] == r["baselines"] and saved["baselines_only"] is False
    b = saved["baselines"]
    assert set(b) == {"box_fill", "box_ellipse", "grabcut"} and all(BASELINE_KEYS <= set(v) for v in b.values())
    assert saved["skipped_crowd"] == 1 and b["box_fill"]["instances"] == b["grabcut"]["instances"] == \
        saved["instances"] >= 2
    assert b["grabcut"]["fallbacks"] >= 1 and "fallback_reasons" in b["grabcut"] and "empty_masks" in b["grabcut"]
    assert saved["miou_1box"] is not None and 0 <= b["box_fill"]["miou_1box"] <= 100
    out = capsys.readouterr().out
    assert "box fill (GT box as mask)" in out and "GrabCut (GT box, 5 iter)" in out and "fell back" in out
    assert "ellipse in the GT box" in out and b["box_ellipse"]["instances"] == b["box_fill"]["instances"]

    # --no-baselines: no rows, a null block; --baselines-only: no model, only the block
    r = main(["--ann", str(ann), "--images", str(images), "--img-size", "64", "--device", "cpu", "--skip-ar",
              "--json", str(tmp_path / "o2.json"), "--no-progress", "--no-baselines"])
    assert r["baselines"] is None and "box fill" not in capsys.readouterr().out
    r = main(["--ann", str(ann), "--images", str(images), "--json", str(tmp_path / "o3.json"), "--no-progress",
              "--baselines-only", "--baselines", "box_fill"])
    assert r["baselines_only"] is True and set(r["baselines"]) == {"box_fill"} and "miou_1box" not in r
    miou_keys = sorted(k for k in BASELINE_KEYS if k.startswith("miou"))
    assert [r["baselines"]["box_fill"][k] for k in miou_keys] == [b["box_fill"][k] for k in miou_keys]
    assert r["random_weights"] is False and r["ckpt"] is None
    assert "Lite-SAM (paper, r640)" in capsys.readouterr().out
    for bad in (["--baselines-only", "--no-baselines"], ["--baselines-only", "--ckpt", str(ann)]):
        with pytest.raises(SystemExit):
            main(["--ann", str(ann), "--images", str(images), "--json", str(tmp_path / "x.json"), *bad])
    assert "--baselines-only" in capsys.readouterr().err


def test_baselines_only_on_a_shared_coco_image(shared_data, tmp_path):
    """Real photograph: the COCO val image with the fewest instances, through the CLI without a model."""
    from benchmarks.coco import main
    from litesam_pl.data.coco import ann_to_mask

    gt_all = json.loads((shared_data / COCO_ANN).read_text())
    count: dict[int, int] = {}
    for a in gt_all["annotations"]:
        count[a["image_id"]] = count.get(a["image_id"], 0) + (0 if a["iscrowd"] else 1)
    image_id = min((n, i) for i, n in count.items() if n > 0)[1]
    sub = {**gt_all, "images": [i for i in gt_all["images"] if i["id"] == image_id],
           "annotations": [a for a in gt_all["annotations"] if a["image_id"] == image_id]}
    ann = tmp_path / "one.json"
    ann.write_text(json.dumps(sub))
    r = main(["--ann", str(ann), "--images", str(shared_data / "coco2017_subset/val2017"), "--baselines-only",
              "--json", str(tmp_path / "o.json"), "--no-progress"])
    img = sub["images"][0]
    anns = [a for a in sub["annotations"] if not a["iscrowd"]]
    want = np.mean([mask_iou(box_fill_mask(a["bbox"], img["height"], img["width"]),
                             ann_to_mask(a, img["height"], img["width"])) for a in anns])
    assert r["images"] == 1 and r["instances"] == len(anns)
    assert r["baselines"]["box_fill"]["miou_1box"] == pytest.approx(100 * want)
    assert 0 <= r["baselines"]["grabcut"]["miou_1box"] <= 100
