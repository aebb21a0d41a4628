"""SAM's ``PromptEncoder``, optionally with every box prompt also given as a dense mask prompt (``box_mask_prompt``).

SAM encodes a box only as two corner tokens (sparse); where the box ends in the image has to be learnt by the
decoder's attention from the corners' positional encodings. SAM learns that from 11M images; at the real-photo
recipes' scale (364 photos, minutes of CPU) the decoder had not learnt it after 1,800 steps: its masks spilled out
of their boxes (docs/benchmarks.md). ``BoxMaskPromptEncoder`` also rasterises each box on SAM's mask-prompt grid
(``4h x 4w``, the low-res logits' grid; ``box_mask_logits``: a ramp inside the box that is positive inside the box's
inscribed ellipse, -1 outside the box) and passes it through SAM's own mask-prompt path (``mask_downscaling``, the path SAM's interactive training feeds the previous mask through), so the box is
present in the image-side tokens from the first layer. The box carries no more information than its corners; this
only changes what the decoder has to learn. Same sub-modules and parameters as ``PromptEncoder`` (checkpoints of
either load into the other). A box together with an explicit ``masks`` prompt keeps the explicit mask.

``dense_embeddings`` is the one place every decode path (training's batched decoder, SegEvery, the ONNX decoder)
gets the dense prompt embeddings from; paths that call ``prompt_encoder(points, boxes, masks)`` (``SamPredictor``,
the benchmarks' prompting) get the box mask through ``forward``.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from segment_anything.modeling import PromptEncoder
from torch import Tensor

__all__ = ["BoxMaskPromptEncoder", "box_mask_logits", "dense_embeddings", "uses_box_mask"]


def box_mask_logits(boxes: Tensor, grid_hw: Tuple[int, int], cell: float) -> Tensor:
    """Boxes ``[N, 4]`` (xyxy input pixels) -> ``[N, 1, H, W]`` mask logits on a grid of ``cell``-pixel cells: at a
    cell centre inside the box (edges included) ``1 - r``, with ``r`` the centre's elliptical radius in the box
    (``((x - cx) / (w / 2))^2 + ((y - cy) / (h / 2))^2``, square-rooted: 0 at the box centre, 1 on the inscribed
    ellipse, sqrt(2) in the corners), so the prompt is positive inside the ellipse and in [1 - sqrt(2), 0) in the
    box's corners; -1 outside the box. Half-sides shorter than half a cell count as half a cell."""
    gh, gw = grid_hw
    b = boxes.reshape(-1, 4)
    ys = (torch.arange(gh, device=b.device, dtype=b.dtype) + 0.5) * cell
    xs = (torch.arange(gw, device=b.device, dtype=b.dtype) + 0.5) * cell
    in_y = (ys[None] >= b[:, 1:2]) & (ys[None] <= b[:, 3:4])
    in_x = (xs[None] >= b[:, 0:1]) & (xs[None] <= b[:, 2:3])
    inside = in_y[:, :, None] & in_x[:, None, :]
    half_w = ((b[:, 2] - b[:, 0]) / 2).clamp_min(cell / 2)
    half_h = ((b[:, 3] - b[:, 1]) / 2).clamp_min(cell / 2)
    dx = (xs[None] - (b[:, 0:1] + b[:, 2:3]) / 2) / half_w[:, None]
    dy = (ys[None] - (b[:, 1:2] + b[:, 3:4]) / 2) / half_h[:, None]
    ramp = 1 - (dy[:, :, None] ** 2 + dx[:, None, :] ** 2).sqrt()
    return torch.where(inside, ramp, torch.full_like(ramp, -1.0))[:, None]


class BoxMaskPromptEncoder(PromptEncoder):
    """``PromptEncoder`` that also feeds each box as a dense mask prompt (see the module docstring)."""

    @property
    def mask_cell(self) -> float:
        """Input pixels per cell of the mask-prompt grid (SAM: ``4x`` the image embedding's grid, i.e. 4 px)."""
        return self.input_image_size[0] / (4 * self.image_embedding_size[0])

    def box_dense(self, boxes: Tensor, hw: Optional[Tuple[int, int]] = None) -> Tensor:
        """Boxes ``[N, 4]`` -> dense embeddings ``[N, C, h, w]`` through SAM's mask-prompt path."""
        h, w = hw or self.image_embedding_size
        return self.mask_downscaling(box_mask_logits(boxes, (4 * h, 4 * w), self.mask_cell))

    def forward(self, points: Optional[Tuple[Tensor, Tensor]], boxes: Optional[Tensor],
                masks: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        if masks is None and boxes is not None:
            masks = box_mask_logits(boxes, tuple(4 * s for s in self.image_embedding_size), self.mask_cell)
        return super().forward(points, boxes, masks)


def uses_box_mask(prompt_encoder: PromptEncoder) -> bool:
    """Whether ``prompt_encoder`` feeds boxes as dense mask prompts too."""
    return isinstance(prompt_encoder, BoxMaskPromptEncoder)


def dense_embeddings(prompt_encoder: PromptEncoder, boxes: Optional[Tensor], n: int, hw: Tuple[int, int]) -> Tensor:
    """The dense prompt embeddings ``[n, C, h, w]`` of ``n`` prompts: the box masks' (``boxes [n, 4]`` given and a
    ``BoxMaskPromptEncoder``), else SAM's learnt no-mask embedding (a broadcast view)."""
    if boxes is not None and uses_box_mask(prompt_encoder):
        got = boxes.reshape(-1, 4).shape[0]
        if got != n:
            raise ValueError(f"dense_embeddings: {got} boxes for {n} prompts")
        return prompt_encoder.box_dense(boxes, hw)
    return prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(n, -1, *hw)
