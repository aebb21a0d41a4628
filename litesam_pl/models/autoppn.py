"""AutoPPN (Sec. 3.3, Fig. 2(c)): automatic prompt proposals (points + boxes) from the image embedding.

``AutoPPN(embedding [B, C, S/16, S/16])`` returns, at stride 8 of the input (upsampled inside the head):

* ``heatmap_logits`` ``[B, G, P, P]``: point-prompt confidence per size group (sigmoid = confidence; the target is
  the normalised distance transform, so the peak is a mask's most interior point),
* ``boxes`` ``[B, G, 4, P, P]``: non-negative (left, top, right, bottom) distances from the cell centre to the box
  sides, divided by the input side S. The head regresses them in grid cells (``softplus(raw) / P``, FCOS/CenterNet
  style), so the raw outputs are O(1) at any input size and the regression gradient is not damped by ``1/S``.

``AutoPPN.decode`` applies Point-NMS (a 3x3 local-maximum max-pool) and keeps the top-N points per image, fully
vectorised over the batch. With ``input_sizes`` (per-image (h, w) before padding) only cells whose centre lies in
the image compete, so no prompt ever lies in the padding, whatever the score threshold.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .litevit import LiteViTBlock
from .precision import no_autocast

__all__ = ["AutoPPN", "point_nms", "local_maxima", "cells_inside", "decode_proposals", "TOP_N", "SCORE_THRESHOLD",
           "NMS_KERNEL"]

# the decoding defaults, once: the signatures of ``decode_proposals`` and ``AutoPPN.decode`` both name them (the
# score threshold in effect is read from ``AutoPPN.decode``'s signature, so it keeps explicit defaults)
TOP_N = 256  # proposals per image
SCORE_THRESHOLD = 0.05  # sigmoid score a proposal needs to be valid
NMS_KERNEL = 3  # Point-NMS window (cells)

# per-image (h, w) of the resized image inside the padded input: [(h, w), ...] or a [B, 2] tensor
InputSizes = Optional[Union[torch.Tensor, Sequence[Sequence[float]]]]


def _conv_norm_act(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.GroupNorm(1, cout), nn.GELU())


def point_nms(heat: torch.Tensor, kernel: int = 3) -> torch.Tensor:
    """Point-NMS: keep a cell only where it equals the max of its ``kernel x kernel`` neighbourhood.

    ``heat`` ``[B, G, H, W]`` -> bool ``[B, G, H, W]`` (ties on a plateau are all kept, as in CenterNet).
    """
    if kernel <= 1:
        return torch.ones_like(heat, dtype=torch.bool)
    if kernel % 2 == 0:
        raise ValueError(f"nms_kernel must be odd, got {kernel}")
    hmax = F.max_pool2d(heat, kernel, stride=1, padding=kernel // 2)
    return heat == hmax


def _frame_hw(img_size: Union[int, Sequence[int]]) -> Tuple[float, float]:
    """``img_size`` (side S, or the padded input ``(H, W)``) -> ``(H, W)`` as floats."""
    if isinstance(img_size, (int, float)):
        return float(img_size), float(img_size)
    return float(img_size[0]), float(img_size[1])


def _input_hw(input_sizes: InputSizes, b: int, frame: Tuple[float, float], device: torch.device) -> torch.Tensor:
    """Per-image ``(h, w)`` of the resized image inside the padded frame -> float ``[B, 2]`` (None: the frame)."""
    if input_sizes is None:
        return torch.tensor([frame], dtype=torch.float32, device=device).expand(b, 2)
    hw = torch.as_tensor(input_sizes, dtype=torch.float32).to(device).reshape(-1, 2)
    if hw.shape[0] != b:
        raise ValueError(f"input_sizes has {hw.shape[0]} rows (h, w) for a batch of {b}")
    return hw


def cells_inside(input_hw: torch.Tensor, grid: Tuple[int, int], frame: Tuple[float, float]) -> torch.Tensor:
    """bool ``[B, P, Q]``: cells of the ``P x Q`` map over the ``frame`` (H, W) whose centre lies inside the
    image of size ``input_hw [B, 2]`` (h, w), i.e. not in the zero padding."""
    p, q = grid
    dev = input_hw.device
    ys = (torch.arange(p, device=dev, dtype=torch.float32) + 0.5) * (frame[0] / p)
    xs = (torch.arange(q, device=dev, dtype=torch.float32) + 0.5) * (frame[1] / q)
    return (ys[None, :, None] < input_hw[:, 0, None, None]) & (xs[None, None, :] < input_hw[:, 1, None, None])


def local_maxima(logits: torch.Tensor, inside: torch.Tensor, kernel: int = 3) -> torch.Tensor:
    """Point-NMS restricted to the image: bool ``[B, G, P, Q]``, True where a cell is inside (``inside [B, P, Q]``),
    has a finite logit and is the maximum of its ``kernel x kernel`` neighbourhood of in-image cells."""
    finite = torch.isfinite(logits) & inside[:, None]
    heat = logits.masked_fill(~finite, float("-inf"))  # padding / nan / inf can neither win nor suppress
    return point_nms(heat, kernel) & finite


def decode_proposals(
    heatmap_logits: torch.Tensor,
    boxes: torch.Tensor,
    img_size: Union[int, Sequence[int]],
    top_n: int = TOP_N,
    score_threshold: Optional[float] = SCORE_THRESHOLD,
    nms_kernel: int = NMS_KERNEL,
    clip: bool = True,
    input_sizes: InputSizes = None,
) -> Dict[str, torch.Tensor]:
    """Turn AutoPPN maps into ranked prompts, in one batched pass: Point-NMS and top-k (``_top_maxima``), cell
    centres, boxes, clipping, padding (the helpers below).

    Args:
        heatmap_logits: ``[B, G, P, Q]`` logits.
        boxes: ``[B, G, 4, P, Q]`` (l, t, r, b) distances / S.
        img_size: input side S (int) or the padded input ``(H, W)``; the cell centre of cell (y, x) is
            ``((x + 0.5) * W / Q, (y + 0.5) * H / P)`` and distances are multiplied by ``max(H, W)``.
        top_n: N proposals per image (padded with ``valid=False`` rows when fewer local maxima exist).
        score_threshold: proposals with a sigmoid score below it are marked ``valid=False`` (None or 0: every
            in-image local maximum is valid).
        nms_kernel: Point-NMS window (odd; 1 disables it).
        clip: clip boxes to the image (``input_sizes``; the input frame without them).
        input_sizes: per-image ``(h, w)`` of the resized image before padding (a list of pairs or a ``[B, 2]``
            tensor, in the units of ``img_size``); None = the whole frame. Cells whose centre lies outside are
            never proposals, whatever the threshold, and neither win nor suppress in Point-NMS.
    Returns:
        dict with ``points [B, N, 2]`` (xy input pixels), ``boxes [B, N, 4]`` (xyxy input pixels),
        ``scores [B, N]``, ``groups [B, N]`` (int64), ``valid [B, N]`` (bool), sorted by score, descending.
        A row is valid only if it is an in-image local maximum with a finite logit and a score over the
        threshold, so every valid point lies in ``[0, w) x [0, h)``. Rows that are no local maximum (fewer
        maxima than N) are padding: zero points, boxes, scores and ``valid=False``.
    """
    _check_maps(heatmap_logits, boxes)
    b, _, p, q = heatmap_logits.shape
    frame = _frame_hw(img_size)
    logits = heatmap_logits.detach().float()
    hw = _input_hw(input_sizes, b, frame, logits.device)  # [B, 2] (h, w)
    top, idx = _top_maxima(logits, cells_inside(hw, (p, q), frame), nms_kernel, int(top_n))
    real = torch.isfinite(top)  # [B, k]: an in-image local maximum (its logit is finite), else a padding row
    scores = torch.where(real, top.sigmoid(), torch.zeros_like(top))
    groups = torch.where(real, idx // (p * q), torch.zeros_like(idx))
    points = _cell_centres(idx % (p * q), (p, q), frame)  # [B, k, 2]
    xyxy = _boxes_at(boxes, idx, points, max(frame))
    if clip:
        xyxy = _clip_boxes(xyxy, hw)
    points = torch.where(real[..., None], points, torch.zeros_like(points))
    xyxy = torch.where(real[..., None], xyxy, torch.zeros_like(xyxy))
    valid = real if score_threshold is None else real & (scores >= float(score_threshold))
    return _pad_rows({"points": points, "boxes": xyxy, "scores": scores, "groups": groups, "valid": valid},
                     int(top_n))


def _check_maps(heatmap_logits: torch.Tensor, boxes: torch.Tensor) -> None:
    """Raise a ``ValueError`` unless the maps are ``[B, G, P, Q]`` logits and ``[B, G, 4, P, Q]`` distances."""
    if heatmap_logits.ndim != 4 or boxes.ndim != 5 or boxes.shape[2] != 4:
        raise ValueError(
            f"expected heatmap_logits [B, G, P, Q] and boxes [B, G, 4, P, Q], got "
            f"{tuple(heatmap_logits.shape)} and {tuple(boxes.shape)}"
        )


def _top_maxima(logits: torch.Tensor, inside: torch.Tensor, nms_kernel: int, n: int
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The ``min(n, G*P*Q)`` best in-image local maxima of ``logits [B, G, P, Q]`` per image: their logits and
    flat (group, cell) indices ``[B, k]``, sorted descending, the non-maxima (logit -inf) last."""
    is_max = local_maxima(logits, inside, nms_kernel).flatten(1)  # [B, G*P*Q]
    ranked = logits.flatten(1).masked_fill(~is_max, float("-inf"))  # rank on logits: no sigmoid saturation ties
    return ranked.topk(min(n, ranked.shape[1]), dim=1)


