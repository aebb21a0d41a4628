"""BSDS500 edge benchmark: the scorer against the official bench outputs, hand-made cases, detectors, SAM edges."""
from __future__ import annotations

import csv
import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from litesam_pl.data.bsds import (
    BSDS500,
    load_boundaries,
    load_ground_truth,
    load_prediction,
    seg_to_boundaries,
    segmentation_boxes,
)
from litesam_pl.evaluation.edges import (
    box_fill_maps,
    box_probability_maps,
    canny_edges,
    edge_map_from_model,
    mask_edge_map,
    outer_boundary,
    segevery_probability_maps,
    sobel_edges,
)
from litesam_pl.metrics.bsds import (
    BoundaryCounts,
    BoundaryEvaluator,
    average_precision,
    best_f_interpolated,
    bsds_thresholds,
    evaluate_boundary_image,
    evaluate_images,
    match_boundaries,
    recall_at_precision,
    summarize,
    thin_boundaries,
)

F_TOL = 0.005  # the bench's matcher is randomised: per-image F reproduces to ~1e-3


@pytest.fixture(scope="module")
def bsds(shared_data) -> Path:
    root = shared_data / "bsds500"
    if not (root / "bench_fixture").is_dir():
        pytest.skip("bsds500 sample not in shared data")
    return root


@pytest.fixture(scope="module")
def tiny_bsds(tmp_path_factory) -> Path:
    """A 2-image BSDS500 layout (images/test/*.jpg, groundTruth/test/*.mat with 2 annotators) of small squares."""
    import cv2
    from scipy.io import savemat

    root = tmp_path_factory.mktemp("tiny_bsds")
    (root / "images" / "test").mkdir(parents=True)
    (root / "groundTruth" / "test").mkdir(parents=True)
    for k, (top, left) in enumerate([(40, 50), (60, 80)]):  # 160x240: maxDist 0.0075 * diag = 2.2 px
        seg = np.ones((160, 240), np.uint16)
        seg[top:top + 60, left:left + 90] = 2
        img = np.full((160, 240, 3), 40, np.uint8)
        img[seg == 2] = 210
        cv2.imwrite(str(root / "images" / "test" / f"im{k}.jpg"), img)
        seg2 = np.ones_like(seg)
        seg2[top + 1:top + 61, left:left + 91] = 2  # a second annotator traces the square 1 px off
        cell = np.empty((1, 2), dtype=object)
        for j, sg in enumerate((seg, seg2)):
            cell[0, j] = {"Segmentation": sg, "Boundaries": thin_boundaries(seg_to_boundaries(sg)).astype(np.uint8)}
        savemat(str(root / "groundTruth" / "test" / f"im{k}.mat"), {"groundTruth": cell})
    return root


def _expected(root: Path, test: str):
    ods = np.loadtxt(root / "bench_fixture" / "expected" / test / "eval_bdry.txt")
    img = np.loadtxt(root / "bench_fixture" / "expected" / test / "eval_bdry_img.txt")
    return ods, img


def _score_fixture(root: Path, fmt: str) -> dict:
    fx = root / "bench_fixture"
    ds = BSDS500(fx, "test")  # the flat bench layout
    ext = "png" if fmt == "png" else "mat"
    items = ((i, load_prediction(fx / fmt / f"{i}.{ext}", fmt), ds.boundaries(i)) for i in ds.ids)
    return summarize(evaluate_images(items, thresholds=5, progress=False))


def _check_against(res: dict, ods, img) -> None:
    # eval_bdry.txt: bestT bestR bestP bestF R_max P_max F_max AP
    assert res["ods_threshold"] == pytest.approx(ods[0], abs=1e-4)
    assert res["ods"] == pytest.approx(ods[3], abs=F_TOL)
    assert res["ois"] == pytest.approx(ods[6], abs=F_TOL)
    assert res["ap"] == pytest.approx(ods[7], abs=F_TOL)
    assert len(res["per_image"]) == len(img)
    for row, exp in zip(res["per_image"], img):  # eval_bdry_img.txt: index bestT R P F (ids string-sorted)
        assert row["f"] == pytest.approx(exp[4], abs=F_TOL), row
        assert row["r"] == pytest.approx(exp[2], abs=F_TOL), row
        assert row["p"] == pytest.approx(exp[3], abs=F_TOL), row


