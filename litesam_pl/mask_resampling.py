"""Mask logits and targets at the resolution the mask loss reads them, plain PyTorch (no Lightning).

Helpers of the mask loss (``litesam_pl.losses``) and of the LightningModules, apart from the losses themselves:
targets downsampled to the low-res logits (``downsample_masks``, ``block_downsample_masks``), logits upsampled to
the input size (``upsample_prompt_logits``), and the point-sampled loss's reads (Mask2Former / PointRend:
``uncertain_point_coords``, ``point_sample_logits``, ``point_sample_masks``). ``litesam_pl.losses`` re-exports them.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "POINT_OVERSAMPLE",
    "POINT_IMPORTANCE",
    "uncertain_point_coords",
    "point_sample_logits",
    "point_sample_masks",
    "block_downsample_masks",
    "downsample_masks",
    "upsample_prompt_logits",
]


# ----------------------------------------------------------------------------------------------------------------
# point-sampled mask loss (Mask2Former / PointRend: importance sampling of uncertain points)
# ----------------------------------------------------------------------------------------------------------------
POINT_OVERSAMPLE = 3.0  # Mask2Former's oversample_ratio: candidates per kept point
POINT_IMPORTANCE = 0.75  # Mask2Former's importance_sample_ratio: share of points taken from the most uncertain


@torch.no_grad()
def uncertain_point_coords(logits: Tensor, num_points: int, oversample: float = POINT_OVERSAMPLE,
                           importance: float = POINT_IMPORTANCE) -> Tensor:
    """Mask2Former's training points: ``oversample * P`` uniform candidates per mask, the ``importance * P`` most
    uncertain of them (smallest ``|logit|``, read bilinearly from the low-res logits) plus uniform random points.

    Args:
        logits: ``[N, h, w]`` low-resolution logits (one map per mask).
        num_points: P.
    Returns:
        ``[N, P, 2]`` (x, y) in [0, 1] of the whole input frame (the logits' frame).
    """
    N = logits.shape[0]
    n_cand = max(int(num_points * oversample), num_points)
    n_imp = int(num_points * importance)
    cand = torch.rand(N, n_cand, 2, device=logits.device)
    unc = -point_sample_logits(logits.detach(), cand).abs()
    idx = unc.topk(n_imp, dim=1).indices
    imp = cand.gather(1, idx.unsqueeze(-1).expand(-1, -1, 2))
    rand = torch.rand(N, num_points - n_imp, 2, device=logits.device)
    return torch.cat([imp, rand], dim=1)


def point_sample_logits(logits: Tensor, coords: Tensor) -> Tensor:
    """Bilinear read of ``[N, h, w]`` logits at ``[N, P, 2]`` (x, y) in [0, 1] -> ``[N, P]``.

    ``align_corners=False``: the value at a point equals that of the logits upsampled bilinearly to any size
    (``Sam.postprocess_masks``) at the same point, so the loss sees what inference thresholds."""
    grid = (2.0 * coords - 1.0).unsqueeze(1).to(logits.dtype)  # [N, 1, P, 2]
    out = F.grid_sample(logits.unsqueeze(1), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[:, 0, 0]


def point_sample_masks(masks: Tensor, coords: Tensor) -> Tensor:
    """Nearest read of boolean full-resolution masks ``[N, S, S]`` at ``[N, P, 2]`` (x, y) in [0, 1] -> ``[N, P]``
    float (pixel ``j`` covers ``[j, j + 1) / S``); a gather, no float copy of the masks."""
    S_h, S_w = masks.shape[-2:]
    x = (coords[..., 0] * S_w).long().clamp_(0, S_w - 1)
    y = (coords[..., 1] * S_h).long().clamp_(0, S_h - 1)
    return masks.flatten(1).gather(1, y * S_w + x).float()


def block_downsample_masks(masks: Tensor, size: Tuple[int, int]) -> Tensor:
    """``downsample_masks`` for sizes that divide ``S`` (the S/4 logits): majority of each block, counted in
    integers, without a float copy of the full-resolution masks. ``[..., S, S]`` bool -> ``[..., h, w]`` float."""
    h, w = size
    S_h, S_w = masks.shape[-2:]
    if S_h % h or S_w % w:
        return downsample_masks(masks, size)
    rh, rw = S_h // h, S_w // w
    counts = masks.reshape(*masks.shape[:-2], h, rh, w, rw).sum(dim=(-3, -1), dtype=torch.int32)
    return (2 * counts >= rh * rw).float()


def downsample_masks(masks: Tensor, size: Tuple[int, int]) -> Tensor:
    """Area-downsample boolean masks ``[..., S, S]`` to ``size`` and binarise at 0.5 (targets for low-res logits)."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks.float()
    lead = masks.shape[:-2]
    m = masks.float().reshape(-1, 1, *masks.shape[-2:])
    m = F.interpolate(m, size=size, mode="area")
    return (m >= 0.5).float().reshape(*lead, *size)


def upsample_prompt_logits(logits: Tensor, size: int) -> Tensor:
    """``[B, K, M, h, w]`` low-res logits of K prompts -> ``[B, K, M, size, size]`` (bilinear, as
    ``Sam.postprocess_masks``); returned as they are when already ``size`` wide. (Not
    ``inference.segevery_masks.upsample_logits``, which also crops the padding and resizes to the original image.)"""
    B, K, M = logits.shape[:3]
    if logits.shape[-1] == size:
        return logits
    up = F.interpolate(logits.flatten(0, 2).unsqueeze(1), size=(size, size), mode="bilinear", align_corners=False)
    return up.view(B, K, M, size, size)