def _cell_centres(cell: torch.Tensor, grid: Tuple[int, int], frame: Tuple[float, float]) -> torch.Tensor:
    """xy input pixels ``[B, k, 2]`` of the centres of the flat cell indices ``cell [B, k]`` of the ``P x Q`` map
    over the ``frame`` (H, W)."""
    p, q = grid
    ys = (cell // q).float()
    xs = (cell % q).float()
    return torch.stack([(xs + 0.5) * (frame[1] / q), (ys + 0.5) * (frame[0] / p)], dim=-1)


def _boxes_at(boxes: torch.Tensor, idx: torch.Tensor, points: torch.Tensor, side: float) -> torch.Tensor:
    """xyxy boxes ``[B, k, 4]`` (input pixels) around ``points``: the (l, t, r, b) distances of ``boxes
    [B, G, 4, P, Q]`` at the flat (group, cell) indices ``idx [B, k]``, times the input side."""
    b, g, _, p, q = boxes.shape
    dist = boxes.detach().float().permute(0, 1, 3, 4, 2).reshape(b, g * p * q, 4)
    dist = dist.gather(1, idx.unsqueeze(-1).expand(-1, -1, 4)).clamp_min(0) * side
    return torch.cat([points - dist[..., :2], points + dist[..., 2:]], dim=-1)


def _clip_boxes(xyxy: torch.Tensor, hw: torch.Tensor) -> torch.Tensor:
    """Boxes ``[B, k, 4]`` clipped to each image ``[0, w] x [0, h]`` (``hw [B, 2]``)."""
    limit = torch.stack([hw[:, 1], hw[:, 0], hw[:, 1], hw[:, 0]], dim=-1)[:, None]  # [B, 1, 4] (w, h, w, h)
    return torch.minimum(xyxy.clamp_min(0), limit)


def _pad_rows(out: Dict[str, torch.Tensor], n: int) -> Dict[str, torch.Tensor]:
    """``decode_proposals``' outputs with ``k`` rows padded to ``n`` rows (zeros, ``valid=False``)."""
    pad = n - out["scores"].shape[1]
    if pad <= 0:
        return out
    return {
        "points": F.pad(out["points"], (0, 0, 0, pad)),
        "boxes": F.pad(out["boxes"], (0, 0, 0, pad)),
        "scores": F.pad(out["scores"], (0, pad)),
        "groups": F.pad(out["groups"], (0, pad)),
        "valid": F.pad(out["valid"], (0, pad), value=False),
    }


class AutoPPN(nn.Module):
    """Automated Prompt Proposal Network head on a ``[B, in_chans, S/16, S/16]`` image embedding.

    Layout: 1x1 reduce (in_chans -> embed_dim) -> stem (``mspm``: ``stem_depth`` LiteViT/MSPM blocks; ``conv``: a
    plain 3x3 conv-norm-act, the Table 2 baseline) -> 2x transposed-conv upsample to stride 8 (head_dim) ->
    two heads (3x3 conv-GELU-1x1): point heatmap (G channels) and box distances (4G channels, softplus).

    Args:
        in_chans: embedding channels (256).
        embed_dim: width of the stem at stride 16.
        head_dim: width of the heads at stride 8.
        num_groups: G, size groups (3: large/medium/small; 1 without object grouping).
        stem: ``"mspm"`` or ``"conv"``.
        stem_depth: number of MSPM blocks in the ``mspm`` stem.
        stem_mlp_ratio: ConvMLP ratio of those blocks.
        input_stride: stride of the embedding (16).
        stride: output stride (8).
        heatmap_prior: initial point confidence; the heatmap bias is ``-log((1 - p) / p)`` (0.1 -> -2.19).
        box_init: initial box distance, in grid cells (stride units), the softplus starts at.
    """

    def __init__(
        self,
        in_chans: int = 256,
        embed_dim: int = 128,
        head_dim: int = 64,
        num_groups: int = 3,
        stem: str = "mspm",
        stem_depth: int = 2,
        stem_mlp_ratio: float = 2.0,
        input_stride: int = 16,
        stride: int = 8,
        heatmap_prior: float = 0.1,
        box_init: float = 1.0,
    ) -> None:
        super().__init__()
        if stem not in ("mspm", "conv"):
            raise ValueError(f"AutoPPN stem must be 'mspm' or 'conv', got {stem!r}")
        if num_groups < 1:
            raise ValueError(f"num_groups must be >= 1, got {num_groups}")
        if input_stride % stride:
            raise ValueError(f"input_stride {input_stride} must be a multiple of stride {stride}")
        self.in_chans = in_chans
        self.num_groups = int(num_groups)
        self.stem_type = stem
        self.input_stride = int(input_stride)
        self.stride = int(stride)

        self.reduce = _conv_norm_act(in_chans, embed_dim, 1)
        if stem == "mspm":
            self.stem = nn.Sequential(
                *[LiteViTBlock(embed_dim, stem_mlp_ratio, mixer="mspm") for _ in range(stem_depth)]
            )
        else:
            self.stem = _conv_norm_act(embed_dim, embed_dim, 3)
        factor = self.input_stride // self.stride
        if factor == 1:
            self.upsample = _conv_norm_act(embed_dim, head_dim, 1)
        else:
            self.upsample = nn.Sequential(
                nn.ConvTranspose2d(embed_dim, head_dim, factor, stride=factor, bias=False),
                nn.GroupNorm(1, head_dim),
                nn.GELU(),
            )
        self.heatmap_head = nn.Sequential(
            nn.Conv2d(head_dim, head_dim, 3, padding=1), nn.GELU(), nn.Conv2d(head_dim, self.num_groups, 1)
        )
        self.box_head = nn.Sequential(
            nn.Conv2d(head_dim, head_dim, 3, padding=1), nn.GELU(), nn.Conv2d(head_dim, 4 * self.num_groups, 1)
        )
        # CenterNet-style prior so the focal/MSE heatmap loss starts stable; small boxes at start
        nn.init.constant_(self.heatmap_head[-1].bias, -math.log((1 - heatmap_prior) / heatmap_prior))
        nn.init.normal_(self.heatmap_head[-1].weight, std=0.001)
        nn.init.constant_(self.box_head[-1].bias, math.log(math.expm1(box_init)))
        nn.init.normal_(self.box_head[-1].weight, std=0.001)

    def forward(self, embedding: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``[B, C, h, w]`` -> ``{"heatmap_logits": [B, G, P, Q], "boxes": [B, G, 4, P, Q]}``, P = h * 16 / 8."""
        x = self.upsample(self.stem(self.reduce(embedding)))
        # the two heads in fp32 even under autocast: the heatmap logits start within ~1e-3 of -2.197 (focal prior),
        # where bf16's 8 mantissa bits make them all one value and hard-negative mining would pick arbitrary cells
        with no_autocast(x.device):
            x = x.float()
            heat = self.heatmap_head(x)
            box = F.softplus(self.box_head(x))
        b, _, p, q = box.shape
        box = box / max(p, q)  # grid cells -> fraction of the input side S (S = P * stride)
        return {"heatmap_logits": heat, "boxes": box.view(b, self.num_groups, 4, p, q)}

    @staticmethod
    def decode(
        outputs: Dict[str, torch.Tensor],
        img_size: Union[int, Tuple[int, int]],
        top_n: int = TOP_N,
        score_threshold: Optional[float] = SCORE_THRESHOLD,
        nms_kernel: int = NMS_KERNEL,
        clip: bool = True,
        input_sizes: InputSizes = None,
    ) -> Dict[str, torch.Tensor]:
        """Point-NMS + top-N on ``forward``'s outputs; see ``decode_proposals`` for the arguments (``input_sizes``:
        per-image ``(h, w)`` before padding; only cells inside it are proposals) and the returned dict."""
        return decode_proposals(
            outputs["heatmap_logits"], outputs["boxes"], img_size, top_n, score_threshold, nms_kernel, clip,
            input_sizes=input_sizes,
        )
