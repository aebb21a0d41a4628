"""SAM's mask decoder over the prompts of several images in one call (training and validation).

SAM's ``MaskDecoder.predict_masks`` takes the embedding of ONE image and repeats it for every prompt
(``torch.repeat_interleave(image_embeddings, n_prompts)``), so a batch of B images costs B decoder calls, each a few
thousand small operations, so a training step grows with B in kernel launches and is launch-bound on a GPU
(docs/benchmarks.md, "One-shot GPU check"). :func:`decode_prompts` runs the same computation with the image embedding given per prompt
(``[N, C, h, w]``, each image's embedding repeated for its prompts), through SAM's own sub-modules (two-way
transformer, upscaling, hypernetwork MLPs, IoU head): one call for all B x K prompts, the same numbers as B calls
(``tests/models/test_batched_decode.py`` checks both against SAM's ``MaskDecoder.forward``, values and gradients).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder
from torch import Tensor

from .precision import no_autocast

__all__ = ["decode_prompts", "supports_batched_decode", "embed_prompts", "dense_pe", "prompt_layout", "LABEL_PAD", "LABEL_NEG",
           "LABEL_POS", "LABEL_BOX_TL", "LABEL_BOX_BR"]

# point labels of the (coords, labels) prompt layout: SAM's (-1 padding, 0 negative, 1 positive) plus box corners
LABEL_PAD, LABEL_NEG, LABEL_POS, LABEL_BOX_TL, LABEL_BOX_BR = -1, 0, 1, 2, 3


def prompt_layout(points: Optional[Tuple[Tensor, Tensor]], boxes: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """SAM's prompt forms as one ``(coords [N, P, 2], labels [N, P])`` layout, in SAM's token order.

    ``points = (coords [N, n, 2], labels [N, n])`` and/or ``boxes [N, 4]`` (xyxy): points first, then the two box
    corners (labels 2, 3); points without a box get one padding point (label -1) as ``PromptEncoder`` adds.
    """
    cs, ls = [], []
    if points is not None:
        c, lab = points
        cs.append(c)
        ls.append(lab)
        if boxes is None:
            cs.append(c.new_zeros(c.shape[0], 1, 2))
            ls.append(lab.new_full((lab.shape[0], 1), LABEL_PAD))
    if boxes is not None:
        cs.append(boxes.reshape(-1, 2, 2))
        dtype = ls[0].dtype if ls else torch.long
        ls.append(torch.tensor([LABEL_BOX_TL, LABEL_BOX_BR], dtype=dtype, device=boxes.device).expand(boxes.shape[0], 2))
    if not cs:
        raise ValueError("prompt_layout needs points and/or boxes")
    return torch.cat(cs, 1), torch.cat(ls, 1)


def dense_pe(prompt_encoder: PromptEncoder, hw: Optional[Tuple[int, int]] = None) -> Tensor:
    """SAM's dense positional encoding ``[1, C, h, w]`` (``PromptEncoder.get_dense_pe``) computed in fp32 even under
    autocast: in bf16 the random-Fourier features of the grid err by the equivalent of ~0.6-0.9 px."""
    gauss = prompt_encoder.pe_layer.positional_encoding_gaussian_matrix
    with no_autocast(gauss.device):
        return prompt_encoder.pe_layer(tuple(hw or prompt_encoder.image_embedding_size)).unsqueeze(0)


def embed_prompts(prompt_encoder: PromptEncoder, coords: Tensor, labels: Tensor) -> Tensor:
    """Sparse prompt embeddings for points and box corners in one ``(coords, labels)`` layout.

    Args:
        coords: ``[N, P, 2]`` xy in input-frame pixels (the ``S x S`` padded model input).
        labels: ``[N, P]`` with -1 padding, 0 negative, 1 positive, 2 box top-left, 3 box bottom-right.
    Returns:
        ``[N, P, C]``, equal to ``PromptEncoder`` for ``points=(pt, [1]), boxes=None`` when given
        ``[[pt, 0], [1, -1]]``, and for ``points + boxes`` when given ``[pt, tl, br]`` / ``[1, 2, 3]``
        (:func:`prompt_layout` builds these). Written with ``where``/products, no boolean indexing: no host sync
        on a GPU, no graph break under ``torch.compile``, and it exports to ONNX.
    """
    with no_autocast(coords.device):  # fp32 coordinates (bf16: ~1 px off)
        emb = prompt_encoder.pe_layer.forward_with_coords(coords.float() + 0.5, prompt_encoder.input_image_size)
    labels = labels.unsqueeze(-1)
    emb = torch.where(labels == LABEL_PAD, torch.zeros_like(emb), emb)
    emb = emb + (labels == LABEL_PAD).to(emb.dtype) * prompt_encoder.not_a_point_embed.weight
    for i in range(prompt_encoder.num_point_embeddings):
        emb = emb + (labels == i).to(emb.dtype) * prompt_encoder.point_embeddings[i].weight
    return emb


def supports_batched_decode(mask_decoder: object) -> bool:
    """Whether ``mask_decoder`` has SAM's ``MaskDecoder`` layout (what :func:`decode_prompts` relies on)."""
    return isinstance(mask_decoder, MaskDecoder) and type(mask_decoder).predict_masks is MaskDecoder.predict_masks


def decode_prompts(
    mask_decoder: MaskDecoder,
    src: Tensor,
    image_pe: Tensor,
    sparse_prompt_embeddings: Tensor,
    dense_prompt_embeddings: Tensor,
    multimask_output: bool,
) -> Tuple[Tensor, Tensor]:
    """SAM's ``MaskDecoder.forward`` with a per-prompt image embedding.

    Args:
        mask_decoder: SAM's ``MaskDecoder`` (its sub-modules are used as they are).
        src: ``[N, C, h, w]`` image embedding of each prompt's image (prompt n of image i: row n holds image i's).
        image_pe: ``[1, C, h, w]`` dense positional encoding.
        sparse_prompt_embeddings: ``[N, T, C]`` from SAM's ``PromptEncoder``.
        dense_prompt_embeddings: ``[N, C, h, w]`` (the no-mask embedding).
        multimask_output: the 3 multimask outputs (tokens 1..3) or the single one (token 0).
    Returns:
        ``masks [N, M, 4h, 4w]`` low-res logits and ``iou_pred [N, M]`` (M = 3 or 1), as ``MaskDecoder.forward``.
    """
    d = mask_decoder
    n = sparse_prompt_embeddings.shape[0]
    output_tokens = torch.cat([d.iou_token.weight, d.mask_tokens.weight], dim=0)
    tokens = torch.cat((output_tokens.unsqueeze(0).expand(n, -1, -1), sparse_prompt_embeddings), dim=1)
    src = src + dense_prompt_embeddings
    pos_src = image_pe.expand(n, -1, -1, -1)
    b, c, h, w = src.shape
    hs, src = d.transformer(src, pos_src, tokens)
    iou_token_out = hs[:, 0, :]
    mask_tokens_out = hs[:, 1 : (1 + d.num_mask_tokens), :]
    upscaled = d.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
    hyper: List[Tensor] = [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(d.output_hypernetworks_mlps)]
    hyper_in = torch.stack(hyper, dim=1)
    b, c, h, w = upscaled.shape
    masks = (hyper_in @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)
    iou_pred = d.iou_prediction_head(iou_token_out)
    sl = slice(1, None) if multimask_output else slice(0, 1)
    return masks[:, sl], iou_pred[:, sl]
