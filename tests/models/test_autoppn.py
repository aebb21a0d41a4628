"""AutoPPN head (shapes, init) and its Point-NMS + top-N decoding on hand-made maps."""
from __future__ import annotations

import math

import pytest
import torch

from litesam_pl.models import AutoPPN, point_nms



BG = -10.0
S, P, G = 64, 8, 2  # input side, map side (stride 8), groups


def _maps():
    """Two images. Image 0: a peak with a lower direct neighbour (must be suppressed), a farther lower peak (kept),
    the same cell in another group (kept: NMS is per group) and a corner peak. Image 1: a single peak."""
    heat = torch.full((2, G, P, P), BG)
    boxes = torch.zeros(2, G, 4, P, P)
    heat[0, 0, 2, 3] = 3.0  # A
    heat[0, 0, 2, 4] = 2.0  # neighbour of A, not a local maximum
    heat[0, 0, 2, 6] = 1.0  # local maximum 3 cells away
    heat[0, 1, 2, 3] = 2.5  # same cell as A, group 1
    heat[0, 1, 7, 7] = 0.0  # corner, sigmoid 0.5
    boxes[0, 0, :, 2, 3] = torch.tensor([0.1, 0.2, 0.05, 0.3])
    boxes[0, 1, :, 7, 7] = torch.tensor([0.25, 0.125, 0.5, 0.5])  # right/bottom leave the image: clipped
    heat[1, 0, 0, 0] = 1.0
    boxes[1, 0, :, 0, 0] = torch.tensor([0.5, 0.5, 0.0625, 0.125])
    return {"heatmap_logits": heat, "boxes": boxes}


def _sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def test_decode_exact_points_boxes_and_order():
    out = AutoPPN.decode(_maps(), S, top_n=5, score_threshold=0.05, nms_kernel=3)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "points": (2, 5, 2), "boxes": (2, 5, 4), "scores": (2, 5), "groups": (2, 5), "valid": (2, 5)
    }
    # image 0: A, A's cell in group 1, the far peak, the corner; A's neighbour (2.0) is suppressed
    torch.testing.assert_close(out["scores"][0, :4], torch.tensor([_sig(3.0), _sig(2.5), _sig(1.0), 0.5]))
    assert out["groups"][0, :4].tolist() == [0, 1, 0, 1]
    assert out["valid"][0].tolist() == [True, True, True, True, False]
    torch.testing.assert_close(
        out["points"][0, :4], torch.tensor([[28.0, 20.0], [28.0, 20.0], [52.0, 20.0], [60.0, 60.0]])
    )
    torch.testing.assert_close(out["boxes"][0, 0], torch.tensor([28 - 6.4, 20 - 12.8, 28 + 3.2, 20 + 19.2]))
    torch.testing.assert_close(out["boxes"][0, 3], torch.tensor([60 - 16.0, 60 - 8.0, 64.0, 64.0]))  # clipped
    # the suppressed neighbour's point (36, 20) in group 0 is nowhere among the valid proposals
    valid_pts = out["points"][0][out["valid"][0]]
    assert not ((valid_pts == torch.tensor([36.0, 20.0])).all(-1) & (out["groups"][0][out["valid"][0]] == 0)).any()
    # image 1 is decoded independently (batched, no cross-talk)
    assert out["valid"][1].tolist() == [True, False, False, False, False]
    torch.testing.assert_close(out["points"][1, 0], torch.tensor([4.0, 4.0]))
    torch.testing.assert_close(out["boxes"][1, 0], torch.tensor([0.0, 0.0, 8.0, 12.0]))  # left/top clipped at 0
    assert (out["scores"][:, :-1] >= out["scores"][:, 1:]).all()  # sorted, descending


