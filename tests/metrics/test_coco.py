"""litesam_pl.metrics (miou, coco) and litesam_pl.data.coco: hand-computed cases and pycocotools / lvis itself."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from litesam_pl.data.coco import CocoInstances, ann_to_mask
from litesam_pl.metrics import (
    MIoU,
    coco_from_arrays,
    lvis_ap,
    mask_ap,
    mask_iou,
    mask_ious,
    numpy_float_alias,
    proposal_recall,
    proposal_recall_coco,
    results_from_masks,
    summarize_miou,
)

COCO_ANN = "coco2017_subset/annotations/instances_val2017_subset.json"
LVIS_ANN = "lvis_v0.5_val100/annotations/lvis_v0.5_val100_subset.json"


def square(h: int, w: int, y0: int, x0: int, side: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y0 : y0 + side, x0 : x0 + side] = True
    return m


def rle_str(m: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode()}


# ------------------------------------------------------------------------------------------------ mIoU


def test_mask_iou_shifted_square_by_hand():
    gt = square(40, 40, 10, 10, 10)
    pred = square(40, 40, 10, 12, 10)  # 2 px right: 8x10 overlap, union 100 + 100 - 80
    assert mask_iou(pred, gt) == pytest.approx(80 / 120)
    assert mask_iou(gt, gt) == 1.0
    assert mask_iou(square(40, 40, 0, 0, 5), square(40, 40, 20, 20, 5)) == 0.0
    assert mask_iou(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0  # both empty
    batch = mask_ious(np.stack([pred, gt]), np.stack([gt, gt]))
    np.testing.assert_allclose(batch, [80 / 120, 1.0])
    with pytest.raises(ValueError):
        mask_ious(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))


def test_miou_small_medium_large_split():
    # COCOeval's ranges, both bounds inclusive: 1024 is small AND medium, 9216 medium AND large
    areas = [100, 1024, 2000, 9216, 50000]
    ious = [0.1, 0.2, 0.3, 0.4, 0.5]
    s = summarize_miou(ious, areas)
    assert s["miou"] == pytest.approx(0.3)
    assert s["miou_small"] == pytest.approx((0.1 + 0.2) / 2) and s["n_small"] == 2
    assert s["miou_medium"] == pytest.approx((0.2 + 0.3 + 0.4) / 3) and s["n_medium"] == 3
    assert s["miou_large"] == pytest.approx((0.4 + 0.5) / 2) and s["n_large"] == 2
    only_small = summarize_miou([0.5], [10])
    assert np.isnan(only_small["miou_large"]) and only_small["n_large"] == 0



def test_miou_metric_accumulates_images_and_groups():
    gt = np.stack([square(20, 20, 0, 0, 10), square(20, 20, 5, 5, 4)])
    pred = np.stack([square(20, 20, 0, 0, 10), np.zeros((20, 20), bool)])
    m = MIoU()
    m.update(mask_ious(pred, gt), gt.reshape(2, -1).sum(1))  # areas 100 and 16: both small
    m.update(torch.tensor([0.25]), torch.tensor([5000.0]))  # a tensor, medium
    m.update([0.75])  # no area: counts only in the overall mean
    res = m.compute()
    assert float(res["miou"]) == pytest.approx((1.0 + 0.0 + 0.25 + 0.75) / 4) and int(res["n"]) == 4
    assert float(res["miou_small"]) == pytest.approx(0.5) and int(res["n_small"]) == 2
    assert float(res["miou_medium"]) == pytest.approx(0.25) and int(res["n_medium"]) == 1
    assert math.isnan(float(res["miou_large"])) and int(res["n_large"]) == 0
    assert res["miou"].dtype == torch.float64 and res["n"].dtype == torch.long
    m.reset()
    assert math.isnan(float(m.compute()["miou"]))
    with pytest.raises(ValueError, match="differ in length"):
        m.update([0.5, 0.5], [10.0])


# -------------------------------------------------------------------------------------- AP / AR by hand


def test_mask_ap_shifted_mask_by_hand():
    gt = square(64, 64, 20, 20, 20)  # area 400: small
    pred = square(64, 64, 20, 24, 20)  # 4 px shift: IoU = 320 / 480 = 2/3
    r = mask_ap([{"masks": gt[None], "labels": [3]}], [{"masks": pred[None], "scores": [0.9], "labels": [3]}])
    # matched at IoU thresholds .50 .55 .60 .65 (4 of 10), with precision 1 there, 0 elsewhere
    assert r["ap"] == pytest.approx(0.4)
    assert r["ap50"] == pytest.approx(1.0) and r["ap75"] == pytest.approx(0.0)
    assert r["ap_s"] == pytest.approx(0.4)
    assert np.isnan(r["ap_m"]) and np.isnan(r["ap_l"])
    # a higher-scored false positive halves precision at recall 1 -> AP 0.5 * 0.4
    fp = square(64, 64, 0, 0, 8)
    r2 = mask_ap([{"masks": gt[None], "labels": [3]}],
                 [{"masks": np.stack([fp, pred]), "scores": [0.95, 0.9], "labels": [3, 3]}])
    assert r2["ap"] == pytest.approx(0.2)
    # the wrong category never matches
    r3 = mask_ap([{"masks": gt[None], "labels": [3]}], [{"masks": pred[None], "scores": [0.9], "labels": [4]}])
    assert r3["ap"] == pytest.approx(0.0)
    # no predictions at all: AP 0 where GT exists
    assert mask_ap([{"masks": gt[None], "labels": [3]}], [])["ap"] == 0.0


def test_proposal_recall_boxes_by_hand():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=np.float32)
    props = np.array([[0, 0, 10, 10], [20, 20, 30, 27.3]], dtype=np.float32)  # IoU 1 and 0.73
    r = proposal_recall([gt], [props], max_dets=(1, 1000), iou_type="bbox")
    # per threshold recall = (1 + [0.73 >= t]) / 2; 0.73 passes .50 .55 .60 .65 .70
    assert r["ar@1000"] == pytest.approx((10 + 5) / 20)
    assert r["ar@1"] == pytest.approx(0.5)  # only the top-ranked (first) proposal counts
    # labels are ignored (class-agnostic)
    r2 = proposal_recall([{"boxes": gt, "labels": [1, 2]}], [{"boxes": props, "scores": [0.1, 0.9]}],
                         max_dets=(1, 1000))
    assert r2["ar@1"] == pytest.approx(0.25)  # now the 0.73 proposal ranks first
    masks = np.stack([square(32, 32, 0, 0, 10), square(32, 32, 20, 20, 10)])
    r3 = proposal_recall([masks], [masks[::-1]], iou_type="segm")
    assert r3["ar@100"] == pytest.approx(1.0) and r3["ar@1000"] == pytest.approx(1.0)


def test_coco_from_arrays_roundtrip():
    m = np.stack([square(16, 16, 2, 2, 4), square(16, 16, 8, 8, 6)])
    d = coco_from_arrays([{"masks": m, "labels": [5, 7], "image_id": 42}])
    assert [a["area"] for a in d["annotations"]] == [16.0, 36.0]
    assert d["annotations"][1]["bbox"] == [8.0, 8.0, 6.0, 6.0]
    assert {c["id"] for c in d["categories"]} == {5, 7}
    np.testing.assert_array_equal(mask_utils.decode(d["annotations"][0]["segmentation"]).astype(bool), m[0])


# --------------------------------------------------------------------------------- real COCO / pycocotools


def _gt_results(coco: COCO, skip_crowd: bool = True) -> list[dict]:
    out = []
    for a in coco.dataset["annotations"]:
        if skip_crowd and a["iscrowd"]:
            continue
        img = coco.imgs[a["image_id"]]
        m = ann_to_mask(a, img["height"], img["width"])
        out += results_from_masks(a["image_id"], m[None], [1.0], [a["category_id"]])
    return out


@pytest.fixture(scope="module")
def coco_gt(shared_data):
    path = shared_data / COCO_ANN
    return path, COCO(str(path))


def test_gt_as_predictions_scores_one(coco_gt):
    path, coco = coco_gt
    res = _gt_results(coco)
    ap = mask_ap(path, res)
    for k in ("ap", "ap50", "ap75", "ap_s", "ap_m", "ap_l"):
        assert ap[k] == pytest.approx(1.0), k
    ar = proposal_recall_coco(path, res, max_dets=(100, 1000))
    assert ar["ar@100"] == pytest.approx(1.0) and ar["ar@1000"] == pytest.approx(1.0)


def test_mask_ap_equals_plain_pycocotools_on_perturbed_results(coco_gt, tmp_path):
    path, coco = coco_gt
    rng = np.random.default_rng(0)
    res = []
    for r in _gt_results(coco):
        m = mask_utils.decode({**r["segmentation"], "counts": r["segmentation"]["counts"].encode()}).astype(bool)
        dy, dx = rng.integers(-5, 6, 2)
        m = np.roll(m, (int(dy), int(dx)), axis=(0, 1))
        if rng.random() < 0.2:
            continue
        res += results_from_masks(r["image_id"], m[None], [float(rng.random())], [r["category_id"]])
    file = tmp_path / "res.json"
    file.write_text(json.dumps(res))
    e = COCOeval(coco, coco.loadRes(str(file)), "segm")
    e.evaluate(), e.accumulate(), e.summarize()
    ours = mask_ap(path, str(file))
    assert 0.05 < ours["ap"] < 0.95  # a non-trivial case
    for i, k in enumerate(("ap", "ap50", "ap75", "ap_s", "ap_m", "ap_l")):
        assert ours[k] == pytest.approx(e.stats[i], abs=1e-12), k
    assert ours["ar@100"] == pytest.approx(e.stats[8], abs=1e-12)


def test_ap_restricted_to_evaluated_images(coco_gt):
    path, coco = coco_gt
    res = _gt_results(coco)
    first = sorted(coco.getImgIds())[:3]
    sub = [r for r in res if r["image_id"] in first]
    assert mask_ap(path, sub, img_ids=first)["ap"] == pytest.approx(1.0)
    assert mask_ap(path, sub)["ap"] < 0.5  # the other images' GT would count as misses
    with pytest.raises(ValueError, match="not in the ground truth"):
        mask_ap(path, sub, img_ids=[-5])


def test_coco_reader(shared_data):
    data = CocoInstances(shared_data / COCO_ANN, shared_data / "coco2017_subset/val2017", limit=3)
    assert data.format == "coco" and len(data) == 3 and data.num_missing == 0
    s = data[0]
    assert s.image.dtype == np.uint8 and s.image.shape == (data.imgs[s.image_id]["height"],
                                                          data.imgs[s.image_id]["width"], 3)
    assert s.annotations and all(a["image_id"] == s.image_id for a in s.annotations)
    crowd = next(a for a in data.dataset["annotations"] if a["iscrowd"])  # uncompressed RLE decodes
    img = data.imgs[crowd["image_id"]]
    m = ann_to_mask(crowd, img["height"], img["width"])
    assert m.sum() == sum(crowd["segmentation"]["counts"][1::2])  # (COCO's crowd "area" differs a little)
    with pytest.raises(FileNotFoundError):
        CocoInstances(shared_data / "nope.json", shared_data)


@pytest.mark.parametrize("mode", ["I;16", "L", "P", "RGBA"])
def test_coco_reader_pixels_by_the_one_conversion(tmp_path, mode):
    """``read_rgb`` goes through ``transforms.to_rgb8``'s rule (``pil_rgb8``): a 16-bit image keeps its top 8 bits
    (PIL's own RGB conversion clipped it at 255), every other mode is PIL's RGB conversion."""
    from PIL import Image

    from litesam_pl.data.coco import read_rgb

    rng = np.random.default_rng(0)
    if mode == "I;16":
        arr = rng.integers(0, 65536, (12, 20), dtype=np.uint16)
        im = Image.fromarray(arr)  # mode I;16
        want = np.repeat((arr >> 8).astype(np.uint8)[..., None], 3, axis=2)
    else:
        im = Image.fromarray(rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)).convert(mode)
        want = np.asarray(im.convert("RGB"))
    path = tmp_path / "x.png"
    im.save(path)
    got = read_rgb(path)
    assert got.dtype == np.uint8 and got.flags.writeable
    np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------------------------------------- LVIS


def _tiny_lvis(neg=(), not_exhaustive=()) -> dict:
    return {
        "images": [{"id": 1, "height": 40, "width": 40, "neg_category_ids": list(neg),
                    "not_exhaustive_category_ids": list(not_exhaustive), "coco_url": "x/000000000001.jpg"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": rle_str(square(40, 40, 5, 5, 10)),
                         "area": 100.0, "bbox": [5.0, 5.0, 10.0, 10.0]}],
        "categories": [{"id": 1, "name": "a", "frequency": "f", "synset": "a.n.01"},
                       {"id": 2, "name": "b", "frequency": "r", "synset": "b.n.01"},
                       {"id": 3, "name": "c", "frequency": "c", "synset": "c.n.01"}],
    }


@pytest.mark.parametrize("backend", ["lvis", "faster"])
def test_lvis_federated_rules_by_hand(backend):
    hit = {"image_id": 1, "category_id": 1, "segmentation": rle_str(square(40, 40, 5, 5, 10)), "score": 0.5}
    fp1 = {"image_id": 1, "category_id": 1, "segmentation": rle_str(square(40, 40, 25, 25, 10)), "score": 0.9}
    # an unmatched higher-scored detection halves precision at recall 1
    assert lvis_ap(_tiny_lvis(), [hit, fp1], backend=backend)["ap"] == pytest.approx(0.5)
    # ... unless the category is not exhaustively annotated in that image: then it is ignored
    assert lvis_ap(_tiny_lvis(not_exhaustive=[1]), [hit, fp1], backend=backend)["ap"] == pytest.approx(1.0)
    # a category neither present nor negative is not evaluated; a negative one is (its AP 0 averages in)
    fp2 = {**fp1, "category_id": 2}
    assert lvis_ap(_tiny_lvis(), [hit, fp2], backend=backend)["ap"] == pytest.approx(1.0)
    r = lvis_ap(_tiny_lvis(neg=[2]), [hit, fp2], backend=backend)
    assert r["ap"] == pytest.approx(1.0)  # category 2 has no GT: precision -1, excluded from the mean
    assert r["ap_f"] == pytest.approx(1.0) and np.isnan(r["ap_r"]) and np.isnan(r["ap_c"])


def test_numpy_float_alias_is_scoped():
    assert "float" not in np.__dict__
    with numpy_float_alias():
        assert np.float is float  # type: ignore[attr-defined]
    assert "float" not in np.__dict__


@pytest.fixture(scope="module")
def lvis_data(shared_data):
    from lvis import LVIS

    path = shared_data / LVIS_ANN
    return path, json.loads(path.read_text()), LVIS(str(path))


def test_lvis_gt_as_predictions_scores_one(lvis_data):
    path, d, api = lvis_data
    res = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0,
            "segmentation": rle_str(api.ann_to_mask(a).astype(bool))} for a in d["annotations"]]
    for backend in ("lvis", "faster"):
        r = lvis_ap(path, res, backend=backend)
        for k in ("ap", "ap_s", "ap_m", "ap_l", "ap_r", "ap_c", "ap_f"):
            assert r[k] == pytest.approx(1.0), (backend, k)


def test_lvis_faster_equals_official_on_perturbed_set(lvis_data):
    path, d, api = lvis_data
    rng = np.random.default_rng(1)
    imgs = {i["id"]: i for i in d["images"]}
    res = []
    for a in d["annotations"]:
        if rng.random() < 0.15:
            continue
        m = np.roll(api.ann_to_mask(a).astype(bool), tuple(int(v) for v in rng.integers(-6, 7, 2)), axis=(0, 1))
        res.append({"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": rle_str(m),
                    "score": float(rng.random())})
        if rng.random() < 0.4:  # false positives in negative, not-exhaustive and unknown categories
            im = imgs[a["image_id"]]
            pool = im["neg_category_ids"] + im["not_exhaustive_category_ids"] + [int(rng.integers(1, 1231))]
            res.append({"image_id": a["image_id"], "category_id": int(rng.choice(pool)),
                        "segmentation": rle_str(np.roll(m, (15, 15), axis=(0, 1))), "score": float(rng.random())})
    ids = sorted(imgs)[:30]  # a subset keeps the official (pure Python) evaluator quick
    official = lvis_ap(path, res, backend="lvis", img_ids=ids)
    faster = lvis_ap(path, res, backend="faster", img_ids=ids)
    assert 0.05 < official["ap"] < 0.95
    for k, v in official.items():
        if np.isnan(v):
            assert np.isnan(faster[k]), k
        else:
            assert faster[k] == pytest.approx(v, abs=1e-6), k
    # the per-image cap (LVIS: top 300 by score) is applied the same way
    small = {k: lvis_ap(path, res, backend=b, max_dets=2, img_ids=ids)["ap"] for k, b in (("o", "lvis"), ("f", "faster"))}
    assert small["o"] == pytest.approx(small["f"], abs=1e-6) and small["o"] < official["ap"]


def test_lvis_reader_maps_coco_urls_and_counts_missing(shared_data):
    data = CocoInstances(shared_data / LVIS_ANN, shared_data / "lvis_v0.5_val100/val2017")
    assert data.format == "lvis"
    assert len(data) == 2 and data.num_missing == 64
    assert sorted(p.name for p in data.files.values()) == ["000000346638.jpg", "000000359937.jpg"]
    s = data[0]
    assert all(a["iscrowd"] == 0 for a in s.annotations)
    assert data.masks(s).shape == (len(s.annotations), s.height, s.width)


def test_mask_ap_from_ious_equals_mask_ap_on_the_masks():
    """Issue 16 #6: distributed validation gathers per-image IoU matrices, scores and areas instead of masks; the
    AP from them is pycocotools' AP on the masks themselves (area ranges included)."""
    import torch

    from litesam_pl.metrics.coco import mask_ap, mask_ap_from_ious
    from litesam_pl.metrics.recall import pred_gt_iou_matrix

    rng = np.random.default_rng(0)
    gts, preds, items = [], [], []
    for img in range(6):
        H, W = 120, 160
        K = int(rng.integers(1, 6))
        g = np.zeros((K, H, W), bool)
        p = np.zeros((K, H, W), bool)
        for k in range(K):
            s = int(rng.choice([6, 20, 70]))  # small, medium and large objects
            y, x = int(rng.integers(0, H - s)), int(rng.integers(0, W - s))
            g[k, y:y + s, x:x + s] = True
            dy, dx = (int(v) for v in rng.integers(-s // 3, s // 3 + 1, 2))
            p[k, max(0, y + dy):y + dy + s, max(0, x + dx):x + dx + s] = True
        if img == 3:
            p[0] = False  # an empty prediction
        scores = rng.random(K).astype(np.float32)
        gts.append({"masks": g, "image_id": img})
        preds.append({"masks": p, "scores": scores, "image_id": img})
        items.append({"ious": pred_gt_iou_matrix(torch.from_numpy(p), torch.from_numpy(g)).numpy(), "scores": scores,
                      "gt_areas": g.sum((1, 2)), "dt_areas": p.sum((1, 2))})
    want = mask_ap(gts, preds, iou_type="segm")
    got = mask_ap_from_ious(items)
    assert set(want) == set(got)
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-9, nan_ok=True), k
    assert 0 < got["ap"] < 1
