"""Our batched SAM mask decoder: the stock ``MaskDecoder`` math with the prompt-independent work hoisted.

SegEvery decodes hundreds of prompts against ONE image embedding. SAM's ``MaskDecoder.predict_masks``
repeats the image embedding once per prompt (``repeat_interleave``) and projects ``1600 x 256`` image
tokens (``S = 640``) per prompt in every attention layer. ``FastMaskDecoder`` reuses the decoder's own
sub-modules (no weight copies) and computes the same function with three rewrites:

1. What does not depend on the prompt is computed once per image: ``src = embedding + no_mask_embed``
   (no mask prompt: the dense embedding is a constant), the positional encoding, and, in the first
   two-way block, where the image tokens are still identical for every prompt, the image-side
   ``k_proj(src + pe)`` / ``v_proj(src)`` of the token-to-image attention and the image-side
   ``q_proj(src + pe)`` of the image-to-token attention. After that block the image tokens differ per
   prompt (``norm4(keys + attn_out)``), so nothing later is shareable.
2. In the later blocks the projections are moved to the small side ("absorbed" into the ``H * T``
   prompt-token rows, ``T`` ~ 7 tokens, ``H`` = 8 heads): ``softmax(q W_k (x + pe)^T)`` and
   ``(attn x) W_v^T`` instead of projecting all ``L = h * w`` image tokens, and the image-to-token
   output goes through ``attn @ (v W_o^T)``; the cost per prompt drops from ``L * C * C/2`` to
   ``L * C * H * T`` per projection pair. Softmax-invariant bias terms are dropped.
3. Every per-prompt tensor lives in one contiguous ``[N, L, C]`` batch; the large products are single
   ``bmm``/GEMM calls over all prompts and heads; only the requested mask tokens get hypernetwork rows.

The result equals ``MaskDecoder(...)`` to float rounding (tests check 1e-4). Anything this rewrite does
not recognise (a transformer that is not SAM's ``TwoWayTransformer``) falls back to the stock decoder.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.mask_decoder import MaskDecoder
from segment_anything.modeling.prompt_encoder import PromptEncoder
from segment_anything.modeling.transformer import Attention, TwoWayAttentionBlock, TwoWayTransformer

__all__ = [
    "FastMaskDecoder",
    "ImageCache",
    "embed_prompts",
    "stock_decode",
    "LABEL_PAD",
    "LABEL_NEG",
    "LABEL_POS",
    "LABEL_BOX_TL",
    "LABEL_BOX_BR",
]

# the (coords, labels) prompt layout and its embedding live with the model's batched decoder (one home)
from litesam_pl.models.batched_decode import (  # noqa: E402
    LABEL_BOX_BR, LABEL_BOX_TL, LABEL_NEG, LABEL_PAD, LABEL_POS, dense_pe, embed_prompts)
from litesam_pl.models.prompt_encoder import dense_embeddings  # noqa: E402


def stock_decode(
    mask_decoder: MaskDecoder,
    prompt_encoder: PromptEncoder,
    image_embedding: Tensor,
    sparse: Tensor,
    multimask_output: bool,
    boxes: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """SAM's own decoder call for ``N`` prompts of one image: ``[1, C, h, w]`` + ``[N, T, C]``
    -> low-res masks ``[N, M, 4h, 4w]``, IoU ``[N, M]``. ``boxes [N, 4]``: the prompts' boxes, for a prompt
    encoder that also feeds them as dense mask prompts (``models.prompt_encoder.dense_embeddings``)."""
    dense = dense_embeddings(prompt_encoder, boxes, sparse.shape[0], tuple(image_embedding.shape[-2:]))
    return mask_decoder(
        image_embeddings=image_embedding,
        image_pe=prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask_output,
    )


@dataclass
class ImageCache:
    """Prompt-independent tensors of one image (computed once, reused by every prompt chunk).

    ``x``: ``[L, C]`` image tokens ``embedding + no_mask_embed``; ``pe``: ``[L, C]`` positional encoding;
    ``k1``/``v1``: ``[H, L, d]`` first-block token-to-image keys/values; ``q1``: ``[H, L, d]`` first-block
    image-to-token queries; ``hw``: embedding size ``(h, w)``.
    """

    x: Tensor
    pe: Tensor
    k1: Tensor
    v1: Tensor
    q1: Tensor
    hw: Tuple[int, int]


def _heads(x: Tensor, num_heads: int) -> Tensor:
    """``[..., n, H*d]`` -> ``[..., H, n, d]``."""
    *lead, n, c = x.shape
    return x.reshape(*lead, n, num_heads, c // num_heads).transpose(-3, -2)


class FastMaskDecoder(nn.Module):
    """Batched, hoisted evaluation of a SAM ``MaskDecoder`` (holds references, copies no weights).

    Args:
        mask_decoder: SAM's ``MaskDecoder`` whose parameters are used.
        prompt_encoder: SAM's ``PromptEncoder`` (dense PE, ``no_mask_embed``).
    """

    def __init__(self, mask_decoder: MaskDecoder, prompt_encoder: PromptEncoder) -> None:
        super().__init__()
        # Plain attributes, not sub-modules: the parameters stay owned by the model.
        object.__setattr__(self, "mask_decoder", mask_decoder)
        object.__setattr__(self, "prompt_encoder", prompt_encoder)
        self.supported = self.is_supported(mask_decoder)

    @staticmethod
    def is_supported(mask_decoder: MaskDecoder) -> bool:
        """True when the decoder's transformer is SAM's ``TwoWayTransformer`` of ``TwoWayAttentionBlock``s."""
        t = getattr(mask_decoder, "transformer", None)
        return (
            isinstance(t, TwoWayTransformer)
            and len(t.layers) >= 1
            and all(isinstance(layer, TwoWayAttentionBlock) for layer in t.layers)
        )

    # ------------------------------------------------------------------ per image
    def prepare_image(self, image_embedding: Tensor) -> ImageCache:
        """``[1, C, h, w]`` (or ``[C, h, w]``) image embedding -> :class:`ImageCache`."""
        if image_embedding.dim() == 4:
            if image_embedding.shape[0] != 1:
                raise ValueError(f"prepare_image takes one image, got a batch of {image_embedding.shape[0]}")
            image_embedding = image_embedding[0]
        c, h, w = image_embedding.shape
        pe = dense_pe(self.prompt_encoder).to(image_embedding.dtype)[0]
        if pe.shape[-2:] != (h, w):
            raise ValueError(f"positional encoding is {tuple(pe.shape[-2:])} but the embedding is {(h, w)}")
        x = (image_embedding + self.prompt_encoder.no_mask_embed.weight.reshape(-1, 1, 1).to(image_embedding.dtype))
        x = x.flatten(1).transpose(0, 1).contiguous()  # [L, C]
        pe = pe.flatten(1).transpose(0, 1).contiguous()
        layer0 = self.mask_decoder.transformer.layers[0]
        t2i, i2t = layer0.cross_attn_token_to_image, layer0.cross_attn_image_to_token
        xpe = x + pe
        k1 = _heads(t2i.k_proj(xpe), t2i.num_heads).contiguous()
        v1 = _heads(t2i.v_proj(x), t2i.num_heads).contiguous()
        q1 = _heads(i2t.q_proj(xpe), i2t.num_heads).contiguous()
        return ImageCache(x=x, pe=pe, k1=k1, v1=v1, q1=q1, hw=(h, w))

    # ------------------------------------------------------------------ attention pieces
    @staticmethod
    def _t2i_shared(attn: Attention, q_in: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Token-to-image attention against shared image keys/values.

        q_in ``[N, T, C]``; k, v ``[H, L, d]`` -> ``[N, T, C]``."""
        n, t, _ = q_in.shape
        hh = attn.num_heads
        q = _heads(attn.q_proj(q_in), hh)  # [N, H, T, d]
        d = q.shape[-1]
        q = (q / math.sqrt(d)).transpose(0, 1).reshape(hh, n * t, d)  # [H, N*T, d]
        a = torch.softmax(torch.bmm(q, k.transpose(1, 2)), dim=-1)  # [H, N*T, L]
        out = torch.bmm(a, v).reshape(hh, n, t, d).permute(1, 2, 0, 3).reshape(n, t, hh * d)
        return attn.out_proj(out)

    @staticmethod
    def _t2i(attn: Attention, q_in: Tensor, keys: Tensor, pe: Tensor) -> Tensor:
        """Token-to-image attention with per-prompt image tokens, projections absorbed on the token side.

        q_in ``[N, T, C]``; keys ``[N, L, C]``; pe ``[L, C]`` -> ``[N, T, C]``.
        ``q . k_proj(x + pe) = (q W_k) . (x + pe) + const`` (the constant cancels in the softmax) and
        ``attn @ v_proj(x) = (attn @ x) W_v^T + b_v`` (attention rows sum to one)."""
        n, t, c = q_in.shape
        hh = attn.num_heads
        q = _heads(attn.q_proj(q_in), hh)  # [N, H, T, d]
        d = q.shape[-1]
        wk = attn.k_proj.weight.reshape(hh, d, c)  # [H, d, C]
        qw = torch.einsum("nhtd,hdc->nhtc", q / math.sqrt(d), wk).reshape(n, hh * t, c)  # [N, H*T, C]
        logits = torch.matmul(qw.reshape(n * hh * t, c), pe.t()).reshape(n, hh * t, -1)  # pe part: one GEMM
        logits.baddbmm_(qw.to(logits.dtype), keys.to(logits.dtype).transpose(1, 2))  # + (q W_k) x^T, in place
        a = torch.softmax(logits, dim=-1)  # [N, H*T, L]
        ax = torch.bmm(a, keys).reshape(n, hh, t, c)  # [N, H, T, C]
        wv = attn.v_proj.weight.reshape(hh, d, c)
        out = torch.einsum("nhtc,hdc->nthd", ax, wv).reshape(n, t, hh * d) + attn.v_proj.bias
        return attn.out_proj(out)

    @staticmethod
    def _i2t_out(attn: Attention, a: Tensor, v_tok: Tensor, residual: Tensor) -> Tensor:
        """``residual + sum_h a_h @ (v_h W_o,h^T) + b_o`` for the image-to-token attention.

        a ``[N, L, H, T]`` attention (softmax over T); v_tok ``[N, H, T, d]``; residual ``[N, L, C]`` or a
        shared ``[L, C]`` -> ``[N, L, C]``. Each head's weights sum to one over T, so ``b_o / H`` added to every
        row of ``v W_o^T`` adds exactly ``b_o``: bias and residual fuse into one ``baddbmm``."""
        n, l, hh, t = a.shape
        c = attn.out_proj.weight.shape[0]
        d = v_tok.shape[-1]
        wo = attn.out_proj.weight.reshape(c, hh, d)  # [C, H, d]
        vw = torch.einsum("nhtd,chd->nhtc", v_tok, wo).reshape(n, hh * t, c)  # [N, H*T, C]
        vw = vw + attn.out_proj.bias / hh
        if residual.dim() == 2:
            residual = residual.unsqueeze(0).expand(n, l, c)
        return torch.baddbmm(residual, a.reshape(n, l, hh * t), vw)

    @staticmethod
    def _i2t_shared(attn: Attention, q_img: Tensor, k_in: Tensor, v_in: Tensor, residual: Tensor) -> Tensor:
        """First-block image-to-token attention: shared image queries ``[H, L, d]``, tokens ``[N, T, C]``,
        shared residual ``[L, C]`` -> ``residual + attention output`` ``[N, L, C]``."""
        n, t, _ = k_in.shape
        hh, l, d = q_img.shape
        k = _heads(attn.k_proj(k_in), hh)  # [N, H, T, d]
        v = _heads(attn.v_proj(v_in), hh)
        kt = (k / math.sqrt(d)).permute(1, 3, 0, 2).reshape(hh, d, n * t)  # [H, d, N*T]
        logits = torch.bmm(q_img, kt)  # [H, L, N*T]
        a = torch.softmax(logits.reshape(hh, l, n, t), dim=-1).permute(2, 1, 0, 3)  # [N, L, H, T]
        return FastMaskDecoder._i2t_out(attn, a, v, residual)

    @staticmethod
    def _i2t(attn: Attention, keys: Tensor, pe: Tensor, k_in: Tensor, v_in: Tensor) -> Tensor:
        """Image-to-token attention with per-prompt image queries, ``q_proj`` absorbed on the token side.

        keys ``[N, L, C]``, pe ``[L, C]``, tokens ``[N, T, C]`` -> ``keys + attention output`` ``[N, L, C]``.
        ``q_proj(x + pe) . k = (x + pe) . (W_q^T k) + b_q . k``."""
        n, t, c = k_in.shape
        hh = attn.num_heads
        k = _heads(attn.k_proj(k_in), hh)  # [N, H, T, d]
        v = _heads(attn.v_proj(v_in), hh)
        d = k.shape[-1]
        wq = attn.q_proj.weight.reshape(hh, d, c)  # [H, d, C]
        k = k / math.sqrt(d)
        m = torch.einsum("nhtd,hdc->ncht", k, wq).reshape(n, c, hh * t)  # [N, C, H*T]
        bias = torch.einsum("nhtd,hd->nht", k, attn.q_proj.bias.reshape(hh, d)).reshape(n, 1, hh * t)
        logits = torch.matmul(pe, m)
        logits = logits.add_(bias.to(logits.dtype)).baddbmm_(keys.to(logits.dtype), m.to(logits.dtype))  # [N, L, H*T]
        l = keys.shape[1]
        a = torch.softmax(logits.reshape(n, l, hh, t), dim=-1)
        return FastMaskDecoder._i2t_out(attn, a, v, keys)

    # ------------------------------------------------------------------ forward
    def run_transformer(self, cache: ImageCache, sparse: Tensor) -> Tuple[Tensor, Tensor]:
        """The two-way transformer for ``N`` prompts: ``sparse [N, T_s, C]`` -> output tokens ``[N, T, C]``
        (after ``norm_final_attn``) and image tokens ``[N, L, C]``."""
        dec = self.mask_decoder
        tr = dec.transformer
        n = sparse.shape[0]
        output_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0).to(sparse.dtype)
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(n, -1, -1), sparse], dim=1)  # [N, T, C]
        query_pe = tokens
        queries = tokens
        keys: Optional[Tensor] = None
        for i, layer in enumerate(tr.layers):
            if layer.skip_first_layer_pe:
                queries = layer.self_attn(q=queries, k=queries, v=queries)
            else:
                q = queries + query_pe
                queries = queries + layer.self_attn(q=q, k=q, v=queries)
            queries = layer.norm1(queries)
            q = queries + query_pe
            if i == 0:
                attn_out = self._t2i_shared(layer.cross_attn_token_to_image, q, cache.k1, cache.v1)
            else:
                attn_out = self._t2i(layer.cross_attn_token_to_image, q, keys, cache.pe)
            queries = layer.norm2(queries + attn_out)
            queries = layer.norm3(queries + layer.mlp(queries))
            q = queries + query_pe
            if i == 0:
                keys = layer.norm4(self._i2t_shared(layer.cross_attn_image_to_token, cache.q1, q, queries, cache.x))
            else:
                keys = layer.norm4(self._i2t(layer.cross_attn_image_to_token, keys, cache.pe, q, queries))
        q = queries + query_pe
        queries = tr.norm_final_attn(queries + self._t2i(tr.final_attn_token_to_image, q, keys, cache.pe))
        return queries, keys

    def predict_iou(self, queries: Tensor) -> Tensor:
        """IoU head on the IoU token: ``[N, T, C]`` -> ``[N, num_mask_tokens]`` (all four outputs)."""
        return self.mask_decoder.iou_prediction_head(queries[:, 0, :])

    def _upscaling_is_standard(self) -> bool:
        up = self.mask_decoder.output_upscaling
        return (
            isinstance(up, nn.Sequential)
            and len(up) == 5
            and isinstance(up[0], nn.ConvTranspose2d)
            and isinstance(up[3], nn.ConvTranspose2d)
            and isinstance(up[1], LayerNorm2d)
            and all(m.kernel_size == (2, 2) and m.stride == (2, 2) and m.padding == (0, 0) and m.groups == 1
                    and m.dilation == (1, 1) and m.output_padding == (0, 0) for m in (up[0], up[3]))
        )

    @staticmethod
    def _linear(x: Tensor, weight: Tensor, bias: Optional[Tensor], repeat: int) -> Tensor:
        """``x @ weight + bias.repeat(repeat)`` as one GEMM with the bias fused (``addmm``)."""
        if bias is None:
            return torch.mm(x, weight)
        return torch.addmm(bias.repeat(repeat), x, weight)

    def predict_masks(self, queries: Tensor, keys: Tensor, hw: Tuple[int, int], tokens: Sequence[int]) -> Tensor:
        """Mask logits of the mask tokens ``tokens`` (0..3): ``[N, len(tokens), 4h, 4w]``.

        The two stride-2 transposed convolutions are per-token linear maps (``[C, 4 C']`` GEMMs) evaluated in
        channels-last layout, so that ``LayerNorm2d`` is one fused ``layer_norm`` and the hypernetwork
        product is one ``bmm``; the pixels are put in image order only for the final ``[N, M, 4h, 4w]``."""
        dec = self.mask_decoder
        n, l, c = keys.shape
        h, w = hw
        hyper = torch.stack([dec.output_hypernetworks_mlps[j](queries[:, 1 + j, :]) for j in tokens], dim=1)
        m = hyper.shape[1]
        if not self._upscaling_is_standard():
            up = dec.output_upscaling(keys.transpose(1, 2).reshape(n, c, h, w))
            b, cu, uh, uw = up.shape
            return torch.bmm(hyper, up.reshape(b, cu, uh * uw)).reshape(b, m, uh, uw)
        conv1, ln, act1, conv2, act2 = dec.output_upscaling
        c1, c2 = conv1.out_channels, conv2.out_channels
        w1 = conv1.weight.permute(0, 2, 3, 1).reshape(c, 4 * c1)  # [C, (a, b, c1)]
        y = self._linear(keys.reshape(n * l, c), w1, conv1.bias, 4).reshape(n, l * 4, c1)
        y = act1(F.layer_norm(y, (c1,), ln.weight, ln.bias, ln.eps))
        w2 = conv2.weight.permute(0, 2, 3, 1).reshape(c1, 4 * c2)  # [c1, (a2, b2, c2)]
        y = act2(self._linear(y.reshape(n * l * 4, c1), w2, conv2.bias, 4).reshape(n, l * 16, c2))
        masks = torch.bmm(y, hyper.transpose(1, 2))  # [N, (i, j, a, b, a2, b2), M]
        masks = masks.reshape(n, h, w, 2, 2, 2, 2, m).permute(0, 7, 1, 3, 5, 2, 4, 6)
        return masks.reshape(n, m, 4 * h, 4 * w)

    def forward(
        self, cache: ImageCache, sparse: Tensor, multimask_output: Optional[bool]
    ) -> Tuple[Tensor, Tensor]:
        """Decode ``N`` prompts of the cached image.

        Args:
            cache: from :meth:`prepare_image`.
            sparse: ``[N, T_s, C]`` sparse prompt embeddings (:func:`embed_prompts`).
            multimask_output: masks 1..3 (True) or mask 0 (False), as ``MaskDecoder``; None: all 4 tokens.
        Returns:
            low-res mask logits ``[N, M, 4h, 4w]`` and predicted IoU ``[N, M]``.
        """
        sel = self.mask_tokens_for(multimask_output)
        queries, keys = self.run_transformer(cache, sparse)
        masks = self.predict_masks(queries, keys, cache.hw, sel)
        iou_pred = self.predict_iou(queries)[:, sel[0] : sel[-1] + 1]
        return masks, iou_pred

    def mask_tokens_for(self, multimask_output: Optional[bool]) -> List[int]:
        """Mask-token indices: 1..3 (multimask), [0] (single) or all (None)."""
        k = self.mask_decoder.num_mask_tokens
        if multimask_output is None:
            return list(range(k))
        return list(range(1, k)) if multimask_output else [0]

    def decode(
        self,
        image_embedding: Tensor,
        sparse: Tensor,
        multimask_output: bool,
        chunk_size: Optional[int] = None,
        cache: Optional[ImageCache] = None,
    ) -> Tuple[Tensor, Tensor]:
        """Prepare (unless ``cache``) and decode ``N`` prompts in chunks of ``chunk_size`` (None: all at once).

        Falls back to the stock decoder when :meth:`is_supported` is False."""
        n = sparse.shape[0]
        chunk = max(1, n if not chunk_size or chunk_size <= 0 else chunk_size)
        if not self.supported:
            outs = [
                stock_decode(self.mask_decoder, self.prompt_encoder,
                             image_embedding.reshape(1, *image_embedding.shape[-3:]), sparse[i : i + chunk],
                             multimask_output)
                for i in range(0, n, chunk)
            ]
        else:
            cache = cache if cache is not None else self.prepare_image(image_embedding)
            outs = [self(cache, sparse[i : i + chunk], multimask_output) for i in range(0, n, chunk)]
        if not outs:
            m = self.mask_decoder.num_mask_tokens - 1 if multimask_output else 1
            h, w = image_embedding.shape[-2:]
            return sparse.new_zeros(0, m, 4 * h, 4 * w), sparse.new_zeros(0, m)
        return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])
