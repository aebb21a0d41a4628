"""Every training loss of Lite-SAM in one place.

Mask branch (SAM, Lite-SAM Sec. 3.4 / 4.2): ``L_mask = 10 * focal + 1 * dice + 1 * IoU-MSE``.
AutoPPN branch (Lite-SAM Sec. 3.3, Eq. 1): ``L_ppn = 2 * hard-mining MSE (point confidence) + 1 * Smooth-L1 (boxes)``,
each computed separately per size group and averaged over groups; unlabeled pixels (``ppn_ignore``) are excluded.
The ablation baseline of Table 2 replaces the hard-mining MSE with the CenterNet penalty-reduced focal loss on
Gaussian targets (``gaussian_focal_loss``).

All functions are plain PyTorch (no Lightning); shapes are given in the docstrings. What brings logits and targets
to the loss resolution (targets downsampled to the logits, the point-sampled loss's points, logits upsampled) lives in
``litesam_pl.mask_resampling``; the helpers that lived here before are re-exported.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .mask_resampling import (POINT_IMPORTANCE, POINT_OVERSAMPLE, block_downsample_masks, downsample_masks,
                              point_sample_logits, point_sample_masks, uncertain_point_coords)

__all__ = [
    "sigmoid_focal_loss",
    "dice_loss",
    "predicted_mask_iou",
    "iou_mse_loss",
    "hard_mining_mse_loss",
    "gaussian_focal_loss",
    "box_smooth_l1_loss",
    "MaskLoss",
    "PPNLoss",
    "uncertain_point_coords",
    "point_sample_logits",
    "point_sample_masks",
    "block_downsample_masks",
    "downsample_masks",
    "POINT_OVERSAMPLE",
    "POINT_IMPORTANCE",
]


# ----------------------------------------------------------------------------------------------------------------
# mask losses
# ----------------------------------------------------------------------------------------------------------------
def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Sigmoid focal loss (Lin et al.) averaged over the pixels of each mask.

    Args:
        logits: ``[..., H, W]`` mask logits.
        targets: ``[..., H, W]`` binary (or soft) targets, same shape.
    Returns:
        ``[...]`` one loss per mask (SAM's convention: mean over pixels).
    """
    targets = targets.to(logits.dtype)
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.flatten(-2).mean(-1)


def dice_loss(logits: Tensor, targets: Tensor, smooth: float = 1.0) -> Tensor:
    """Soft dice loss ``1 - (2 |p t| + s) / (|p| + |t| + s)`` per mask (p = sigmoid(logits)).

    Args:
        logits: ``[..., H, W]``; targets: ``[..., H, W]``.
    Returns:
        ``[...]`` one loss per mask.
    """
    prob = logits.sigmoid().flatten(-2)
    targets = targets.to(prob.dtype).flatten(-2)
    inter = (prob * targets).sum(-1)
    return 1 - (2 * inter + smooth) / (prob.sum(-1) + targets.sum(-1) + smooth)


@torch.no_grad()
def predicted_mask_iou(logits: Tensor, targets: Tensor, eps: float = 1e-6) -> Tensor:
    """IoU of the binarised prediction (``logits > 0``) with the target (``> 0.5``), per mask: ``[..., H, W] ->
    [...]``, batched on the device: what the IoU head learns to predict (``iou_mse_loss``).

    A prediction and a target that are both empty count as IoU 1. (Not ``litesam_pl.metrics.miou.mask_iou``, the
    metric's IoU of two boolean masks as a Python float.)
    """
    pred = (logits > 0).flatten(-2)
    tgt = (targets > 0.5).flatten(-2)
    inter = (pred & tgt).sum(-1).float()
    union = (pred | tgt).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp_min(eps), torch.ones_like(union))


def iou_mse_loss(iou_pred: Tensor, logits: Tensor, targets: Tensor) -> Tensor:
    """MSE between the IoU head's prediction and the actual IoU of the predicted mask with its target.

    Args:
        iou_pred: ``[...]``; logits, targets: ``[..., H, W]``.
    Returns:
        ``[...]`` squared errors (the actual IoU is a constant: no gradient flows into the masks).
    """
    return (iou_pred.float() - predicted_mask_iou(logits, targets)) ** 2