def test_decode_without_nms_keeps_the_neighbour_and_pads_to_top_n():
    out = AutoPPN.decode(_maps(), S, top_n=3, score_threshold=0.05, nms_kernel=1)
    assert out["groups"][0].tolist() == [0, 1, 0]
    torch.testing.assert_close(out["points"][0, 2], torch.tensor([36.0, 20.0]))  # the neighbour, now kept
    torch.testing.assert_close(out["scores"][0, 2], torch.tensor(_sig(2.0)))

    padded = AutoPPN.decode(_maps(), S, top_n=200, score_threshold=0.05)
    assert padded["points"].shape == (2, 200, 2)
    assert padded["valid"][0].sum() == 4 and padded["valid"][1].sum() == 1
    assert not padded["valid"][:, G * P * P :].any()


def test_score_threshold_and_unclipped_boxes():
    out = AutoPPN.decode(_maps(), S, top_n=4, score_threshold=0.6, clip=False)
    assert out["valid"][0].tolist() == [True, True, True, False]  # sigmoid(0) = 0.5 < 0.6
    torch.testing.assert_close(out["boxes"][0, 3], torch.tensor([44.0, 52.0, 92.0, 92.0]))


def test_decode_defaults_are_decode_proposals_defaults():
    """``AutoPPN.decode`` and ``decode_proposals`` read one set of defaults (the module's ``TOP_N``,
    ``SCORE_THRESHOLD``, ``NMS_KERNEL``), which SegEvery's options and stats report as AutoPPN's."""
    import inspect

    from litesam_pl.inference.segevery_options import SegEveryOptions
    from litesam_pl.inference.segevery_prompts import score_threshold_used
    from litesam_pl.models import autoppn

    def defaults(fn):
        return {n: p.default for n, p in inspect.signature(fn).parameters.items()
                if p.default is not inspect.Parameter.empty}

    assert defaults(AutoPPN.decode) == defaults(autoppn.decode_proposals) == {
        "top_n": autoppn.TOP_N, "score_threshold": autoppn.SCORE_THRESHOLD, "nms_kernel": autoppn.NMS_KERNEL,
        "clip": True, "input_sizes": None}
    assert (autoppn.TOP_N, autoppn.SCORE_THRESHOLD, autoppn.NMS_KERNEL) == (256, 0.05, 3)
    o = SegEveryOptions()
    assert (o.top_n, o.nms_kernel) == (autoppn.TOP_N, autoppn.NMS_KERNEL)
    assert score_threshold_used(torch.nn.Module(), None) is None
    model = torch.nn.Module()
    model.autoppn = AutoPPN(in_chans=8, embed_dim=16, head_dim=8, stem="conv")
    assert score_threshold_used(model, None) == autoppn.SCORE_THRESHOLD
    maps = _maps()
    a = AutoPPN.decode(maps, S)
    b = autoppn.decode_proposals(maps["heatmap_logits"], maps["boxes"], S)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_point_nms_mask():
    heat = torch.tensor([[[[0.1, 0.9, 0.2], [0.3, 0.4, 0.5], [0.6, 0.2, 0.8]]]])
    keep = point_nms(heat, 3)
    # 0.9 top-centre, 0.6 and 0.8 in the bottom corners are local maxima; 0.5 is next to 0.9
    assert keep[0, 0].tolist() == [[False, True, False], [False, False, False], [True, False, True]]
    with pytest.raises(ValueError):
        point_nms(heat, 2)


def test_decode_rejects_bad_shapes():
    with pytest.raises(ValueError, match="expected heatmap_logits"):
        AutoPPN.decode({"heatmap_logits": torch.zeros(1, 8, 8), "boxes": torch.zeros(1, 1, 4, 8, 8)}, 64)


