"""Stage 2 (Tables 2 and 3): AutoPPN on a frozen or trainable image encoder."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import LiteSAMTaskBase

__all__ = ["AutoPPNModule"]


class AutoPPNModule(LiteSAMTaskBase):
    """AutoPPN training: ``L_ppn = 2 * hard-mining MSE (point confidence) + 1 * Smooth-L1 (boxes)`` per size group.

    Validation reports ``val/ar100``, ``val/ar1000`` (box AR over IoU 0.5:0.95 of the decoded proposals against
    every GT box) and ``val/point_hit_rate`` (fraction of the top-100 points inside some GT mask).

    Args:
        freeze_encoder: keep the image encoder fixed (eval mode, no gradients): e.g. on a backbone trained by
            ``BackboneBoxModule`` (``init_from``). Prompt encoder and mask decoder are always frozen here.
        **kwargs: ``LiteSAMTaskBase`` arguments.
    """

    train_masks = False
    train_ppn = True
    val_masks = False
    val_ppn = True

    def __init__(self, freeze_encoder: bool = False, **kwargs: Any) -> None:
        self.freeze_encoder = bool(freeze_encoder)
        super().__init__(**kwargs)

    def configure_trainable(self) -> None:
        super().configure_trainable()
        if not self.has_ppn:
            raise ValueError("AutoPPNModule needs a model with an AutoPPN head (model_kwargs.autoppn must be true)")
        if self.freeze_encoder:
            self.model.image_encoder.requires_grad_(False)

    def on_train_epoch_start(self) -> None:
        if self.freeze_encoder:  # BatchNorm/Dropout of a frozen encoder stay in eval mode
            self.model.image_encoder.eval()

    def encode(self, image: Tensor) -> Tensor:
        if self.freeze_encoder:
            with torch.no_grad():
                return self.model.image_encoder(image).detach()
        return super().encode(image)