@dataclass
class MaskLoss:
    """SAM-style mask loss ``focal_weight * focal + dice_weight * dice + iou_weight * IoU-MSE``.

    Lite-SAM (Sec. 4.2) uses focal:dice = 10:1 (SAM used 20:1). With several masks per prompt
    (``multimask_output``), only the mask with the lowest focal+dice loss is back-propagated (SAM), while the
    IoU head is supervised on all of them (each output must score its own mask).
    """

    focal_weight: float = 10.0
    dice_weight: float = 1.0
    iou_weight: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0

    def __call__(self, logits: Tensor, iou_pred: Tensor, targets: Tensor, valid: Optional[Tensor] = None,
                 actual_iou: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """
        Args:
            logits: ``[B, K, M, h, w]`` mask logits (M = 1 or 3 outputs per prompt).
            iou_pred: ``[B, K, M]`` predicted IoUs.
            targets: ``[B, K, h, w]`` binary targets at the logits' resolution, or ``[B, K, M, h, w]`` (one target
                per output: the point-sampled loss samples each output at its own points, ``h = 1``).
            valid: ``[B, K]`` bool, False on padding prompts (excluded).
            actual_iou: ``[B, K, M]`` the IoU the IoU head regresses, when ``logits`` are not whole masks (points);
                ``None``: the IoU of ``logits > 0`` with ``targets``.
        Returns:
            dict with ``loss`` (weighted sum) and its parts ``focal``, ``dice``, ``iou`` (means over valid prompts)
            and ``best`` ``[B, K]`` (index of the back-propagated output).
        """
        if logits.dim() != 5:
            raise ValueError(f"MaskLoss expects logits [B, K, M, h, w], got {tuple(logits.shape)}")
        logits = logits.float()
        tgt = targets.to(logits.dtype)
        tgt = (tgt if tgt.dim() == 5 else tgt.unsqueeze(2)).expand_as(logits)
        focal = sigmoid_focal_loss(logits, tgt, self.focal_alpha, self.focal_gamma)  # [B, K, M]
        dice = dice_loss(logits, tgt)
        if actual_iou is None:
            iou = iou_mse_loss(iou_pred, logits, tgt)
        else:
            iou = (iou_pred.float() - actual_iou.detach().float()) ** 2
        combo = self.focal_weight * focal + self.dice_weight * dice
        best = combo.detach().argmin(dim=2)  # [B, K]
        pick = lambda t: t.gather(2, best.unsqueeze(2)).squeeze(2)  # noqa: E731
        focal_b, dice_b = pick(focal), pick(dice)
        iou_k = iou.mean(2)
        if valid is None:
            valid = torch.ones(focal_b.shape, dtype=torch.bool, device=logits.device)
        valid = valid.bool()
        n = valid.sum().clamp_min(1).to(logits.dtype)
        zero = torch.zeros((), dtype=logits.dtype, device=logits.device)
        focal_m = torch.where(valid, focal_b, zero).sum() / n  # where (not *): padding rows never leak NaN
        dice_m = torch.where(valid, dice_b, zero).sum() / n
        iou_m = torch.where(valid, iou_k, zero).sum() / n
        loss = self.focal_weight * focal_m + self.dice_weight * dice_m + self.iou_weight * iou_m
        return {"loss": loss, "focal": focal_m, "dice": dice_m, "iou": iou_m, "best": best}


# ----------------------------------------------------------------------------------------------------------------
# AutoPPN losses
# ----------------------------------------------------------------------------------------------------------------
def hard_mining_mse_loss(
    pred: Tensor,
    target: Tensor,
    ignore: Optional[Tensor] = None,
    neg_ratio: float = 3.0,
    min_negatives: int = 16,
    pos_threshold: float = 0.0,
) -> Tensor:
    """Hard-mining MSE (OHEM / CenterNet style) on one confidence map per row.

    For each row (one image and one size group): every positive pixel (``target > pos_threshold``) plus the
    ``k = neg_ratio * num_pos`` negatives (``target <= pos_threshold``) with the largest squared error
    (at least ``min_negatives`` when the row has few or no positives); ignored pixels are never selected.
    The loss of a row is the mean squared error over its selected pixels.

    Args:
        pred: ``[N, L]`` (or ``[N, H, W]``) predicted confidences in [0, 1] (apply sigmoid first).
        target: same shape, targets in [0, 1].
        ignore: same shape (or broadcastable), True where the pixel is excluded.
    Returns:
        ``[N]`` loss per row (0 for a row with nothing selected).
    """
    pred = pred.float().flatten(1)
    target = target.float().flatten(1)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    err = (pred - target) ** 2
    keep = torch.ones_like(err, dtype=torch.bool)
    if ignore is not None:
        keep = ~ignore.bool().reshape(err.shape[0], -1)
    pos = (target > pos_threshold) & keep
    neg = (~(target > pos_threshold)) & keep
    num_pos = pos.sum(1)
    num_neg = neg.sum(1)
    k = torch.maximum((num_pos.float() * neg_ratio).long(), torch.full_like(num_pos, min_negatives))
    k = torch.minimum(k, num_neg)
    # rank negatives by error; non-negatives get -1 so they sort last
    neg_err = torch.where(neg, err.detach(), torch.full_like(err, -1.0))
    order = neg_err.argsort(dim=1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(err.shape[1], device=err.device).expand_as(order))
    hard_neg = neg & (rank < k.unsqueeze(1))
    sel = (pos | hard_neg).to(err.dtype)
    count = sel.sum(1)
    return (err * sel).sum(1) / count.clamp_min(1.0)


def gaussian_focal_loss(
    pred: Tensor,
    target: Tensor,
    ignore: Optional[Tensor] = None,
    alpha: float = 2.0,
    beta: float = 4.0,
    eps: float = 1e-6,
) -> Tensor:
    """CenterNet's penalty-reduced focal loss on Gaussian heatmaps (the Table 2 baseline), per row.

    Positives are the pixels with ``target == 1`` (peaks); the loss of a row is normalised by its number of
    positives (by 1 when it has none).

    Args:
        pred: ``[N, L]`` or ``[N, H, W]`` confidences in (0, 1); target: same shape; ignore: True = excluded.
    Returns:
        ``[N]``.
    """
    pred = pred.float().flatten(1).clamp(eps, 1 - eps)
    target = target.float().flatten(1)
    keep = torch.ones_like(pred) if ignore is None else (~ignore.flatten(1)).to(pred.dtype).expand_as(pred)
    pos = (target >= 1 - 1e-4).to(pred.dtype) * keep
    neg = (1 - pos) * keep
    pos_loss = torch.log(pred) * (1 - pred) ** alpha * pos
    neg_loss = torch.log(1 - pred) * pred**alpha * (1 - target) ** beta * neg
    num_pos = pos.sum(1).clamp_min(1.0)
    return -(pos_loss.sum(1) + neg_loss.sum(1)) / num_pos


def box_smooth_l1_loss(pred: Tensor, target: Tensor, weight: Tensor, beta: float = 1.0 / 9.0) -> Tensor:
    """Smooth-L1 on (l, t, r, b) box distances, averaged over the cells with ``weight > 0``, per row.

    Args:
        pred: ``[N, 4, H, W]``; target: ``[N, 4, H, W]``; weight: ``[N, H, W]``.
    Returns:
        ``[N]`` (0 for a row without any weighted cell).
    """
    loss = F.smooth_l1_loss(pred.float(), target.float(), reduction="none", beta=beta).sum(1)  # [N, H, W]
    w = weight.float()
    return (loss * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1e-6)


BOX_UNITS = ("box", "cell", "image")


def _relative_to_box(pred: Tensor, target: Tensor, min_side: float) -> Tuple[Tensor, Tensor]:
    """(l, t, r, b) distances ``[..., 4, H, W]`` of prediction and target divided by the target box's width
    (l, r) and height (t, b), each at least ``min_side`` (same unit as the distances)."""
    width = (target[..., 0:1, :, :] + target[..., 2:3, :, :]).clamp_min(min_side)
    height = (target[..., 1:2, :, :] + target[..., 3:4, :, :]).clamp_min(min_side)
    side = torch.cat([width, height, width, height], dim=-3)
    return pred / side, target / side


@dataclass
class PPNLoss:
    """AutoPPN loss ``heatmap_weight * L_point + box_weight * L_box`` (Lite-SAM Eq. 1, weights 2:1).

    ``point_loss`` is ``"hard_mse"`` (ours: distance-transform targets) or ``"focal"`` (CenterNet focal on Gaussian
    targets, the Table 2 baseline). Both terms are computed per size group ``g`` (the point term per image and
    group, then the mean over the batch; the box term pooled over the batch's cells of that group) and then
    averaged over the groups, so 1 or 3 groups give losses of the same scale. Box distances enter the Smooth-L1
    relative to the target box (``box_unit="box"``, the paper recipes: left/right divided by the target box's
    width, top/bottom by its height, at least one grid cell; the same scale at any input size and for every size
    group, and an error costs what it costs the box's IoU), in grid cells (``"cell"``: grows with the input
    size, ~27 at 640 px on a fresh model) or as fractions of the input side (``"image"``: large objects dominate).
    ``box_beta`` is in the same unit. ``box_weighting="uniform"`` weights every cell a mask owns alike;
    ``"centerness"`` weights each by its point target (the normalised distance transform, 1 at the mask's most
    interior cell, where Point-NMS reads the box; FCOS's centre-ness idea). A group without any
    box target in the batch adds 0 to the box term (and is left out of its mean).
    """

    heatmap_weight: float = 2.0
    box_weight: float = 1.0
    point_loss: str = "hard_mse"
    neg_ratio: float = 3.0
    min_negatives: int = 16
    box_beta: float = 1.0 / 9.0
    box_unit: str = "box"
    box_weighting: str = "uniform"

    def __post_init__(self) -> None:
        if self.point_loss not in ("hard_mse", "focal"):
            raise ValueError(f"point_loss must be 'hard_mse' or 'focal', got {self.point_loss!r}")
        if self.box_unit not in BOX_UNITS:
            raise ValueError(f"box_unit must be one of {BOX_UNITS}, got {self.box_unit!r}")
        if self.box_weighting not in ("uniform", "centerness"):
            raise ValueError(f"box_weighting must be 'uniform' or 'centerness', got {self.box_weighting!r}")

    def __call__(self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """
        Args:
            outputs: AutoPPN output, ``heatmap_logits [B, G, P, P]`` and ``boxes [B, G, 4, P, P]``.
            batch: ``ppn_heatmap [B, G, P, P]``, ``ppn_boxes [B, G, 4, P, P]``, ``ppn_box_weight [B, G, P, P]``,
                ``ppn_ignore [B, P, P]``.
        Returns:
            dict ``loss``, ``point``, ``box`` and ``point_g{i}``/``box_g{i}`` per group.
        """
        logits = outputs["heatmap_logits"]
        target = batch["ppn_heatmap"]
        if logits.shape != target.shape:
            raise ValueError(
                f"AutoPPN heatmap {tuple(logits.shape)} does not match the target {tuple(target.shape)}: "
                "check that the data's img_size / ppn_groups / ppn_stride match the model's"
            )
        B, G = logits.shape[:2]
        ignore = batch["ppn_ignore"].bool()  # [B, P, P]
        if ignore.shape != (B, *logits.shape[2:]):
            raise ValueError(f"ppn_ignore {tuple(ignore.shape)} does not match the heatmap {tuple(logits.shape)}")
        ignore_g = ignore.unsqueeze(1).expand(B, G, *ignore.shape[1:]).reshape(B * G, -1)
        prob = logits.float().sigmoid().reshape(B * G, -1)
        tgt = target.reshape(B * G, -1)
        if self.point_loss == "hard_mse":
            point_rows = hard_mining_mse_loss(prob, tgt, ignore_g, self.neg_ratio, self.min_negatives)
        else:
            point_rows = gaussian_focal_loss(prob, tgt, ignore_g)
        point_g = point_rows.view(B, G).mean(0)  # [G]

        w = batch["ppn_box_weight"].float() * (~ignore).unsqueeze(1).float()  # [B, G, P, P]
        if self.box_weighting == "centerness":
            w = w * target.float()
        P = w.shape[-1]
        # one row per group, pooled over the batch: [G, 4, B*P, P] and [G, B*P, P]
        box_pred = outputs["boxes"].permute(1, 2, 0, 3, 4).reshape(G, 4, B * P, P)
        box_tgt = batch["ppn_boxes"].permute(1, 2, 0, 3, 4).reshape(G, 4, B * P, P)
        w_g = w.permute(1, 0, 2, 3).reshape(G, B * P, P)
        if self.box_unit == "cell":  # distances / S -> grid cells (grows with the input size)
            box_pred, box_tgt = box_pred * P, box_tgt * P
        elif self.box_unit == "box":  # relative to the target box: l, r / its width, t, b / its height
            box_pred, box_tgt = _relative_to_box(box_pred, box_tgt, min_side=1.0 / P)
        box_g = box_smooth_l1_loss(box_pred, box_tgt, w_g, self.box_beta)  # [G]
        wsum = w_g.flatten(1).sum(1)
        has_box = (wsum > 0).float()
        box = (box_g * has_box).sum() / has_box.sum().clamp_min(1.0)
        point = point_g.mean()
        out = {"loss": self.heatmap_weight * point + self.box_weight * box, "point": point, "box": box}
        for g in range(G):
            out[f"point_g{g}"] = point_g[g].detach()
            out[f"box_g{g}"] = box_g[g].detach()
        return out
