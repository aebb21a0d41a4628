"""Losses against references: torchvision's focal loss, hand-computed dice / hard-mining / Smooth-L1 cases."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss as tv_focal

from litesam_pl.losses import (
    MaskLoss,
    PPNLoss,
    box_smooth_l1_loss,
    dice_loss,
    downsample_masks,
    gaussian_focal_loss,
    hard_mining_mse_loss,
    iou_mse_loss,
    predicted_mask_iou,  # the IoU head's target (not metrics.miou.mask_iou)
    sigmoid_focal_loss,
)


def test_focal_matches_torchvision():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=g) * 3
    targets = (torch.rand(2, 3, 8, 8, generator=g) > 0.5).float()
    ours = sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0)
    ref = tv_focal(logits, targets, alpha=0.25, gamma=2.0, reduction="none").flatten(-2).mean(-1)
    assert ours.shape == (2, 3)
    torch.testing.assert_close(ours, ref)
    # gradients agree too
    l1 = logits.clone().requires_grad_(True)
    l2 = logits.clone().requires_grad_(True)
    sigmoid_focal_loss(l1, targets).sum().backward()
    tv_focal(l2, targets, reduction="none").flatten(-2).mean(-1).sum().backward()
    torch.testing.assert_close(l1.grad, l2.grad)


def test_dice_hand_computed():
    # p = sigmoid(0) = 0.5 everywhere on a 2x2 mask; target has 2 ones
    logits = torch.zeros(1, 2, 2)
    target = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    # 1 - (2 * 1.0 + 1) / (2.0 + 2 + 1) = 1 - 3/5
    assert dice_loss(logits, target).item() == pytest.approx(0.4)
    # a perfect, saturated prediction has dice ~0
    perfect = torch.where(target > 0, 50.0, -50.0)
    assert dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)


def test_predicted_mask_iou_and_iou_mse():
    logits = torch.tensor([[[1.0, 1.0], [-1.0, -1.0]]])  # predicts the top row
    target = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # left column
    assert predicted_mask_iou(logits, target).item() == pytest.approx(1 / 3)
    iou_pred = torch.tensor([0.5], requires_grad=True)
    loss = iou_mse_loss(iou_pred, logits, target)
    assert loss.item() == pytest.approx((0.5 - 1 / 3) ** 2)
    loss.sum().backward()
    assert iou_pred.grad.item() == pytest.approx(2 * (0.5 - 1 / 3))


def test_hard_mining_mse_hand_computed():
    # one row: 2 positives, 8 negatives, one ignored pixel with a huge error
    target = torch.tensor([[1.0, 0.5, 0, 0, 0, 0, 0, 0, 0, 0, 0.0]])
    pred = torch.tensor([[0.8, 0.5, 0.9, 0.1, 0.2, 0.7, 0.0, 0.3, 0.05, 0.6, 1.0]])
    ignore = torch.zeros_like(target, dtype=torch.bool)
    ignore[0, -1] = True
    loss = hard_mining_mse_loss(pred, target, ignore, neg_ratio=3.0, min_negatives=0)
    # positives: (0.2^2 + 0) ; k = 6 hardest negatives: 0.9, 0.7, 0.6, 0.3, 0.2, 0.1
    pos = 0.2**2 + 0.0
    neg = 0.9**2 + 0.7**2 + 0.6**2 + 0.3**2 + 0.2**2 + 0.1**2
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx((pos + neg) / 8, rel=1e-5)
    # gradient only reaches the selected pixels (not the two easiest negatives nor the ignored one)
    p = pred.clone().requires_grad_(True)
    hard_mining_mse_loss(p, target, ignore, neg_ratio=3.0, min_negatives=0).sum().backward()
    assert p.grad[0, 6].item() == 0 and p.grad[0, 8].item() == 0 and p.grad[0, -1].item() == 0
    assert p.grad[0, 2].item() > 0


def test_hard_mining_without_positives_uses_min_negatives():
    target = torch.zeros(1, 10)
    pred = torch.linspace(0, 0.9, 10).unsqueeze(0)
    loss = hard_mining_mse_loss(pred, target, None, neg_ratio=3.0, min_negatives=2)
    assert loss.item() == pytest.approx((0.9**2 + 0.8**2) / 2, rel=1e-5)
    # everything ignored -> 0, not NaN
    loss = hard_mining_mse_loss(pred, target, torch.ones_like(pred, dtype=torch.bool))
    assert loss.item() == 0.0


def test_gaussian_focal_hand_computed():
    target = torch.tensor([[1.0, 0.5, 0.0]])
    pred = torch.tensor([[0.8, 0.4, 0.1]])
    loss = gaussian_focal_loss(pred, target)
    pos = math.log(0.8) * 0.2**2
    neg = math.log(0.6) * 0.4**2 * 0.5**4 + math.log(0.9) * 0.1**2 * 1.0
    assert loss.item() == pytest.approx(-(pos + neg), rel=1e-5)


def test_box_smooth_l1_weighted_mean():
    pred = torch.zeros(1, 4, 2, 2)
    target = torch.zeros(1, 4, 2, 2)
    target[0, :, 0, 0] = 0.5  # l1 regime (beta 1/9): 0.5 - 1/18 per side
    target[0, :, 1, 1] = 2.0  # not weighted
    weight = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    loss = box_smooth_l1_loss(pred, target, weight, beta=1 / 9)
    assert loss.item() == pytest.approx(4 * (0.5 - 1 / 18) / 2, rel=1e-5)
    ref = F.smooth_l1_loss(pred[0, :, 0, 0], target[0, :, 0, 0], beta=1 / 9, reduction="sum") / 2
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)


def test_mask_loss_multimask_backprops_min_only():
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2, :] = 1
    good = torch.where(target > 0, 10.0, -10.0)[:, :, None]
    bad = -good
    logits = torch.cat([bad, good, torch.zeros_like(good)], dim=2).requires_grad_(True)  # [1, 1, 3, 4, 4]
    iou_pred = torch.full((1, 1, 3), 0.5, requires_grad=True)
    out = MaskLoss()(logits, iou_pred, target)
    assert out["best"].item() == 1
    out["loss"].backward()
    assert logits.grad[0, 0, 0].abs().sum() == 0 and logits.grad[0, 0, 2].abs().sum() == 0
    assert logits.grad[0, 0, 1].abs().sum() > 0
    # IoU head is supervised on every output: actual IoUs 0, 1, 0 (zeros predict nothing)
    exp_iou = ((0.5 - 0) ** 2 + (0.5 - 1) ** 2 + (0.5 - 0) ** 2) / 3
    assert out["iou"].item() == pytest.approx(exp_iou)
    ref = 10 * sigmoid_focal_loss(good[0, 0, 0], target[0, 0]) + dice_loss(good[0, 0, 0], target[0, 0])
    assert (out["loss"] - out["iou"]).item() == pytest.approx(ref.item(), rel=1e-4, abs=1e-6)


def test_mask_loss_ignores_invalid_prompts():
    target = torch.ones(1, 2, 4, 4)
    logits = torch.zeros(1, 2, 1, 4, 4)
    logits[0, 1] = float("nan")  # padding row with garbage must not leak
    out = MaskLoss()(logits, torch.zeros(1, 2, 1), target, valid=torch.tensor([[True, False]]))
    assert torch.isfinite(out["loss"])
    # focal for p=0.5, t=1: 0.25 * ln2 * 0.25
    assert out["focal"].item() == pytest.approx(0.25 * math.log(2) * 0.25, rel=1e-5)


def _ppn_batch(B=2, G=3, P=8):
    g = torch.Generator().manual_seed(1)
    heat = torch.zeros(B, G, P, P)
    heat[:, 0, 2:5, 2:5] = 0.5
    heat[:, 0, 3, 3] = 1.0
    bw = (heat > 0).float()
    boxes = torch.rand(B, G, 4, P, P, generator=g) * 0.3
    ignore = torch.zeros(B, P, P, dtype=torch.bool)
    ignore[:, -1] = True
    return {"ppn_heatmap": heat, "ppn_boxes": boxes, "ppn_box_weight": bw, "ppn_ignore": ignore}


def test_ppn_loss_weights_groups_and_ignore():
    batch = _ppn_batch()
    outputs = {"heatmap_logits": torch.zeros(2, 3, 8, 8, requires_grad=True), "boxes": torch.zeros(2, 3, 4, 8, 8)}
    out = PPNLoss(box_unit="cell")(outputs, batch)
    assert out["loss"].item() == pytest.approx(2 * out["point"].item() + out["box"].item(), rel=1e-6)
    # group 0: only group with boxes; groups 1, 2 have no positives -> min_negatives of error 0.25
    assert out["point_g1"].item() == pytest.approx(0.25)
    # box term: only group 0 has box cells (same count in both images) -> mean of the two images' losses
    w0 = batch["ppn_box_weight"][:, 0] * (~batch["ppn_ignore"]).float()
    # (distances enter the Smooth-L1 in grid cells: P = 8 times the stored fractions of S)
    exp_box = box_smooth_l1_loss(8 * batch["ppn_boxes"][:, 0], torch.zeros(2, 4, 8, 8), w0).mean()
    assert out["box"].item() == pytest.approx(exp_box.item(), rel=1e-5)
    assert out["box_g1"].item() == 0.0
    out["loss"].backward()
    # no gradient on ignored pixels
    assert outputs["heatmap_logits"].grad[:, :, -1].abs().sum() == 0
    # a perfect prediction has zero loss
    perfect = {
        "heatmap_logits": torch.logit(batch["ppn_heatmap"].clamp(1e-7, 1 - 1e-7).double()).float(),
        "boxes": batch["ppn_boxes"].clone(),
    }
    assert PPNLoss()(perfect, batch)["loss"].item() == pytest.approx(0.0, abs=1e-6)


def test_ppn_box_loss_units():
    # Smooth-L1(P x, P y; beta) = P * Smooth-L1(x, y; beta / P): cells and fractions of S agree up to that identity
    batch = _ppn_batch(P=8)
    outputs = {"heatmap_logits": torch.zeros(2, 3, 8, 8), "boxes": torch.rand(2, 3, 4, 8, 8, generator=torch.Generator().manual_seed(3)) * 0.3}
    cell = PPNLoss(box_unit="cell", box_beta=0.5)(outputs, batch)["box"]
    image = PPNLoss(box_unit="image", box_beta=0.5 / 8)(outputs, batch)["box"]
    assert cell.item() == pytest.approx(8 * image.item(), rel=1e-5)
    with pytest.raises(ValueError, match="box_unit"):
        PPNLoss(box_unit="pixel")


def test_ppn_box_loss_relative_to_the_target_box():
    # box_unit="box": l, r divided by the target box's width (l + r), t, b by its height (t + b), >= 1 cell
    batch = _ppn_batch(P=8)
    pred = torch.rand(2, 3, 4, 8, 8, generator=torch.Generator().manual_seed(3)) * 0.3
    got = PPNLoss(box_unit="box")({"heatmap_logits": torch.zeros(2, 3, 8, 8), "boxes": pred}, batch)["box"]
    t = batch["ppn_boxes"][:, 0]
    w = (t[:, 0] + t[:, 2]).clamp_min(1 / 8)
    h = (t[:, 1] + t[:, 3]).clamp_min(1 / 8)
    side = torch.stack([w, h, w, h], 1)
    w0 = batch["ppn_box_weight"][:, 0] * (~batch["ppn_ignore"]).float()
    want = box_smooth_l1_loss(pred[:, 0] / side, t / side, w0).mean()
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    # scale invariance: the same boxes twice as large (in fractions of S) cost the same (boxes over one cell)
    batch["ppn_boxes"] = batch["ppn_boxes"] + 0.1
    got = PPNLoss(box_unit="box")({"heatmap_logits": torch.zeros(2, 3, 8, 8), "boxes": pred}, batch)["box"]
    big = {**batch, "ppn_boxes": 2 * batch["ppn_boxes"]}
    got2 = PPNLoss(box_unit="box")({"heatmap_logits": torch.zeros(2, 3, 8, 8), "boxes": 2 * pred}, big)["box"]
    assert got2.item() == pytest.approx(got.item(), rel=1e-4)


def test_ppn_box_loss_centerness_weighting():
    # "centerness": each owned cell weighted by its point target, so the peak cell (1.0) counts twice a 0.5 cell
    batch = _ppn_batch(P=8)
    outputs = {"heatmap_logits": torch.zeros(2, 3, 8, 8), "boxes": torch.zeros(2, 3, 4, 8, 8)}
    got = PPNLoss(box_unit="cell", box_weighting="centerness")(outputs, batch)["box"]
    w = batch["ppn_heatmap"][:, 0] * (~batch["ppn_ignore"]).float()  # 0.5 on the 3x3 ring, 1.0 at its centre
    per_cell = F.smooth_l1_loss(8 * batch["ppn_boxes"][:, 0], torch.zeros(2, 4, 8, 8), reduction="none", beta=1 / 9).sum(1)
    want = ((per_cell * w).flatten(1).sum(1) / w.flatten(1).sum(1)).mean()
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    uniform = PPNLoss(box_unit="cell")(outputs, batch)["box"]
    assert got.item() != pytest.approx(uniform.item(), rel=1e-3)
    with pytest.raises(ValueError, match="box_weighting"):
        PPNLoss(box_weighting="gaussian")


def test_ppn_loss_focal_variant_and_shape_errors():
    batch = _ppn_batch(G=1)
    outputs = {"heatmap_logits": torch.zeros(2, 1, 8, 8), "boxes": torch.zeros(2, 1, 4, 8, 8)}
    out = PPNLoss(point_loss="focal")(outputs, batch)
    assert torch.isfinite(out["loss"]) and out["point"] > 0
    with pytest.raises(ValueError, match="point_loss"):
        PPNLoss(point_loss="l2")
    with pytest.raises(ValueError, match="ppn_groups"):
        PPNLoss()({"heatmap_logits": torch.zeros(2, 3, 8, 8), "boxes": torch.zeros(2, 3, 4, 8, 8)}, batch)


def test_downsample_masks():
    m = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    m[..., :4, :6] = True
    d = downsample_masks(m, (4, 4))
    assert d.shape == (1, 1, 4, 4)
    assert d[0, 0, :2, :3].all() and d[0, 0, 2:].sum() == 0 and d[0, 0, :2, 3].sum() == 0


# ------------------------------------------------------------------------- point-sampled mask loss (issue 17)
def test_point_sample_logits_reads_the_upsampled_logits():
    from litesam_pl.losses import point_sample_logits

    torch.manual_seed(0)
    low = torch.randn(3, 8, 8)
    S = 32
    up = F.interpolate(low[:, None], size=(S, S), mode="bilinear", align_corners=False)[:, 0]
    ys, xs = torch.randint(0, S, (2, 3, 50))
    coords = torch.stack([(xs + 0.5) / S, (ys + 0.5) / S], dim=-1)  # pixel centres
    got = point_sample_logits(low, coords)
    want = up[torch.arange(3)[:, None], ys, xs]
    assert torch.allclose(got, want, atol=1e-5)


def test_point_sample_masks_and_block_downsample():
    from litesam_pl.losses import block_downsample_masks, downsample_masks, point_sample_masks

    g = torch.Generator().manual_seed(1)
    masks = torch.rand(4, 32, 32, generator=g) > 0.6
    ys, xs = torch.randint(0, 32, (2, 4, 40), generator=g)
    coords = torch.stack([(xs + 0.25) / 32, (ys + 0.75) / 32], dim=-1)  # anywhere inside the pixel
    got = point_sample_masks(masks, coords)
    assert got.dtype == torch.float32
    assert torch.equal(got.bool(), masks[torch.arange(4)[:, None], ys, xs])
    assert torch.equal(block_downsample_masks(masks, (8, 8)), downsample_masks(masks, (8, 8)))
    assert torch.equal(block_downsample_masks(masks, (12, 12)), downsample_masks(masks, (12, 12)))  # fallback


def test_uncertain_points_follow_the_boundary():
    from litesam_pl.losses import POINT_IMPORTANCE, uncertain_point_coords

    torch.manual_seed(0)
    # logits: a vertical edge at x = 0.5 (|logit| grows with the distance to it)
    xs = (torch.arange(16) + 0.5) / 16
    low = ((xs - 0.5) * 20).expand(16, 16).unsqueeze(0).repeat(2, 1, 1)
    coords = uncertain_point_coords(low, 400)
    assert coords.shape == (2, 400, 2) and coords.min() >= 0 and coords.max() <= 1
    n_imp = int(400 * POINT_IMPORTANCE)
    near = (coords[:, :n_imp, 0] - 0.5).abs()
    far = (coords[:, n_imp:, 0] - 0.5).abs()
    assert near.mean() < 0.1 < far.mean()  # the importance points hug the edge; the rest are uniform


def test_mask_loss_accepts_per_output_targets_and_actual_iou():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 3, 1, 50, requires_grad=True)
    targets = (torch.rand(2, 3, 3, 1, 50) > 0.5).float()
    actual = torch.rand(2, 3, 3)
    iou_pred = torch.rand(2, 3, 3, requires_grad=True)
    r = MaskLoss(focal_alpha=-1)(logits, iou_pred, targets, actual_iou=actual)
    assert r["iou"].item() == pytest.approx(((iou_pred - actual) ** 2).mean().item(), rel=1e-5)
    r["loss"].backward()
    assert logits.grad.abs().sum() > 0 and iou_pred.grad.abs().sum() > 0
