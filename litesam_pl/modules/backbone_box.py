"""Stage 1 (Tables 1 and 4): an image encoder + SAM's prompt encoder and mask decoder trained with box prompts."""
from __future__ import annotations

from typing import Any, Tuple

from .base import LiteSAMTaskBase

__all__ = ["BackboneBoxModule"]


class BackboneBoxModule(LiteSAMTaskBase):
    """Backbone-only 1-box-prompt training: ``L = focal + dice + IoU-MSE`` on box-prompted masks.

    Validation reports ``val/miou_1box``, ``val/miou_1point`` and ``val/ap_1box`` (one-class mask AP of the 1-box
    masks).
    AutoPPN, when the model has one, is frozen and not evaluated (build with ``model.kwargs.autoppn: false``).

    Args:
        train_point_prompts: also train with the batch's 1-point prompts (3 masks, min-loss back-propagated);
            the paper's Table 1/4 set-up is boxes only (False).
        **kwargs: ``LiteSAMTaskBase`` arguments.
    """

    train_masks = True
    train_ppn = False
    val_masks = True
    val_ppn = False

    def __init__(self, train_point_prompts: bool = False, **kwargs: Any) -> None:
        self.train_point_prompts = bool(train_point_prompts)
        super().__init__(**kwargs)

    def configure_trainable(self) -> None:
        """As the base, and with box prompts only, SAM's three point-label embeddings (positive, negative, "not a
        point") are frozen: they would get no gradient, and frozen they leave no parameter unused, so the stage runs
        under plain DDP (no unused-parameter search each step)."""
        super().configure_trainable()
        if not self.train_point_prompts:
            pe = self.model.prompt_encoder
            for emb in (pe.point_embeddings[0], pe.point_embeddings[1], pe.not_a_point_embed):
                emb.requires_grad_(False)

    def train_prompt_forms(self) -> Tuple[str, ...]:
        return ("box", "point") if self.train_point_prompts else ("box",)