@pytest.mark.parametrize("stem,groups", [("mspm", 3), ("conv", 1)])
def test_autoppn_forward_shapes_and_init(stem, groups):
    torch.manual_seed(0)
    ppn = AutoPPN(in_chans=256, num_groups=groups, stem=stem).eval()
    with torch.no_grad():
        out = ppn(torch.randn(2, 256, 5, 7))
    assert ppn.stride == 8
    assert out["heatmap_logits"].shape == (2, groups, 10, 14)
    assert out["boxes"].shape == (2, groups, 4, 10, 14) and (out["boxes"] >= 0).all()
    # CenterNet-style prior: confidence starts near 0.1 (bias -2.19), boxes small
    torch.testing.assert_close(ppn.heatmap_head[-1].bias, torch.full((groups,), -math.log(9.0)))
    assert abs(out["heatmap_logits"].sigmoid().mean().item() - 0.1) < 0.02
    assert out["boxes"].mean().item() < 0.1
    decoded = ppn.decode(out, 80, top_n=7)
    assert decoded["points"].shape == (2, 7, 2)
    assert ((decoded["points"] >= 0) & (decoded["points"] <= 80)).all()
    with pytest.raises(ValueError):
        AutoPPN(stem="transformer")


# ------------------------------------------------------------------------------- no prompt outside the image

def _assert_inside(out, sizes):
    """Every valid point and box of image i lies in [0, w] x [0, h] of ``sizes[i]`` (h, w); padding rows are 0."""
    for i, (h, w) in enumerate(sizes):
        v = out["valid"][i]
        pts, bxs = out["points"][i][v], out["boxes"][i][v]
        assert ((pts[:, 0] >= 0) & (pts[:, 0] <= w) & (pts[:, 1] >= 0) & (pts[:, 1] <= h)).all(), pts
        assert ((bxs[:, 0::2] >= 0) & (bxs[:, 0::2] <= w) & (bxs[:, 1::2] >= 0) & (bxs[:, 1::2] <= h)).all(), bxs
        assert torch.isfinite(out["scores"][i][v]).all()


