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
