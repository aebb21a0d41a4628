"""Stage 3: joint Lite-SAM training, ``L_total = L_ppn + L_mask`` (Sec. 3.4)."""
from __future__ import annotations

from typing import Any, Tuple

from .base import LiteSAMTaskBase

__all__ = ["LiteSAMModule"]


class LiteSAMModule(LiteSAMTaskBase):
    """Joint training of encoder, AutoPPN and SAM decoder.

    Each step runs AutoPPN (``L_ppn``) and the mask decoder on the batch's box prompts (1 mask) and 1-point prompts
    (3 masks, only the min-loss one back-propagated) for ``L_mask = 10 focal + 1 dice + 1 IoU-MSE``.
    Validation reports all metrics: ``val/miou_1box``, ``val/miou_1point``, ``val/map``, ``val/ar100``,
    ``val/ar1000``, ``val/point_hit_rate``.

    Args:
        train_box_prompts, train_point_prompts: which prompt kinds feed ``L_mask`` (both by default).
        **kwargs: ``LiteSAMTaskBase`` arguments.
    """

    train_masks = True
    train_ppn = True
    val_masks = True
    val_ppn = True

    def __init__(self, train_box_prompts: bool = True, train_point_prompts: bool = True, **kwargs: Any) -> None:
        if not (train_box_prompts or train_point_prompts):
            raise ValueError("at least one of train_box_prompts / train_point_prompts must be true")
        self.train_box_prompts = bool(train_box_prompts)
        self.train_point_prompts = bool(train_point_prompts)
        super().__init__(**kwargs)

    def train_prompt_kinds(self) -> Tuple[bool, bool]:
        return self.train_box_prompts, self.train_point_prompts
