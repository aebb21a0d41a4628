"""SegEvery (litesam_pl.inference.segevery / postprocess / sam_compat) on hand-made inputs and a tiny model."""
from __future__ import annotations

import copy
import numpy as np
import pytest
import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor
from segment_anything.utils.amg import calculate_stability_score

import litesam_pl
from litesam_pl.inference.postprocess import (
    box_nms,
    decode_rle,
    greedy_nms_from_iou,
    mask_iou_matrix,
    mask_nms,
    masks_to_boxes,
    stability_score,
)
from litesam_pl.inference.sam_compat import grid_points
from litesam_pl.inference.segevery import FILTERS, SegEvery, segment_everything

AMG_KEYS = {"segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"}


LOOSE = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0)


def _masks_and_stats(model, images, **options):
    """``SegEvery(model, **options).run(images)``'s masks and stats (what ``segment_everything`` does not count)."""
    result = SegEvery(model, **options).run(images, collect_timings=False)
    return result.masks, result.stats


# ---------------------------------------------------------------------------------------------- hand-made NMS
def _square(h, w, y0, x0, y1, x1):
    m = torch.zeros(h, w, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def test_mask_nms_is_greedy_not_fast_nms():
    # A (best) overlaps B (IoU 0.8); B overlaps C (IoU 0.8) but A and C barely overlap.
    # Greedy NMS at 0.5 keeps A and C (C's only suppressor B is itself suppressed); "fast NMS" would drop C.
    a = _square(10, 30, 0, 0, 10, 10)
    b = _square(10, 30, 0, 1, 10, 11)
    c = _square(10, 30, 0, 2, 10, 12)
    d = _square(10, 30, 0, 20, 10, 30)  # disjoint
    masks = torch.stack([c, a, d, b])
    scores = torch.tensor([0.7, 0.9, 0.1, 0.8])
    iou = mask_iou_matrix(masks)
    assert iou[1, 3] == pytest.approx(9 / 11)  # A-B
    assert iou[0, 1] == pytest.approx(8 / 12)  # C-A
    keep = mask_nms(masks, scores, 0.7)
    assert keep.tolist() == [1, 0, 2]  # A, C, D by score; B suppressed by A
    keep = mask_nms(masks, scores, 0.6)
    assert keep.tolist() == [1, 2]  # C now suppressed by A (IoU 0.667 > 0.6)


def test_greedy_nms_from_iou_matches_loop():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        k = 40
        x = torch.rand(k, k, generator=g)
        iou = (x + x.t()) / 2
        iou.fill_diagonal_(1.0)
        keep = greedy_nms_from_iou(iou, 0.6)
        ref = []
        for i in range(k):
            if all(iou[i, j] <= 0.6 for j in ref):
                ref.append(i)
        assert keep.nonzero()[:, 0].tolist() == ref


def test_box_nms_hand_made():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    assert box_nms(boxes, scores, 0.5).tolist() == [3, 2]


def test_masks_to_boxes_and_stability():
    m = torch.stack([_square(8, 9, 2, 3, 5, 7), torch.zeros(8, 9, dtype=torch.bool)])
    assert masks_to_boxes(m).tolist() == [[3, 2, 6, 4], [0, 0, 0, 0]]
    logits = torch.randn(5, 16, 16) * 3
    torch.testing.assert_close(stability_score(logits, 0.0, 1.0), calculate_stability_score(logits, 0.0, 1.0))


def test_point_nms_exact_survivors():
    """AutoPPN.decode: Point-NMS keeps local maxima only, ranked, thresholded; points at cell centres."""
    from litesam_pl.models.autoppn import AutoPPN

    heat = torch.full((1, 1, 8, 8), -6.0)
    heat[0, 0, 2, 2] = 3.0
    heat[0, 0, 2, 3] = 2.0  # neighbour of the first peak: suppressed
    heat[0, 0, 6, 5] = 1.0
    heat[0, 0, 7, 7] = 0.5  # 2 cells from (6, 5): its own local max
    boxes = torch.full((1, 1, 4, 8, 8), 0.0625)  # 4 px on each side for S = 64
    out = AutoPPN.decode({"heatmap_logits": heat, "boxes": boxes}, 64, top_n=5, score_threshold=0.5, nms_kernel=3)
    valid = out["valid"][0]
    assert valid.tolist() == [True, True, True, False, False]
    assert out["points"][0][valid].tolist() == [[20.0, 20.0], [44.0, 52.0], [60.0, 60.0]]
    assert out["boxes"][0][0].tolist() == [16.0, 16.0, 24.0, 24.0]
    torch.testing.assert_close(out["scores"][0][valid], torch.sigmoid(torch.tensor([3.0, 1.0, 0.5])))


def test_grid_points_match_amg():
    pts = grid_points(4, (60, 80))
    assert pts.shape == (16, 2)
    assert pts[0].tolist() == [10.0, 7.5] and pts[-1].tolist() == [70.0, 52.5]


# ---------------------------------------------------------------------------------------------- tiny model
TINY_MODEL_SIZE = 128  # the conftest's tiny_model fixture


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    a = np.zeros((96, 128, 3), np.uint8)
    a[20:70, 30:90] = (200, 40, 40)
    a += rng.integers(0, 20, a.shape, dtype=np.uint8)
    b = rng.integers(0, 255, (128, 80, 3), dtype=np.uint8)
    return [a, b]


def _validate_records(records, image, rle: bool, keys=AMG_KEYS):
    h, w = image.shape[:2]
    for r in records:
        assert set(r) == keys
        seg = decode_rle(r["segmentation"]) if rle else r["segmentation"]
        assert isinstance(seg, np.ndarray) and seg.dtype == bool and seg.shape == (h, w)
        assert isinstance(r["area"], int) and r["area"] == int(seg.sum()) > 0
        ys, xs = np.nonzero(seg)
        # SAM's AMG convention: xyxy with inclusive max indices, then XYWH = (x0, y0, x1 - x0, y1 - y0)
        assert r["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]
        assert all(isinstance(v, int) for v in r["bbox"])
        assert isinstance(r["predicted_iou"], float) and isinstance(r["stability_score"], float)
        (px, py), = r["point_coords"]
        assert 0 <= px <= w and 0 <= py <= h
        assert r["crop_box"] == [0, 0, w, h]


@pytest.mark.parametrize("prompts", ["autoppn", "grid"])
def test_records_validate(tiny_model, images, prompts):
    kw = dict(prompts=prompts, top_n=24, score_threshold=0.0, points_per_side=5, box_nms_thresh=0.95, **LOOSE)
    bin_recs, stats = _masks_and_stats(tiny_model, images, output_mode="binary_mask", **kw)
    rle_recs = segment_everything(tiny_model, images, output_mode="coco_rle", **kw)
    assert stats["prompts"] == ([24, 24] if prompts == "autoppn" else [25, 25])
    assert len(bin_recs) == 2
    for img, rb, rr in zip(images, bin_recs, rle_recs):
        assert len(rb) == len(rr) > 0
        keys = AMG_KEYS | {"ppn_score"} if prompts == "autoppn" else AMG_KEYS  # grid records: exactly AMG's
        _validate_records(rb, img, rle=False, keys=keys)
        _validate_records(rr, img, rle=True, keys=keys)
        for x, y in zip(rb, rr):  # the RLE decodes to the binary mask of the same run
            assert np.array_equal(decode_rle(y["segmentation"]), x["segmentation"])
        ious = [r["predicted_iou"] for r in rb]
        assert ious == sorted(ious, reverse=True)


def test_single_image_and_tensor_input(tiny_model, images):
    one = segment_everything(tiny_model, images[0], prompts="grid", points_per_side=3, **LOOSE)
    assert isinstance(one, list) and (not one or isinstance(one[0], dict))
    t = torch.from_numpy(images[0]).permute(2, 0, 1)
    two = segment_everything(tiny_model, t[None].float(), prompts="grid", points_per_side=3, **LOOSE)
    assert len(two) == 1 and len(two[0]) == len(one)


def test_chunking_and_stock_decoder_give_same_result(tiny_model, images):
    kw = dict(prompts="autoppn", top_n=20, score_threshold=0.0, output_mode="tensors", **LOOSE)
    a = segment_everything(tiny_model, images, chunk_size=None, **kw)
    b = segment_everything(tiny_model, images, chunk_size=3, image_batch_size=1, **kw)
    c = segment_everything(tiny_model, images, chunk_size=7, decoder="stock", **kw)
    for x, y, z in zip(a, b, c):
        assert torch.equal(x["masks"], y["masks"]) and torch.equal(x["masks"], z["masks"])
        assert (x["iou_preds"] - z["iou_preds"]).abs().max() < 1e-4


def test_tensors_mode_probability_maps(tiny_model, images):
    out = segment_everything(tiny_model, images[1], prompts="grid", points_per_side=4, output_mode="tensors",
                             return_logits=True, **LOOSE)
    k = out["masks"].shape[0]
    assert k > 0 and out["masks"].shape[1:] == images[1].shape[:2]
    assert out["mask_probs"].shape == out["masks"].shape
    assert torch.equal(out["masks"], out["mask_logits"] > 0)
    assert float(out["mask_probs"].min()) >= 0 and float(out["mask_probs"].max()) <= 1
    assert out["low_res_logits"].shape[0] == k and out["boxes"].shape == (k, 4)
    assert torch.equal(out["areas"], out["masks"].flatten(1).sum(1))


def test_ar1000_protocol_ranking(tiny_model, images):
    out = segment_everything(tiny_model, images[0], prompts="autoppn", top_n=24, score_threshold=0.0,
                             box_nms_thresh=0.9, rank_by="iou_stability_mean", output_mode="tensors",
                             max_masks=5, **LOOSE)
    s = out["scores"]
    assert 0 < s.numel() <= 5
    torch.testing.assert_close(s, 0.5 * (out["iou_preds"] + out["stability_scores"]))
    assert torch.all(s[:-1] >= s[1:])


def test_one_padding_cell_rule_for_targets_autoppn_and_the_low_res_frame(tiny_model):
    """A cell is image when its centre is (``data.geometry.inside_cells``): the data layer's AutoPPN grid
    (``grid_valid``), AutoPPN's decoding (``models.autoppn.cells_inside``) and SegEvery's low-res mask frame apply
    the same rule. On a 30 x 128 image (S = 128) the bottom rows end inside a cell: the stride-8 grid has rows
    0..3 (row 3's centre 28 < 30; row 4 covers 32..40), the stride-4 frame rows 0..6 (row 7 covers 28..32 but its
    centre 30 is padding; the earlier "any overlap" crop took 8 rows)."""
    from litesam_pl.data.geometry import grid_valid, inside_cells
    from litesam_pl.inference.segevery_masks import valid_frame
    from litesam_pl.models.autoppn import cells_inside

    h, w, s = 30, 128, TINY_MODEL_SIZE
    assert grid_valid((h, w), s, 8) == (inside_cells(h, s, s // 8), inside_cells(w, s, s // 8)) == (4, 16)
    inside = cells_inside(torch.tensor([[h, w]]), (s // 8, s // 8), (float(s), float(s)))[0]
    assert tuple(int(v) for v in (inside.any(1).sum(), inside.any(0).sum())) == (4, 16)
    assert valid_frame((h, w), s, (s // 4, s // 4)) == grid_valid((h, w), s, 4) == (7, 32)
    img = np.full((h, w, 3), 128, np.uint8)
    out = segment_everything(tiny_model, img, prompts="grid", points_per_side=4, output_mode="tensors",
                             nms="none", **LOOSE)
    assert out["low_res_logits"].shape[1:] == (7, 32)


def test_autoppn_prompts_stay_inside_the_image(tiny_model):
    img = np.full((32, 128, 3), 128, np.uint8)  # resized to 32 x 128: 3/4 of the input frame is padding
    out = segment_everything(tiny_model, img, prompts="autoppn", top_n=30, score_threshold=0.0,
                             output_mode="tensors", nms="none", **LOOSE)
    assert out["points"].shape[0] > 0
    assert float(out["points"][:, 1].max()) <= 32 and float(out["points"][:, 0].max()) <= 128


def test_thresholds_filter(tiny_model, images):
    strict = segment_everything(tiny_model, images, prompts="grid", points_per_side=4, pred_iou_thresh=2.0)
    assert strict == [[], []]


def test_bad_options(tiny_model, images):
    with pytest.raises(ValueError, match="prompts"):
        segment_everything(tiny_model, images, prompts="dense")
    with pytest.raises(ValueError, match="output_mode"):
        segment_everything(tiny_model, images, output_mode="png")
    with pytest.raises(ValueError, match="HxWx3"):
        segment_everything(tiny_model, [np.zeros((8, 8), np.uint8)])
    no_ppn = litesam_pl.create_model("litesam", img_size=128, autoppn=False).eval()
    with pytest.raises(ValueError, match="AutoPPN"):
        segment_everything(no_ppn, images, prompts="autoppn")


def test_top_level_function_and_sam_wrappers(tiny_model, images):
    """``litesam_pl.segment_everything`` is this function; SamAutomaticMaskGenerator and SamPredictor drive our
    model."""
    assert litesam_pl.segment_everything is segment_everything
    recs = litesam_pl.segment_everything(tiny_model, images[0], prompts="grid", points_per_side=3, **LOOSE)
    assert all(set(r) == AMG_KEYS for r in recs)
    amg = SamAutomaticMaskGenerator(tiny_model, points_per_side=4, **LOOSE)
    amg_recs = amg.generate(images[0])
    assert all(set(r) == AMG_KEYS for r in amg_recs)
    pred = SamPredictor(tiny_model)
    pred.set_image(images[0])
    masks, scores, low = pred.predict(point_coords=np.array([[60, 40]]), point_labels=np.array([1]),
                                      box=np.array([30, 20, 90, 70]), multimask_output=False)
    assert masks.shape == (1, 96, 128) and scores.shape == (1,)


def test_survivor_only_upscaling_matches_stock(tiny_model, images):
    """The fast path upscales only prompts whose predicted IoU passes; the result equals the stock path."""
    base = dict(prompts="grid", points_per_side=5, output_mode="tensors", stability_score_thresh=0.0, nms="none")
    # a positive IoU-head bias so the median predicted IoU is > 0 (a threshold <= 0 switches the filter off, as SAM's)
    model = copy.deepcopy(tiny_model)
    model.mask_decoder.iou_prediction_head.layers[-1].bias.data += 1.0
    allm = segment_everything(model, images[1], pred_iou_thresh=0.0, decoder="stock", **base)
    thresh = float(allm["iou_preds"].median())
    assert thresh > 0
    fast, _ = _masks_and_stats(model, images[1], pred_iou_thresh=thresh, **base)  # counting: all prompts' IoU
    stock = segment_everything(model, images[1], pred_iou_thresh=thresh, decoder="stock", **base)
    assert 0 < fast["masks"].shape[0] < allm["masks"].shape[0]
    assert torch.equal(fast["masks"], stock["masks"])
    assert torch.equal(fast["points"], stock["points"])
    assert (fast["iou_preds"] > thresh).all()


def test_bf16_autocast_path(tiny_model, images):
    out = segment_everything(tiny_model, images[0], prompts="autoppn", top_n=12, score_threshold=0.0,
                             output_mode="tensors", autocast_dtype=torch.bfloat16, **LOOSE)
    assert out["masks"].dtype == torch.bool and out["masks"].shape[1:] == images[0].shape[:2]


# ---------------------------------------------------------------------------------- AutoPPN score, prompt forms
def _decode_like_segevery(model, image, top_n, score_threshold):
    """``AutoPPN.decode`` on the image as ``segment_everything`` preprocesses it -> (points, scores) of valid rows."""
    from litesam_pl.inference.sam_compat import as_image_list, preprocess_images

    prep = preprocess_images(model, as_image_list(image)[0], torch.device("cpu"))
    with torch.no_grad():
        dec = model.autoppn.decode(model.autoppn(model.image_encoder(prep.pixels)), model.image_encoder.img_size,
                                   top_n=top_n, score_threshold=score_threshold, input_sizes=prep.input_sizes)
    v = dec["valid"][0]
    return dec["points"][0][v], dec["scores"][0][v]


def test_records_carry_the_autoppn_score_of_their_prompt(tiny_model, images):
    image = images[0]  # 96 x 128: its input size is its own size, so record points are decode's points
    points, scores = _decode_like_segevery(tiny_model, image, 24, 0.0)
    kw = dict(prompts="autoppn", top_n=24, score_threshold=0.0, box_nms_thresh=0.95, **LOOSE)
    recs = segment_everything(tiny_model, image, **kw)
    assert recs
    for r in recs:
        assert isinstance(r["ppn_score"], float)
        same = (points == torch.tensor(r["point_coords"][0])).all(1)  # one cell may be proposed by several groups
        assert same.any()
        assert torch.isclose(scores[same], torch.tensor(r["ppn_score"]), atol=1e-6).any()
    t = segment_everything(tiny_model, image, output_mode="tensors", **kw)
    assert t["ppn_scores"].tolist() == [r["ppn_score"] for r in recs]
    grid = segment_everything(tiny_model, image, prompts="grid", points_per_side=3, output_mode="tensors", **LOOSE)
    assert "ppn_scores" not in grid  # grid prompts have no AutoPPN score (records: no ppn_score key)


def test_rank_by_ppn_score(tiny_model, images):
    out = segment_everything(tiny_model, images[0], prompts="autoppn", top_n=24, score_threshold=0.0,
                             rank_by="ppn_score", output_mode="tensors", **LOOSE)
    assert out["ppn_scores"].numel() > 0
    assert torch.equal(out["scores"], out["ppn_scores"]) and torch.all(out["scores"][:-1] >= out["scores"][1:])
    with pytest.raises(ValueError, match="ppn_score"):
        segment_everything(tiny_model, images[0], prompts="grid", rank_by="ppn_score")


def test_default_prompt_form_and_output_come_from_prompt_forms(tiny_model, images, monkeypatch):
    """SegEvery's default prompt is ``SEGEVERY_PROMPT_FORM``, read from ``multimask_output_for`` of its form."""
    import inspect

    import litesam_pl.inference.segevery as segevery
    from litesam_pl.models.prompt_forms import SEGEVERY_PROMPT_FORM, multimask_output_for

    assert inspect.signature(segment_everything).parameters["prompt_type"].default == SEGEVERY_PROMPT_FORM
    seen = []
    real = segevery.stock_decode

    def spy(*args, **kwargs):
        seen.append(args[4])  # stock_decode(mask_decoder, prompt_encoder, emb, sparse, multimask_output, boxes)
        return real(*args, **kwargs)

    monkeypatch.setattr(segevery, "stock_decode", spy)
    for prompts, form in (("autoppn", SEGEVERY_PROMPT_FORM), ("grid", "point")):
        seen.clear()
        segment_everything(tiny_model, images[0], prompts=prompts, top_n=8, points_per_side=3, decoder="stock",
                           score_threshold=0.0, **LOOSE)
        assert seen and set(seen) == {multimask_output_for(form)}, (prompts, seen)
    for form in ("point", "box", "point+box"):
        seen.clear()
        segment_everything(tiny_model, images[0], prompt_type=form, top_n=8, decoder="stock", score_threshold=0.0,
                           **LOOSE)
        assert set(seen) == {multimask_output_for(form)}, form


# ---------------------------------------------------------------------------------------------- filter counts
def _check_funnel(f, records):
    """The per-image filter counts add up: proposals -> prompts -> masks -> each filter in order -> kept."""
    assert f["proposals"] == f["prompts"] + f["removed_score_threshold"]
    assert f["candidates"] == f["prompts"] * f["masks_per_prompt"]
    assert tuple(f["removed"]) == FILTERS
    assert f["candidates"] == f["kept"] + sum(f["removed"].values())
    assert all(v >= 0 for v in f["removed"].values()) and f["removed_score_threshold"] >= 0
    assert f["kept"] == len(records)


@pytest.mark.parametrize("kw", [
    dict(),  # SAM's defaults: random weights keep nothing
    dict(top_n=24, score_threshold=0.0, max_masks=2, **LOOSE),
    dict(prompts="grid", points_per_side=4, box_nms_thresh=0.9, **LOOSE),
    dict(prompts="grid", points_per_side=4, decoder="stock", pred_iou_thresh=0.05, stability_score_thresh=0.0),
    dict(top_n=24, score_threshold=0.999),  # AutoPPN's score threshold removes every proposal
    dict(prompts="grid", points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.5),
])
def test_stats_count_what_each_filter_removed(tiny_model, images, kw):
    recs, stats = _masks_and_stats(tiny_model, images, **kw)
    assert len(stats["filters"]) == len(stats["prompts"]) == len(stats["masks_before_nms"]) == 2
    for f, r, n_prompts, before_nms in zip(stats["filters"], recs, stats["prompts"], stats["masks_before_nms"]):
        _check_funnel(f, r)
        assert f["prompts"] == n_prompts  # the old keys keep their meaning
        assert before_nms == f["candidates"] - sum(f["removed"][k] for k in ("pred_iou", "stability", "empty"))
        assert f["thresholds"]["pred_iou_thresh"] == kw.get("pred_iou_thresh", 0.88)
    f = stats["filters"][0]
    if not kw:
        assert f["kept"] == 0 and f["removed"]["pred_iou"] == f["candidates"] > 0
        assert f["best_pred_iou"] < 0.88 and f["best_stability"] is None  # no mask reached the stability filter
        assert f["thresholds"]["score_threshold"] == 0.05  # AutoPPN.decode's default, made explicit
    if kw.get("max_masks"):
        assert f["kept"] == 2 and f["removed"]["max_masks"] > 0
    if kw.get("prompts") == "grid":
        assert f["proposals"] == 16 and f["masks_per_prompt"] == 3 and f["best_ppn_score"] is None
    if kw.get("score_threshold") == 0.999:
        assert f["prompts"] == 0 and f["removed_score_threshold"] == f["proposals"] > 0
        assert f["best_ppn_score"] < 0.999 and f["best_pred_iou"] is None and recs[0] == []
    if kw.get("stability_score_thresh") == 0.5:
        assert f["removed"]["pred_iou"] == 0 and f["removed"]["stability"] > 0 and f["best_stability"] is not None


def test_stats_equal_on_fast_and_stock_decoders(tiny_model, images):
    """The fast path skips the masks of prompts below the IoU threshold; its counts are still those of all masks."""
    kw = dict(prompts="grid", points_per_side=5, pred_iou_thresh=0.05, stability_score_thresh=0.0)
    _, fast = _masks_and_stats(tiny_model, images[1], **kw)
    _, stock = _masks_and_stats(tiny_model, images[1], decoder="stock", **kw)
    a, b = fast["filters"][0], stock["filters"][0]
    assert a["removed"] == b["removed"] and a["kept"] == b["kept"]
    assert a["best_pred_iou"] == pytest.approx(b["best_pred_iou"], abs=1e-4)
