"""LiteSAM: image encoder (LiteViT + neck) + AutoPPN + SAM's PromptEncoder and MaskDecoder, as a ``Sam`` subclass.

Because it subclasses ``segment_anything.modeling.Sam`` (same attribute names, ``preprocess``,
``postprocess_masks``), ``SamPredictor(model)`` and ``SamAutomaticMaskGenerator(model)`` accept it unchanged.
SegEvery takes the model, as SAM's generator does: ``litesam_pl.segment_everything(model, images)``
(``litesam_pl.inference.segevery``); the models package never imports ``inference``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from torch import nn

from ..constants import PIXEL_MEAN, PIXEL_STD
from .autoppn import AutoPPN
from .batched_decode import decode_prompts, dense_pe, embed_prompts, prompt_layout, supports_batched_decode
from .image_encoder import BackboneImageEncoder, build_backbone, build_sam_vit_encoder
from .prompt_encoder import BoxMaskPromptEncoder, dense_embeddings

__all__ = ["LiteSAM", "build_prompt_encoder", "build_mask_decoder", "build_litesam"]

class LiteSAM(Sam):
    """Lite-SAM (Fig. 2(a)).

    Args:
        image_encoder: ``[B, 3, S, S] -> [B, 256, S/16, S/16]``, with attribute ``img_size`` (= S).
        prompt_encoder: SAM ``PromptEncoder`` for ``(S/16, S/16)`` embeddings and ``(S, S)`` inputs.
        mask_decoder: SAM ``MaskDecoder``.
        autoppn: ``AutoPPN`` head on the image embedding, or None.
    """

    def __init__(
        self,
        image_encoder: nn.Module,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        autoppn: Optional[AutoPPN] = None,
        pixel_mean: List[float] = PIXEL_MEAN,
        pixel_std: List[float] = PIXEL_STD,
    ) -> None:
        super().__init__(image_encoder, prompt_encoder, mask_decoder, pixel_mean, pixel_std)
        self.autoppn = autoppn

    @property
    def img_size(self) -> int:
        return int(self.image_encoder.img_size)

    def forward_autoppn(self, image_embeddings: torch.Tensor) -> Dict[str, torch.Tensor]:
        """AutoPPN maps for ``[B, 256, h, w]`` embeddings (see ``AutoPPN.forward``)."""
        if self.autoppn is None:
            raise RuntimeError("this model was built without AutoPPN (autoppn=False)")
        return self.autoppn(image_embeddings)

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        points: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
        boxes: Optional[torch.Tensor] = None,
        multimask_output: bool = False,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Decode K prompts per image: all B x K prompts in one prompt-encoder and one mask-decoder call
        (``litesam_pl.models.batched_decode``; a decoder of another layout runs image by image).

        Args:
            image_embeddings: ``[B, C, h, w]``.
            points: ``(coords [B, K, n, 2], labels [B, K, n])`` in input pixels (SAM's point labels: 1 fg, 0 bg,
                -1 padding), or None.
            boxes: ``[B, K, 4]`` xyxy input pixels, or None.
            multimask_output: 3 masks per prompt (True) or 1 (False).
        Returns:
            ``low_res_masks [B, K, M, 4h, 4w]`` logits and ``iou_pred [B, K, M]``.
        """
        if points is None and boxes is None:
            raise ValueError("predict_masks needs points and/or boxes")
        b, _, h, w = image_embeddings.shape
        if points is not None:
            coords, labels = points
            if coords.ndim != 4 or labels.ndim != 3:
                raise ValueError(
                    f"points must be ([B, K, n, 2], [B, K, n]); got {tuple(coords.shape)}, {tuple(labels.shape)}"
                )
        if boxes is not None and boxes.ndim != 3:
            raise ValueError(f"boxes must be [B, K, 4], got {tuple(boxes.shape)}")
        k = boxes.shape[1] if boxes is not None else points[0].shape[1]
        image_pe = dense_pe(self.prompt_encoder, (h, w))
        if k == 0:  # no prompt (SAM's decoder cannot reshape 0 masks): empty outputs of the right shape
            m = 3 if multimask_output else 1
            z = image_embeddings.new_zeros((b, 0, m))
            return z.new_zeros((b, 0, m, 4 * h, 4 * w)), z
        if not supports_batched_decode(self.mask_decoder):
            return self._predict_masks_per_image(image_embeddings, image_pe, points, boxes, multimask_output)
        pts = (points[0].flatten(0, 1), points[1].flatten(0, 1)) if points is not None else None
        bxs = boxes.flatten(0, 1) if boxes is not None else None
        sparse, dense = self._embed_prompts(pts, bxs, h, w)
        src = image_embeddings.repeat_interleave(k, dim=0)
        masks, iou = decode_prompts(self.mask_decoder, src, image_pe, sparse, dense, multimask_output)
        return masks.reshape(b, k, *masks.shape[1:]), iou.reshape(b, k, -1)

    def _embed_prompts(self, pts, bxs, h: int, w: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """``N`` prompts -> ``(sparse [N, T, C], dense [N, C, h, w])`` as SAM's ``PromptEncoder`` (the dense part:
        ``prompt_encoder.dense_embeddings``), without its boolean indexing (``batched_decode.embed_prompts``)."""
        sparse = embed_prompts(self.prompt_encoder, *prompt_layout(pts, bxs))
        return sparse, dense_embeddings(self.prompt_encoder, bxs, sparse.shape[0], (h, w))

    def _predict_masks_per_image(self, image_embeddings, image_pe, points, boxes, multimask_output):
        """One SAM ``MaskDecoder`` call per image (decoders without SAM's layout; the reference in the tests)."""
        all_masks, all_iou = [], []
        for i in range(image_embeddings.shape[0]):
            pts = (points[0][i], points[1][i]) if points is not None else None
            bxs = boxes[i] if boxes is not None else None
            sparse, dense = self.prompt_encoder(points=pts, boxes=bxs, masks=None)
            if dense.shape[-2:] != image_embeddings.shape[-2:]:  # run at another side than the encoder was built for
                dense = dense_embeddings(self.prompt_encoder, bxs, sparse.shape[0], tuple(image_embeddings.shape[-2:]))
            masks, iou = self.mask_decoder(
                image_embeddings=image_embeddings[i : i + 1],
                image_pe=image_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
            )
            all_masks.append(masks)
            all_iou.append(iou)
        return torch.stack(all_masks), torch.stack(all_iou)


def build_prompt_encoder(img_size: int, embed_dim: int = 256, patch_size: int = 16,
                         box_mask_prompt: bool = False) -> PromptEncoder:
    """SAM's PromptEncoder for an ``img_size`` square input and stride-``patch_size`` embedding
    (``box_mask_prompt``: boxes also as dense mask prompts, ``prompt_encoder.BoxMaskPromptEncoder``)."""
    side = img_size // patch_size
    return (BoxMaskPromptEncoder if box_mask_prompt else PromptEncoder)(
        embed_dim=embed_dim,
        image_embedding_size=(side, side),
        input_image_size=(img_size, img_size),
        mask_in_chans=16,
    )


def build_mask_decoder(
    transformer_dim: int = 256,
    depth: int = 2,
    mlp_dim: int = 512,
    num_heads: int = 8,
    iou_head_hidden_dim: int = 256,
) -> MaskDecoder:
    """SAM's MaskDecoder + TwoWayTransformer (SAM uses ``mlp_dim=2048``; Lite-SAM's budget needs a smaller one)."""
    return MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=depth, embedding_dim=transformer_dim, mlp_dim=mlp_dim, num_heads=num_heads),
        transformer_dim=transformer_dim,
        iou_head_depth=3,
        iou_head_hidden_dim=iou_head_hidden_dim,
    )


