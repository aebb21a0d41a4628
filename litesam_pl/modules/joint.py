"""Stage 3: joint Lite-SAM training, ``L_total = L_ppn + L_mask`` (Sec. 3.4)."""
from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

from torch import Tensor

from litesam_pl.models.prompt_forms import PROMPT_FORMS, SEGEVERY_PROMPT_FORM, TRAINED_PROMPT_FORMS

from .base import LiteSAMTaskBase, slice_prompts

__all__ = ["LiteSAMModule"]


class LiteSAMModule(LiteSAMTaskBase):
    """Joint training of encoder, AutoPPN and SAM decoder.

    Each step runs AutoPPN (``L_ppn``) and the mask decoder on the batch's prompts in each prompt form of
    ``prompt_forms`` (``litesam_pl.models.prompt_forms``): a box (1 mask), a point (3 masks, only the min-loss one
    back-propagated) and a point with a box, the form AutoPPN's proposals take in SegEvery (1 mask), for
    ``L_mask = 10 focal + 1 dice + 1 IoU-MSE``.
    Validation reports all metrics: ``val/miou_1box``, ``val/miou_1point``, ``val/ap_1box``, ``val/ar100``,
    ``val/ar_top1000`` (SegEvery mask AR), ``val/box_ar100``, ``val/point_precision``, ``val/point_hit_rate``.

    Args:
        prompt_forms: the prompt forms that feed ``L_mask`` (default: every form SegEvery and the benchmarks
            read, ``TRAINED_PROMPT_FORMS``).
        prompt_split: give each prompt ONE form, as SAM's training ("either a foreground point or a bounding box
            is selected randomly with equal probability"): of each image's (randomly ordered) masks, slot ``j``
            gets form ``(j + step) % len(prompt_forms)`` (the rotation by the global step lets every form train
            even when an image has fewer prompts than there are forms); the decoder then runs once per mask
            instead of once per form.
            False: every mask gets every form.
        **kwargs: ``LiteSAMTaskBase`` arguments.
    """

    train_masks = True
    train_ppn = True
    val_masks = True
    val_ppn = True
    val_prompt_form = SEGEVERY_PROMPT_FORM  # val/ar100: SegEvery exactly as users run it

    def __init__(
        self, prompt_forms: Sequence[str] = TRAINED_PROMPT_FORMS, prompt_split: bool = True, **kwargs: Any
    ) -> None:
        forms = tuple(prompt_forms)
        if not forms:
            raise ValueError("prompt_forms must name at least one prompt form")
        bad = [f for f in forms if f not in PROMPT_FORMS]
        if bad or len(set(forms)) != len(forms):
            raise ValueError(f"prompt_forms must be distinct forms of {tuple(PROMPT_FORMS)}, got {forms}")
        self.prompt_forms = forms
        self.prompt_split = bool(prompt_split)
        super().__init__(**kwargs)

    def train_prompt_forms(self) -> Tuple[str, ...]:
        return self.prompt_forms

    def train_mask_losses(self, embeddings: Tensor, batch: Dict[str, Any]) -> Dict[str, Tensor]:
        n = len(self.prompt_forms)
        if not self.prompt_split or n < 2 or batch["masks"].shape[1] < 2:
            return super().train_mask_losses(embeddings, batch)
        # masks come in random order (valid ones first): slot j gets form (j + step) % n
        offset = int(self.global_step) % n  # 0 outside a trainer
        out: Dict[str, Tensor] = {}
        total = embeddings.new_zeros(())
        for j in range(n):
            form = self.prompt_forms[(j + offset) % n]
            part = slice_prompts(batch, slice(j, None, n))
            if part["masks"].shape[1] == 0:
                continue
            r = self.mask_losses(embeddings, part, (form,))
            total = total + r.pop("mask")
            out.update(r)
        out["mask"] = total
        return out
