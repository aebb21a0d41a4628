"""``LiteSamEverything`` (litesam_pl.inference.everything): SamAutomaticMaskGenerator's interface over
``segment_everything``, on a tiny random-weight model."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import litesam_pl
from litesam_pl.inference import everything
from litesam_pl.inference.everything import LiteSamEverything, remove_small_regions_and_dedup
from litesam_pl.inference.postprocess import decode_rle
from litesam_pl.inference.segevery import FILTERS, SegEveryResult, segment_everything

AMG_KEYS = {"segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"}
LOOSE = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return litesam_pl.create_model("litesam", img_size=64).eval()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    import skimage.data

    return np.array(Image.fromarray(skimage.data.astronaut()).resize((60, 45)))  # HxWx3 uint8, not square


def _same_records(a, b):
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for k in ra:
            if isinstance(ra[k], np.ndarray):
                np.testing.assert_array_equal(ra[k], rb[k])
            elif k == "point_coords":
                np.testing.assert_allclose(ra[k], rb[k], rtol=1e-6)
            else:
                assert ra[k] == pytest.approx(rb[k]), k


def test_exported_from_the_package():
    assert litesam_pl.LiteSamEverything is LiteSamEverything
    assert litesam_pl.inference.LiteSamEverything is LiteSamEverything
    assert "LiteSamEverything" in litesam_pl.__all__ and "LiteSamEverything" in litesam_pl.inference.__all__
    assert "litesam" in litesam_pl.list_models()
    with pytest.raises(AttributeError):
        litesam_pl.NoSuchName  # noqa: B018


def test_filters_off_equals_segment_everything(model, image):
    gen = LiteSamEverything(model, **LOOSE, points_per_batch=7)
    records = gen.generate(image)
    assert records, "with the filters off the random model still gives masks"
    expected = segment_everything(model, image, **LOOSE, chunk_size=7)
    _same_records(records, expected)
    assert gen.options()["chunk_size"] == 7 and gen.points_per_batch == 7
    # grid prompts: SAM's exact keys (no ppn_score), and the same as segment_everything
    grid = LiteSamEverything(model, prompts="grid", points_per_side=4, **LOOSE)
    recs = grid.generate(image)
    assert recs and all(set(r) == AMG_KEYS for r in recs)
    _same_records(recs, segment_everything(model, image, prompts="grid", points_per_side=4, **LOOSE))


def test_array_path_and_pil_give_the_same_records(model, image, tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(image).save(path)
    gen = LiteSamEverything(model, **LOOSE)
    ref = gen.generate(image)
    assert ref
    _same_records(gen.generate(str(path)), ref)
    _same_records(gen.generate(path), ref)
    with Image.open(path) as pil:
        _same_records(gen.generate(pil), ref)
    _same_records(gen.generate(Image.fromarray(image)), ref)
    _same_records(gen.generate(torch.from_numpy(image).permute(2, 0, 1)), ref)  # a [3, H, W] tensor too
    # a model file works as the model
    from litesam_pl.inference.export import export_weights

    export_weights(model, tmp_path / "m.pt")
    _same_records(LiteSamEverything(str(tmp_path / "m.pt"), **LOOSE).generate(image), ref)


def test_generate_batch_and_last_stats(model, image):
    gen = LiteSamEverything(model, **LOOSE)
    flipped = np.ascontiguousarray(image[:, ::-1])
    batch = gen.generate_batch([image, flipped])
    assert len(batch) == 2
    stats = gen.last_stats
    assert set(stats) >= {"prompts", "masks_before_nms", "filters"} and len(stats["filters"]) == 2
    for recs, f in zip(batch, stats["filters"]):
        assert set(f["removed"]) == set(FILTERS)
        assert f["candidates"] == f["kept"] + sum(f["removed"].values())
        assert f["kept"] == len(recs)
    for got, exp in zip(batch, segment_everything(model, [image, flipped], **LOOSE)):
        _same_records(got, exp)
    gen.generate(flipped)
    assert len(gen.last_stats["filters"]) == 1  # the last call's stats only
    # SAM's default filters: a random model's masks are removed, and the counts say by which filter
    strict = LiteSamEverything(model)
    recs = strict.generate(image)
    f = strict.last_stats["filters"][0]
    assert f["kept"] == len(recs) and f["candidates"] == f["kept"] + sum(f["removed"].values())
    assert f["thresholds"]["pred_iou_thresh"] == 0.88
    with pytest.raises(TypeError, match="generate_batch"):
        gen.generate([image, image])
    assert gen.generate_batch([]) == []


def test_output_modes(model, image):
    ref = LiteSamEverything(model, **LOOSE).generate(image)
    assert ref
    h, w = image.shape[:2]
    for r in ref:
        assert set(r) == AMG_KEYS | {"ppn_score"}
        seg = r["segmentation"]
        assert isinstance(seg, np.ndarray) and seg.dtype == bool and seg.shape == (h, w)
        assert r["area"] == int(seg.sum()) and len(r["bbox"]) == 4 and r["crop_box"] == [0, 0, w, h]
        assert isinstance(r["predicted_iou"], float) and isinstance(r["stability_score"], float)
        assert isinstance(r["ppn_score"], float) and len(r["point_coords"]) == 1
    for mode, counts_type in (("uncompressed_rle", list), ("coco_rle", str)):
        recs = LiteSamEverything(model, **LOOSE, output_mode=mode).generate(image)
        assert len(recs) == len(ref)
        for r, rr in zip(recs, ref):
            assert isinstance(r["segmentation"], dict) and list(r["segmentation"]["size"]) == [h, w]
            assert isinstance(r["segmentation"]["counts"], counts_type)
            np.testing.assert_array_equal(decode_rle(r["segmentation"]), rr["segmentation"])
            assert r["bbox"] == rr["bbox"] and r["area"] == rr["area"]


@pytest.mark.parametrize("bad", [
    {"points_per_side": 0}, {"points_per_side": 2.5}, {"points_per_batch": 0}, {"pred_iou_thresh": 1.5},
    {"pred_iou_thresh": "high"}, {"stability_score_thresh": -0.1}, {"stability_score_offset": float("nan")},
    {"box_nms_thresh": 2}, {"output_mode": "tensors"}, {"output_mode": "rle"}, {"min_mask_region_area": -1},
    {"min_mask_region_area": 1.5}, {"prompts": "boxes"}, {"top_n": 0}, {"score_threshold": 3.0},
    {"prompt_type": "scribble"}, {"max_masks": 0}, {"nms": "soft"}, {"rank_by": "area"}, {"decoder": "onnx"},
    {"autocast_dtype": "bf16"}, {"multimask_output": 3}, {"image_batch_size": 0},
    {"prompts": "grid", "rank_by": "ppn_score"},
])
def test_bad_options_raise_one_line_value_errors(model, bad):
    with pytest.raises(ValueError) as err:
        LiteSamEverything(model, **bad)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("LiteSamEverything: ")
    assert list(bad)[-1] in msg


def test_autoppn_needs_an_autoppn_head():
    backbone_only = litesam_pl.create_model("litesam", img_size=64, autoppn=False)
    with pytest.raises(ValueError, match="prompts='grid'") as err:
        LiteSamEverything(backbone_only)
    assert "\n" not in str(err.value)
    LiteSamEverything(backbone_only, prompts="grid")  # fine
    with pytest.raises(TypeError, match="model must be"):
        LiteSamEverything(42)


# ------------------------------------------------------------------------------------------ min_mask_region_area
def _blob_with_island_and_hole(h=40, w=50):
    m = np.zeros((h, w), dtype=bool)
    m[5:30, 5:35] = True
    m[15:17, 15:17] = False  # a 4-pixel hole
    m[35:37, 42:44] = True  # a 4-pixel island
    return m


def test_remove_small_regions_as_sam():
    from segment_anything.utils.amg import remove_small_regions

    blob = _blob_with_island_and_hole()
    clean = np.zeros_like(blob)
    clean[5:30, 5:35] = True
    far = np.zeros_like(blob)
    far[32:40, 0:10] = True  # no small parts, away from the others
    masks = torch.from_numpy(np.stack([far, blob, clean]))  # ranked: far, blob, clean
    new, keep = remove_small_regions_and_dedup(masks, 10, 0.7)
    np.testing.assert_array_equal(new[1].numpy(), clean)  # island removed, hole filled: SAM's result
    ref, _ = remove_small_regions(remove_small_regions(blob, 10, "holes")[0], 10, "islands")
    np.testing.assert_array_equal(new[1].numpy(), ref)
    # the changed blob now duplicates the unchanged clean mask: NMS keeps the unchanged one (as SAM), rank order kept
    assert keep.tolist() == [0, 2]
    _, keep = remove_small_regions_and_dedup(masks, 10, None)
    assert keep.tolist() == [0, 1, 2]
    _, keep = remove_small_regions_and_dedup(masks, 3, 0.7)  # below the 4-pixel parts: nothing changes, and
    assert keep.tolist() == [0, 1, 2]  # the island stretches the blob's box: box IoU with clean's 0.48 < 0.7
    twin = torch.stack([masks[2], masks[2].clone(), masks[0]])
    _, keep = remove_small_regions_and_dedup(twin, 10, 0.7)
    assert keep.tolist() == [0, 2]  # of two unchanged duplicates the better-ranked one stays


def test_generate_removes_a_tiny_island(model, image, monkeypatch):
    """The records of a mask with a tiny island and hole lose them, with the box and area recomputed."""
    h, w = 40, 50
    blob = torch.from_numpy(_blob_with_island_and_hole(h, w))
    other = torch.zeros(h, w, dtype=torch.bool)
    other[0:3, 40:50] = True
    calls = []

    def fake(segevery, images, output_sizes=None, **kw):
        calls.append(segevery.options)
        masks = torch.stack([blob, other])
        return SegEveryResult([{"masks": masks, "iou_preds": torch.tensor([0.9, 0.8]),
                                "stability_scores": torch.tensor([0.97, 0.96]), "boxes": torch.zeros(2, 4),
                                "points": torch.tensor([[10.0, 10.0], [45.0, 1.0]]),
                                "ppn_scores": torch.tensor([0.5, 0.4])} for _ in images])

    monkeypatch.setattr(everything.SegEvery, "run", fake)
    recs = LiteSamEverything(model, min_mask_region_area=10).generate(np.zeros((h, w, 3), np.uint8))
    assert calls[0].output_mode == "tensors"
    assert len(recs) == 2 and set(recs[0]) == AMG_KEYS | {"ppn_score"}
    seg = recs[0]["segmentation"]
    assert not seg[35:37, 42:44].any() and seg[15:17, 15:17].all()
    assert recs[0]["bbox"] == [5, 5, 29, 24] and recs[0]["area"] == 25 * 30  # XYWH as SAM (inclusive max - min)
    assert recs[0]["predicted_iou"] == pytest.approx(0.9) and recs[0]["ppn_score"] == pytest.approx(0.5)
    recs = LiteSamEverything(model, min_mask_region_area=10, output_mode="coco_rle").generate(np.zeros((h, w, 3),
                                                                                                        np.uint8))
    np.testing.assert_array_equal(decode_rle(recs[0]["segmentation"]), seg)


def test_min_mask_region_area_on_the_model(model, image):
    """End to end: no record keeps a region or a hole below the area (SAM's 8-connectivity)."""
    area = 30
    recs = LiteSamEverything(model, **LOOSE, min_mask_region_area=area).generate(image)
    assert recs
    for r in recs:
        m = r["segmentation"].astype(np.uint8)
        for working in (m, 1 - m):
            n, _, st, _ = cv2.connectedComponentsWithStats(working, 8)
            sizes = st[1:, -1]
            if working is m:
                assert len(sizes) == 1 or sizes.min() >= area
            else:
                assert (sizes >= area).all()
        assert r["area"] == int(m.sum())