def build_litesam(
    backbone: str = "litevit",
    img_size: int = 640,
    mixer: Optional[str] = None,
    backbone_kwargs: Optional[Dict[str, Any]] = None,
    autoppn: bool = True,
    ppn_stem: str = "mspm",
    ppn_groups: int = 3,
    ppn_kwargs: Optional[Dict[str, Any]] = None,
    decoder_mlp_dim: int = 512,
    decoder_depth: int = 2,
    iou_head_hidden_dim: int = 256,
    embed_dim: int = 256,
    box_mask_prompt: bool = False,
) -> LiteSAM:
    """Compose a LiteSAM.

    Args:
        backbone: ``litevit``/``litevit_2x``/``litevit_3x``, ``timm:<name>``, ``torchvision:shufflenet_v2_x1_0``
            or ``sam_vit_b`` (SAM's ViT-B image encoder, no neck).
        img_size: square input side S (640 or 1024).
        mixer: LiteViT token mixer (Fig. 3 design) override.
        backbone_kwargs: extra backbone constructor arguments.
        autoppn: attach an AutoPPN head.
        ppn_stem, ppn_groups, ppn_kwargs: AutoPPN options (``stem``, ``num_groups``, others).
        decoder_mlp_dim, decoder_depth, iou_head_hidden_dim: SAM mask-decoder width/depth.
        embed_dim: image-embedding / transformer channels (256).
        box_mask_prompt: give every box prompt to the decoder as a dense mask prompt too (the real-photo recipes;
            ``prompt_encoder.BoxMaskPromptEncoder``); False is SAM's and the paper's prompt encoder.
    """
    if img_size % 32:
        raise ValueError(f"img_size must be a multiple of 32, got {img_size}")
    bkw = dict(backbone_kwargs or {})
    if mixer is not None:
        if not backbone.startswith("litevit"):
            raise ValueError(f"mixer={mixer!r} only applies to LiteViT backbones, not {backbone!r}")
        bkw["mixer"] = mixer
    if backbone == "sam_vit_b":
        image_encoder = build_sam_vit_encoder(img_size=img_size, out_chans=embed_dim, **bkw)
    else:
        image_encoder = BackboneImageEncoder(build_backbone(backbone, **bkw), img_size=img_size, out_chans=embed_dim)
    ppn = None
    if autoppn:
        ppn = AutoPPN(in_chans=embed_dim, num_groups=ppn_groups, stem=ppn_stem, **(ppn_kwargs or {}))
    return LiteSAM(
        image_encoder=image_encoder,
        prompt_encoder=build_prompt_encoder(img_size, embed_dim, box_mask_prompt=box_mask_prompt),
        mask_decoder=build_mask_decoder(
            embed_dim, depth=decoder_depth, mlp_dim=decoder_mlp_dim, iou_head_hidden_dim=iou_head_hidden_dim
        ),
        autoppn=ppn,
    )