def test_fixture_ucm2_reproduces_bench(bsds):
    """bench_fixture/expected/test_1: ucm2 inputs, nthresh=5."""
    _check_against(_score_fixture(bsds, "ucm2"), *_expected(bsds, "test_1"))


# (~1 s with the fast matcher; ~15 s with matcher="official")
def test_fixture_png_reproduces_bench(bsds):
    """bench_fixture/expected/test_2: 8-bit png edge maps (pb = png/255), nthresh=5."""
    _check_against(_score_fixture(bsds, "png"), *_expected(bsds, "test_2"))


# (~1 s with the fast matcher; ~18 s with matcher="official")
def test_fixture_segs_reproduces_bench(bsds):
    """bench_fixture/expected/test_3: segs inputs (one segmentation per threshold, boundaries by seg2bdry)."""
    fx = bsds / "bench_fixture"
    ds = BSDS500(fx, "test")
    items = ((i, load_prediction(fx / "segs" / f"{i}.mat", "segs"), ds.boundaries(i)) for i in ds.ids)
    res = summarize(evaluate_images(items, progress=False))
    assert res["curve"]["thresholds"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    _check_against(res, *_expected(bsds, "test_3"))


# (~1 s with the fast matcher; ~20 s with matcher="official")
def test_reference_image_99_thresholds(bsds):
    """One gPb-owt-ucm test image at the official 99 thresholds vs the official eval_bdry_img.txt row."""
    image_id = "112056"  # few distinct ucm levels: the fastest of the 135
    rows = {r["image_id"]: r for r in csv.DictReader(
        open(bsds / "reference_ucm2_test_eval" / "eval_bdry_img_with_ids.tsv"), delimiter="\t")}
    ref = rows[image_id]
    pb = load_prediction(bsds / "ucm2_gPb_owt_ucm" / "test" / f"{image_id}.mat", "ucm2")
    counts = evaluate_boundary_image(pb, load_boundaries(bsds / "groundTruth" / "test" / f"{image_id}.mat"), 99)
    best = counts.best()
    assert best["f"] == pytest.approx(float(ref["f"]), abs=F_TOL)
    assert best["r"] == pytest.approx(float(ref["recall"]), abs=F_TOL)
    assert best["p"] == pytest.approx(float(ref["precision"]), abs=F_TOL)
    assert best["threshold"] == pytest.approx(float(ref["best_threshold"]), abs=0.011)


def test_reference_dataset_curve_formulas(bsds):
    """ODS (interpolated) and AP from the official 200-image eval_bdry_thr.txt give the official eval_bdry.txt."""
    thr = np.loadtxt(bsds / "reference_ucm2_test_eval" / "eval_bdry_thr.txt")
    ref = np.loadtxt(bsds / "reference_ucm2_test_eval" / "eval_bdry.txt")
    t, r, p, f = best_f_interpolated(thr[:, 0], thr[:, 1], thr[:, 2])
    assert (t, r, p, f) == pytest.approx((ref[0], ref[1], ref[2], ref[3]), abs=2e-6)
    assert average_precision(thr[:, 1], thr[:, 2]) == pytest.approx(ref[7], abs=2e-6)
    assert np.allclose(bsds_thresholds(99), thr[:, 0], atol=1e-9)


# ---------------------------------------------------------------------------------------------------- hand-made


def _square_boundary(h=40, w=50, top=10, left=12, size=20) -> np.ndarray:
    """A one-pixel square outline, already thinned (the bench thins predictions, so GT-as-prediction is exact)."""
    b = np.zeros((h, w), dtype=bool)
    b[top, left:left + size] = b[top + size - 1, left:left + size] = True
    b[top:top + size, left] = b[top:top + size, left + size - 1] = True
    return thin_boundaries(b)


def test_perfect_prediction_scores_one():
    gt = _square_boundary()
    res = summarize({"a": evaluate_boundary_image(gt.astype(float), [gt, gt], thresholds=5)})
    assert res["ods"] == pytest.approx(1.0, abs=0.02)  # randomised matcher: a pixel may stay unmatched
    assert res["ois"] == pytest.approx(1.0, abs=0.02)
    assert res["per_image"][0]["f"] == pytest.approx(1.0, abs=0.02)


def test_shifted_edge_within_max_dist_matches():
    line = np.zeros((40, 50), dtype=bool)
    line[20, 10:40] = True
    shifted = np.roll(line, 1, axis=0)  # 1 px; max_dist 0.0075 * diag(64) = 0.48 px < 1 px < 0.05 * 64
    tight = evaluate_boundary_image(shifted.astype(float), [line], thresholds=1, max_dist=0.0075)
    loose = evaluate_boundary_image(shifted.astype(float), [line], thresholds=1, max_dist=0.05)
    # the bench's matcher is randomised (its outlier edges): now and then it leaves one pixel out
    assert loose.cnt_r[0] >= 28 and loose.cnt_p[0] >= 28 and loose.sum_r[0] == loose.sum_p[0] == 30
    assert tight.recall[0] == 0 and tight.precision[0] == 0
    gt = _square_boundary()
    sq = evaluate_boundary_image(np.roll(gt, 1, axis=1).astype(float), [gt], thresholds=1, max_dist=0.05)
    assert sq.recall[0] > 0.94 and sq.precision[0] > 0.94  # the matcher may leave a pixel or two out


def test_shift_on_bsds_size_image_matches():
    """On a 321x481 image maxDist 0.0075 is ~4.3 px: a 2 px shift matches, a 10 px shift does not."""
    gt = _square_boundary(321, 481, 100, 100, 120)
    c = evaluate_boundary_image(np.roll(gt, 2, axis=0).astype(float), [gt], thresholds=1)
    assert c.recall[0] > 0.98 and c.precision[0] > 0.98  # the randomised matcher may leave a few pixels out
    far = evaluate_boundary_image(np.roll(gt, 10, axis=0).astype(float), [gt], thresholds=1)
    assert far.recall[0] < 0.6  # only the vertical sides still match


def test_empty_prediction_gives_zero_recall():
    gt = _square_boundary()
    c = evaluate_boundary_image(np.zeros(gt.shape), [gt, gt], thresholds=3)
    assert np.all(c.recall == 0) and np.all(c.precision == 0) and np.all(c.sum_r == 2 * gt.sum())
    res = summarize({"a": c})
    assert res["ods"] == 0 and res["ap"] == 0 and res["r50"] is None


def test_precision_counts_any_annotator_and_recall_each():
    """A predicted pixel is right if it matches any annotator; recall sums over annotators (the bench's rule)."""
    a = _square_boundary()
    b = np.zeros_like(a)
    b[36, 2:40] = True  # a second annotator draws a line the first did not
    pred = a | b
    c = evaluate_boundary_image(pred.astype(float), [a, b], thresholds=1)
    # (the bench's matcher is randomised: it may leave a pixel or two out)
    assert c.sum_p[0] == pred.sum() and c.cnt_p[0] >= c.sum_p[0] - 3  # each pixel matches one of the two
    assert c.sum_r[0] == a.sum() + b.sum() and c.cnt_r[0] >= c.sum_r[0] - 3
    only_a = evaluate_boundary_image(a.astype(float), [a, b], thresholds=1)
    assert only_a.recall[0] == pytest.approx(a.sum() / (a.sum() + b.sum()), abs=0.03)
    assert only_a.cnt_p[0] >= only_a.sum_p[0] - 3


def test_threshold_semantics_and_cache():
    """pb >= t is a boundary; thresholds selecting the same pixels share one match."""
    gt = _square_boundary()
    pb = gt * 0.5  # boundary strength exactly 0.5
    c = evaluate_boundary_image(pb, [gt], thresholds=[0.25, 0.5, 0.5000001, 0.75])
    # the bench's matcher is randomised (may leave a pixel or two out); equal thresholds share one match
    assert c.recall[0] == c.recall[1] >= 1.0 - 3 / gt.sum()
    assert list(c.recall[2:]) == [0.0, 0.0]
    cnt_r, sum_r, cnt_p, sum_p = match_boundaries(gt, [gt.astype(np.uint8) * 255])  # any non-zero GT is boundary
    assert sum_r == sum_p == gt.sum() and cnt_r >= sum_r - 3
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluate_boundary_image(pb * 3, [gt])
    with pytest.raises(ValueError, match="shape"):
        evaluate_boundary_image(pb, [gt[:-1]])


def test_ap_and_r50_on_hand_made_curve():
    # data-set curve ordered by increasing threshold (recall falls)
    r = np.array([1.0, 0.6, 0.2])
    p = np.array([0.4, 0.8, 1.0])
    # AP: P(R) at R = 0:0.01:1, 0 below R=0.2; 41 points from 1.0 to 0.8 (sum 36.9), 40 from 0.79 to 0.40 (23.8)
    assert average_precision(r, p) == pytest.approx(0.607, abs=1e-9)
    # R50: P = 0.5 on the segment (0.6, 0.8)-(1.0, 0.4): R = 0.9
    assert recall_at_precision(r, p, 0.5) == pytest.approx(0.9)
    # every point above 50% precision: the recall of the least precise point
    assert recall_at_precision(np.array([0.7, 0.3]), np.array([0.6, 0.9])) == pytest.approx(0.7)
    # never 50% precise: undefined
    assert np.isnan(recall_at_precision(np.array([0.7, 0.3]), np.array([0.2, 0.4])))
    # interpolated best F between thresholds: (R, P) from (1, 0) to (0, 1) peaks at R = P = 0.5
    t, rr, pp, f = best_f_interpolated([0.25, 0.75], [1.0, 0.0], [0.0, 1.0])
    assert f == pytest.approx(0.5, abs=1e-3) and t == pytest.approx(0.5, abs=0.01)


def test_summarize_ods_ois_from_counts():
    thr = [0.25, 0.5, 0.75]
    a = BoundaryCounts(thr, cnt_r=[9, 6, 2], sum_r=[10, 10, 10], cnt_p=[6, 6, 2], sum_p=[12, 7, 2])
    b = BoundaryCounts(thr, cnt_r=[8, 4, 1], sum_r=[10, 10, 10], cnt_p=[4, 4, 1], sum_p=[16, 5, 1])
    res = summarize({"b": b, "a": a})
    # OIS: a's best F is at t=0.5 (0.706), b's too (0.533): their counts there are summed
    assert int(np.argmax(a.f)) == 1 and int(np.argmax(b.f)) == 1
    ois_r, ois_p = (6 + 4) / 20, (6 + 4) / (7 + 5)
    assert res["ois"] == pytest.approx(2 * ois_r * ois_p / (ois_r + ois_p))
    R = np.array([17, 10, 3]) / 20
    P = np.array([10, 10, 3]) / np.array([28, 12, 3])
    assert res["curve"]["r"] == pytest.approx(R.tolist())
    assert res["ods"] == pytest.approx(best_f_interpolated(thr, R, P)[3])
    assert [row["image_id"] for row in res["per_image"]] == ["b", "a"]
    ev = BoundaryEvaluator(thresholds=thr)
    ev.add("a", a)
    ev.add("b", b)
    assert ev.compute()["ods"] == pytest.approx(res["ods"])
    with pytest.raises(ValueError):
        ev.add("a", a)


# ---------------------------------------------------------------------------------------------------- data reader


def test_reader_and_segs(bsds):
    ds = BSDS500(bsds, "test", limit=3)
    assert len(ds) == 3 and ds.ids == sorted(ds.ids)
    sample = ds[0]
    assert sample["image"].dtype == np.uint8 and sample["image"].shape[2] == 3
    assert 4 <= len(sample["boundaries"]) <= 9
    assert all(b.shape == sample["image"].shape[:2] for b in sample["boundaries"])
    gt = load_ground_truth(bsds / "bench_fixture" / "groundTruth" / "2018.mat")
    # the annotators' Boundaries are bwmorph-thin(seg2bdry(Segmentation)): checks both seg2bdry and the thinning
    for g in gt:
        assert np.array_equal(thin_boundaries(seg_to_boundaries(g["segmentation"])), g["boundaries"])
    segs = load_prediction(bsds / "bench_fixture" / "segs" / "2018.mat", "segs")
    assert len(segs) == 5 and segs[0].dtype == bool
    with pytest.raises(FileNotFoundError):
        BSDS500(bsds / "nope", "test")
    with pytest.raises(FileNotFoundError, match="missing"):
        ds.prediction_paths(bsds / "bench_fixture" / "png", "png")
    with pytest.raises(ValueError):
        load_prediction(bsds / "bench_fixture" / "groundTruth" / "2018.mat", "npy")


def test_seg_to_boundaries_small():
    seg = np.array([[1, 1, 2], [1, 1, 2], [3, 3, 3]])
    b = seg_to_boundaries(seg)
    # corner (r, c) is on when any of the edgels around the 2x2 block at (r, c) differs
    assert b.tolist() == [[False, True, False], [True, True, True], [False, False, False]]


# ---------------------------------------------------------------------------------------------------- edge maps


def test_detectors_produce_unit_maps(bsds):
    img = BSDS500(bsds / "bench_fixture", "test").image("2018")
    for fn in (sobel_edges, canny_edges):
        e = fn(img)
        assert e.shape == img.shape[:2] and e.dtype == np.float32
        assert e.min() >= 0.0 and e.max() == pytest.approx(1.0)
    step = np.zeros((32, 32, 3), np.uint8)
    step[:, 16:] = 200
    c = canny_edges(step, sigma=1.0)
    cols = np.nonzero(c.max(0) > 0.5)[0]
    assert set(cols) <= {15, 16} and len(cols) >= 1  # one thin line at the step
    s = sobel_edges(step, sigma=0)
    assert s[:, 15:17].min() == pytest.approx(1.0) and s[:, :14].max() == 0


def test_mask_edges_on_outer_boundary_only():
    h, w = 48, 64
    yy, xx = np.mgrid[0:h, 0:w]
    sq = (yy >= 10) & (yy < 30) & (xx >= 8) & (xx < 28)
    disk = (yy - 30) ** 2 + (xx - 45) ** 2 < 10 ** 2
    probs = [np.where(m, 0.9, 0.1).astype(np.float32) for m in (sq, disk)]
    e = mask_edge_map(probs, nms=False)
    ring = outer_boundary(sq) | outer_boundary(disk)
    assert e.dtype == np.float32 and e.max() == pytest.approx(1.0) and e.min() == 0.0
    assert np.all(e[~ring] == 0)  # nothing off the outer boundaries
    assert np.all(e[ring] > 0)  # and every outer-boundary pixel responds
    ob = outer_boundary(sq)
    assert not (ob & sq).any() and ob[9, 8:28].all() and ob[30, 8:28].all() and ob[10:30, 7].all()
    # with edge NMS the map stays in [0, 1], peaks near the boundaries
    en = mask_edge_map(probs, nms=True)
    assert en.max() == pytest.approx(1.0) and en.min() >= 0
    near = outer_boundary(np.asarray(ring, np.uint8).astype(bool)) | ring
    assert en[en > 0.2].size > 0 and np.all(near[en > 0.2])
    assert mask_edge_map([], shape=(5, 6)).shape == (5, 6)


def _tiny_sam(img_size: int = 128):
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    side = img_size // 16
    torch.manual_seed(0)
    return Sam(
        image_encoder=ImageEncoderViT(img_size=img_size, patch_size=16, embed_dim=32, depth=1, num_heads=2,
                                      out_chans=256, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6)),
        prompt_encoder=PromptEncoder(embed_dim=256, image_embedding_size=(side, side),
                                     input_image_size=(img_size, img_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(
            depth=1, embedding_dim=256, mlp_dim=64, num_heads=8), transformer_dim=256, iou_head_hidden_dim=32),
    ).eval()


def test_grid_path_edges_from_random_sam():
    """The SAM App. D.2 glue end to end on a tiny random segment_anything Sam (grid prompts, no filters)."""
    img = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    sam = _tiny_sam()
    out = segevery_probability_maps(sam, img, points_per_side=4)
    assert out["source"] == "segment_everything:grid" and out["probs"].shape[1:] == (40, 60)
    assert out["probs"].shape[0] <= 48 and out["masks"].dtype == bool and out["masks"].shape == out["probs"].shape
    assert np.array_equal(out["masks"], out["probs"] > 0.5)
    e = edge_map_from_model(sam, img, points_per_side=4)
    assert e.shape == (40, 60) and e.min() >= 0 and e.max() <= 1


def test_segevery_is_asked_for_unfiltered_probabilities(monkeypatch):
    from litesam_pl.inference import segevery

    class Fake:
        autoppn = object()

    def segment_everything(model, image, **kw):
        assert isinstance(model, Fake)
        assert kw["pred_iou_thresh"] == float("-inf") and kw["stability_score_thresh"] == float("-inf")
        assert kw["output_mode"] == "tensors" and kw["return_logits"] and kw["prompts"] == "autoppn"
        lg = torch.full((1,) + image.shape[:2], -2.5)
        lg[0, 5:15, 5:15] = 2.5
        return {"masks": lg > 0, "mask_logits": lg, "probs": torch.sigmoid(lg)}

    monkeypatch.setattr(segevery, "segment_everything", segment_everything)

    out = segevery_probability_maps(Fake(), np.zeros((20, 30, 3), np.uint8))
    assert out["source"] == "segment_everything:autoppn" and out["probs"].shape == (1, 20, 30)
    assert out["masks"][0, 5:15, 5:15].all() and out["masks"].sum() == 100
    e = edge_map_from_model(Fake(), np.zeros((20, 30, 3), np.uint8), apply_edge_nms=False)
    assert np.all(e[outer_boundary(out["masks"][0])] > 0) and np.all(e[~outer_boundary(out["masks"][0])] == 0)


def test_segmentation_boxes_span_whole_pixels():
    seg = np.ones((10, 12), np.uint16)
    seg[2:5, 3:9] = 2  # 18 pixels
    seg[8, 0] = 3  # 1 pixel: below min_area
    assert segmentation_boxes(seg).tolist() == [[0, 0, 12, 10], [3, 2, 9, 5]]
    assert segmentation_boxes(seg, min_area=1).tolist()[-1] == [0, 8, 1, 9]
    assert segmentation_boxes(np.zeros((3, 3)), min_area=10).shape == (0, 4)
    with pytest.raises(ValueError, match="segmentation"):
        segmentation_boxes(np.zeros(5))


def test_region_boxes_of_an_annotator(bsds):
    ds = BSDS500(bsds / "bench_fixture", "test")
    gts = load_ground_truth(ds.gt_path("2018"))
    for k in (0, len(gts) - 1):
        boxes = ds.region_boxes("2018", annotator=k)
        seg = gts[k]["segmentation"]
        big = [v for v in np.unique(seg) if (seg == v).sum() >= 16]
        assert boxes.shape == (len(big), 4) and boxes.dtype == np.float32
        ys, xs = np.nonzero(seg == big[0])
        assert boxes[0].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    with pytest.raises(ValueError, match="annotator"):
        ds.region_boxes("2018", annotator=len(gts))


def test_dataset_parses_each_ground_truth_once(bsds, monkeypatch):
    import litesam_pl.data.bsds as bsds_mod

    calls = []
    real = bsds_mod.load_ground_truth
    monkeypatch.setattr(bsds_mod, "load_ground_truth", lambda path: calls.append(path) or real(path))
    ds = BSDS500(bsds / "bench_fixture", "test")
    first, second = ds.ids[0], ds.ids[-1]
    shape = ds.boundaries(first)[0].shape
    boxes = ds.region_boxes(first)
    assert len(calls) == 1 and boxes[:, 2].max() <= shape[1]
    ds.boundaries(second)
    ds.region_boxes(second)
    assert len(calls) == 2


def test_box_fill_maps_clip_to_the_image():
    m = box_fill_maps(np.array([[2, 1, 5, 3], [-4, 6, 40, 99]], np.float32), (8, 10))
    assert m.shape == (2, 8, 10) and m.dtype == np.float32
    assert m[0].sum() == 6 and m[0, 1:3, 2:5].all()
    assert m[1].sum() == 20 and m[1, 6:, :].all()
    with pytest.raises(ValueError, match="xyxy"):
        box_fill_maps(np.zeros((2, 3)), (4, 4))


def test_box_prompt_maps_follow_the_single_mask_protocol():
    """One single-mask output per box, as SamPredictor gives it, at the image's size; the edge map from them."""
    from segment_anything import SamPredictor

    img = np.random.default_rng(1).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    sam = _tiny_sam()
    boxes = np.array([[5, 5, 30, 25], [20, 10, 58, 38], [0, 0, 60, 40]], np.float32)
    with torch.inference_mode():
        out = box_probability_maps(sam, img, boxes, max_prompts_per_call=2)  # two decoder calls
        pred = SamPredictor(sam)
        pred.set_image(img)
        want = np.stack([pred.predict(box=b, multimask_output=False, return_logits=True)[0][0] for b in boxes])
    assert out["probs"].shape == (3, 40, 60) and out["source"] == "boxes"
    np.testing.assert_allclose(out["probs"], 1 / (1 + np.exp(-want)), atol=1e-5)
    assert out["masks"].dtype == bool and out["masks"].shape == (3, 40, 60)
    for threshold, expect in ((1e9, False), (-1e9, True)):  # the masks threshold the logits at the model's own
        sam.mask_threshold = threshold
        with torch.inference_mode():
            assert (box_probability_maps(sam, img, boxes)["masks"] == expect).all()
    sam.mask_threshold = 0.0
    assert box_probability_maps(sam, img, np.zeros((0, 4)))["probs"].shape == (0, 40, 60)
    with pytest.raises(ValueError, match="max_prompts_per_call"):
        box_probability_maps(sam, img, boxes, max_prompts_per_call=0)
    with torch.inference_mode():
        e = edge_map_from_model(sam, img, boxes=boxes, apply_edge_nms=False)
        one_call = box_probability_maps(sam, img, boxes)  # the same decoder call as edge_map_from_model's
    assert np.array_equal(e, mask_edge_map(one_call["probs"], one_call["masks"], nms=False))


def test_random_litesam_end_to_end(tiny_bsds, tmp_path):
    """Our model's path end to end through the CLI: random-weight registry model -> SAM edges -> scores."""
    registry = pytest.importorskip("litesam_pl.models.registry")
    if "litesam" not in registry.list_models():
        pytest.skip("the model registry has no 'litesam' yet")
    from benchmarks.bsds import main

    out = main(["--data", str(tiny_bsds), "--model", "litesam", "--img-size", "256", "--prompts", "grid",
                "--points-per-side", "4", "--thresholds", "3", "--no-progress", "--json", str(tmp_path / "m.json")])
    assert out["images"] == 2 and 0 <= out["ods"] <= 1 and len(out["per_image"]) == 2
    assert json.loads((tmp_path / "m.json").read_text())["method"] == "litesam (random weights)"


# ---------------------------------------------------------------------------------------------------- CLI


def test_cli_detector_json_and_plot(tiny_bsds, tmp_path, capsys):
    from benchmarks.bsds import main

    out = main(["--data", str(tiny_bsds), "--detector", "canny", "--thresholds", "5", "--json",
                str(tmp_path / "r.json"), "--plot", str(tmp_path / "pr.png"), "--no-progress",
                "--save-edges", str(tmp_path / "edges"), "--eval-dir", str(tmp_path / "ev")])
    saved = json.loads((tmp_path / "r.json").read_text())
    assert {"ods", "ois", "ap", "r50", "images", "per_image"} <= set(saved)
    assert saved["images"] == 2 and set(saved["per_image"][0]) == {"image_id", "threshold", "r", "p", "f"}
    assert saved["ods"] == pytest.approx(out["ods"]) and saved["ods"] > 0.9  # clean squares: Canny finds them
    assert (tmp_path / "pr.png").stat().st_size > 1000 and (tmp_path / "edges" / "im0.png").is_file()
    assert "Table 7" in capsys.readouterr().out
    # the saved 8-bit maps read back through --pred png, in 2 worker processes
    again = main(["--data", str(tiny_bsds), "--pred", str(tmp_path / "edges"), "--pred-format", "png",
                  "--thresholds", "5", "--no-progress", "--workers", "2", "--plot", str(tmp_path / "pr2.png"),
                  "--plot-with", str(tmp_path / "r.json"), "--name", "again"])
    assert again["ods"] == pytest.approx(out["ods"], abs=0.02)
    assert (tmp_path / "pr2.png").is_file()
    # --eval-dir keeps the bench's <id>_ev1.txt: a rerun reads them back instead of matching again
    ev1 = np.loadtxt(tmp_path / "ev" / "im0_ev1.txt")
    assert ev1.shape == (5, 5) and np.allclose(ev1[:, 0], bsds_thresholds(5))
    cached = main(["--data", str(tiny_bsds), "--detector", "canny", "--thresholds", "5", "--no-progress",
                   "--eval-dir", str(tmp_path / "ev")])
    assert cached["ods"] == out["ods"] and cached["per_image"] == out["per_image"]
    assert "2 of 2 images already evaluated" in capsys.readouterr().out
    with pytest.raises(ValueError, match="other thresholds"):
        main(["--data", str(tiny_bsds), "--detector", "canny", "--thresholds", "3", "--no-progress",
              "--eval-dir", str(tmp_path / "ev")])


def test_cli_requires_an_edge_source(bsds, capsys):
    from benchmarks.bsds import main

    with pytest.raises(SystemExit):
        main(["--data", str(bsds / "bench_fixture")])
    assert "--ckpt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--data", str(bsds / "bench_fixture"), "--detector", "sobel", "--pred", "x"])


def test_cli_matcher_option(tiny_bsds, capsys):
    """--matcher official (the bench's correspondPixels) and the default fast matcher give the same scores here."""
    from benchmarks.bsds import build_parser, main

    assert build_parser().parse_args(["--data", "x", "--detector", "canny"]).matcher == "fast"
    args = ["--data", str(tiny_bsds), "--detector", "canny", "--thresholds", "3", "--no-progress"]
    fast = main(args)
    official = main(args + ["--matcher", "official"])
    assert fast["config"]["matcher"] == "fast" and official["config"]["matcher"] == "official"
    assert official["ods"] == pytest.approx(fast["ods"], abs=0.01)
    assert [r["f"] for r in official["per_image"]] == pytest.approx([r["f"] for r in fast["per_image"]], abs=0.01)
    with pytest.raises(SystemExit):
        main(args + ["--matcher", "exact"])
    assert "invalid choice" in capsys.readouterr().err