def _heatmaps(kind, b, g, p):
    gen = torch.Generator().manual_seed(0)
    if kind == "random":
        return torch.randn(b, g, p, p, generator=gen) * 3
    if kind == "zeros":  # the reported bug: zero-filled padding is a plateau of maxima with score 0.5
        return torch.zeros(b, g, p, p)
    if kind == "constant":
        return torch.full((b, g, p, p), 4.0)
    if kind == "hot_padding":  # the padding holds the highest logits (and neighbours the image's edge cells)
        x = torch.randn(b, g, p, p, generator=gen)
        x[..., p // 2 :, :] = 20.0
        x[..., :, p // 2 :] = 20.0
        return x
    if kind == "nonfinite":  # -inf outside nothing, nan and +inf scattered inside
        x = torch.randn(b, g, p, p, generator=gen)
        x[..., 0, 0] = float("nan")
        x[..., 1, 1] = float("inf")
        x[..., 2:, 2:] = float("-inf")
        return x
    raise KeyError(kind)


SIZES = [(32, 640), (640, 32), (1, 1), (640, 640), (100, 7), (300, 411)]


@pytest.mark.parametrize("kind", ["random", "zeros", "constant", "hot_padding", "nonfinite"])
@pytest.mark.parametrize("threshold", [0.0, 0.05, None])
@pytest.mark.parametrize("top_n", [5, 300, 20000])  # 20000 > every cell of the map: mostly padding rows
def test_valid_proposals_lie_inside_each_image(kind, threshold, top_n):
    side, p, g = 640, 80, 3
    heat = _heatmaps(kind, len(SIZES), g, p)
    boxes = torch.rand(len(SIZES), g, 4, p, p, generator=torch.Generator().manual_seed(1)) * 2  # up to 2x the side
    out = AutoPPN.decode({"heatmap_logits": heat, "boxes": boxes}, side, top_n=top_n, score_threshold=threshold,
                         input_sizes=SIZES)
    assert out["points"].shape == (len(SIZES), top_n, 2) and out["valid"].dtype == torch.bool
    _assert_inside(out, SIZES)
    counts = out["valid"].sum(1).tolist()
    assert counts[2] == 0  # a 1 x 1 image holds no cell centre of an 8-px grid: no proposal at all
    if kind in ("zeros", "constant"):  # sigmoid 0.5 / 0.98: over every threshold
        # a plateau: every in-image cell of every group is a local maximum (CenterNet ties), capped at top_n
        inside = [(math.ceil(h / 8 - 0.5)) * math.ceil(w / 8 - 0.5) * g for h, w in SIZES]
        assert counts == [min(top_n, n) for n in inside]
    # rows past the maxima are padding: invalid, zero
    pad = ~out["valid"] & (out["scores"] == 0)
    assert (out["points"][pad] == 0).all() and (out["boxes"][pad] == 0).all()
    assert (out["scores"][:, :-1] >= out["scores"][:, 1:]).all()


def test_input_sizes_tensor_and_list_agree_and_none_is_the_whole_square():
    heat, boxes = _heatmaps("random", 2, 1, 16), torch.rand(2, 1, 4, 16, 16)
    maps = {"heatmap_logits": heat, "boxes": boxes}
    a = AutoPPN.decode(maps, 128, top_n=40, score_threshold=0.0, input_sizes=[(20, 128), (128, 128)])
    b = AutoPPN.decode(maps, 128, top_n=40, score_threshold=0.0, input_sizes=torch.tensor([[20, 128], [128, 128]]))
    c = AutoPPN.decode(maps, 128, top_n=40, score_threshold=0.0)
    for k in a:
        assert torch.equal(a[k], b[k]), k
        assert torch.equal(a[k][1], c[k][1]), k  # a full-size image decodes as without input_sizes
    assert (a["points"][0][a["valid"][0]][:, 1] < 20).all()
    with pytest.raises(ValueError, match="input_sizes"):
        AutoPPN.decode(maps, 128, input_sizes=[(20, 128)])


def test_padding_neither_wins_nor_suppresses_and_boxes_clip_to_the_image():
    """A hot padding cell next to the image's edge must not suppress the edge cell (it is not in the image)."""
    heat = torch.full((1, 1, 8, 8), -8.0)
    heat[0, 0, 3, 2] = 9.0  # in the padding (row 3: centre y = 28 >= h = 24)
    heat[0, 0, 2, 2] = 1.0  # the image's last row, next to the hot padding cell
    boxes = torch.full((1, 1, 4, 8, 8), 0.5)  # 32 px each way on S = 64: leaves the 24 x 40 image
    out = AutoPPN.decode({"heatmap_logits": heat, "boxes": boxes}, 64, top_n=3, score_threshold=0.5,
                         input_sizes=[(24, 40)])
    assert out["valid"][0].tolist() == [True, False, False]
    torch.testing.assert_close(out["points"][0, 0], torch.tensor([20.0, 20.0]))
    torch.testing.assert_close(out["scores"][0, 0], torch.tensor(_sig(1.0)))
    torch.testing.assert_close(out["boxes"][0, 0], torch.tensor([0.0, 0.0, 40.0, 24.0]))  # the image, not 64 x 64


@pytest.mark.parametrize("hw", [(32, 200), (200, 32)])
def test_segment_everything_points_stay_inside_thin_images(hw):
    import numpy as np

    import litesam_pl
    from litesam_pl.inference.segevery import segment_everything

    torch.manual_seed(0)
    model = litesam_pl.create_model("litesam", img_size=128).eval()
    image = np.random.default_rng(0).integers(0, 255, (*hw, 3), dtype=np.uint8)
    recs = segment_everything(model, image, prompts="autoppn", top_n=64, score_threshold=0.0, nms="none",
                              pred_iou_thresh=0.0, stability_score_thresh=0.0)
    assert recs
    h, w = hw
    for r in recs:
        (x, y), = r["point_coords"]
        assert 0 <= x <= w and 0 <= y <= h, (x, y)
