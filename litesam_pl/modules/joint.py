"""Stage 3: joint Lite-SAM training, ``L_total = L_ppn + L_mask`` (Sec. 3.4)."""
from __future__ import annotations

from typing import Any, Dict, Tuple

from torch import Tensor

from .base import LiteSAMTaskBase, slice_prompts

__all__ = ["LiteSAMModule"]


class LiteSAMModule(LiteSAMTaskBase):
    """Joint training of encoder, AutoPPN and SAM decoder.

    Each step runs AutoPPN (``L_ppn``) and the mask decoder on the batch's box prompts (1 mask) and 1-point prompts
    (3 masks, only the min-loss one back-propagated) for ``L_mask = 10 focal + 1 dice + 1 IoU-MSE``.
    Validation reports all metrics: ``val/miou_1box``, ``val/miou_1point``, ``val/map``, ``val/ar100``,
    ``val/ar1000``, ``val/point_hit_rate``.

    Args:
        train_box_prompts, train_point_prompts: which prompt kinds feed ``L_mask`` (both by default).
        prompt_split: with both kinds, give each prompt ONE kind, as SAM's training ("either a foreground point or
            a bounding box is selected randomly with equal probability"): of each image's (randomly ordered) masks,
            every other one gets its box and the others a point; the decoder then runs once per mask instead of
            twice. False (default): every mask gets both prompts.
        **kwargs: ``LiteSAMTaskBase`` arguments.
    """

    train_masks = True
    train_ppn = True
    val_masks = True
    val_ppn = True

    def __init__(
        self, train_box_prompts: bool = True, train_point_prompts: bool = True, prompt_split: bool = False, **kwargs: Any
    ) -> None:
        if not (train_box_prompts or train_point_prompts):
            raise ValueError("at least one of train_box_prompts / train_point_prompts must be true")
        self.train_box_prompts = bool(train_box_prompts)
        self.train_point_prompts = bool(train_point_prompts)
        self.prompt_split = bool(prompt_split)
        super().__init__(**kwargs)

    def train_prompt_kinds(self) -> Tuple[bool, bool]:
        return self.train_box_prompts, self.train_point_prompts

    def train_mask_losses(self, embeddings: Tensor, batch: Dict[str, Any]) -> Dict[str, Tensor]:
        k = batch["masks"].shape[1]
        if not (self.prompt_split and self.train_box_prompts and self.train_point_prompts) or k < 2:
            return super().train_mask_losses(embeddings, batch)
        # masks come in random order (valid ones first): even slots get their box, odd slots a point
        boxes = self.mask_losses(embeddings, slice_prompts(batch, slice(0, None, 2)), True, False)
        points = self.mask_losses(embeddings, slice_prompts(batch, slice(1, None, 2)), False, True)
        out = {key: v for key, v in {**boxes, **points}.items() if key != "mask"}
        out["mask"] = boxes["mask"] + points["mask"]
        return out
