"""Stage 2 (Tables 2 and 3): AutoPPN on a frozen or trainable image encoder."""
from __future__ import annotations

import hashlib
from typing import Any, Dict

import torch
from torch import Tensor

from .base import LiteSAMTaskBase

__all__ = ["AutoPPNModule"]


class AutoPPNModule(LiteSAMTaskBase):
    """AutoPPN training: ``L_ppn = 2 * hard-mining MSE (point confidence) + 1 * Smooth-L1 (boxes)`` per size group.

    Validation reports ``val/ar100``, ``val/ar_top1000`` (mask AR of SegEvery with box prompts from AutoPPN's
    proposals), ``val/box_ar100``, ``val/box_ar_top1000`` (box AR over IoU 0.5:0.95 of the decoded proposals against
    every GT box), ``val/point_precision`` and ``val/point_hit_rate`` (fraction of the top-100 points inside some GT
    mask); ``ValidationConfig`` says what each counts.

    Args:
        freeze_encoder: keep the image encoder fixed (eval mode, no gradients): e.g. on a backbone trained by
            ``BackboneBoxModule`` (``init_from``). Prompt encoder and mask decoder are always frozen here.
        embedding_cache_mb: with ``freeze_encoder``, keep up to this many MB of training-image embeddings (in CPU
            memory, per process) and reuse them when the same input tensor comes again (keyed by a BLAKE2 digest of
            the image bytes, so a flipped or re-augmented view is a different entry). A frozen encoder maps an input
            to one embedding, so this changes no number, only the time: the encoder forward is most of a frozen
            AutoPPN step. 0 (default) disables it; it pays off when the run makes several passes over a data set
            small enough to hold (smoke runs), not on SA-1B. Hits and misses are logged as
            ``train/embedding_cache_hit_rate``.
        **kwargs: ``LiteSAMTaskBase`` arguments.
    """

    train_masks = False
    train_ppn = True
    val_masks = False
    val_ppn = True

    def __init__(self, freeze_encoder: bool = False, embedding_cache_mb: float = 0.0, **kwargs: Any) -> None:
        if embedding_cache_mb < 0:
            raise ValueError(f"embedding_cache_mb must be >= 0, got {embedding_cache_mb}")
        if embedding_cache_mb > 0 and not freeze_encoder:
            raise ValueError("embedding_cache_mb needs freeze_encoder: true (a trained encoder changes its embeddings)")
        self.freeze_encoder = bool(freeze_encoder)
        self.embedding_cache_bytes = int(embedding_cache_mb * 2**20)
        self._cache: Dict[bytes, Tensor] = {}
        self._cache_used = 0
        super().__init__(**kwargs)

    def configure_trainable(self) -> None:
        super().configure_trainable()
        if not self.has_ppn:
            raise ValueError("AutoPPNModule needs a model with an AutoPPN head (model.kwargs.autoppn must be true)")
        if self.freeze_encoder:
            self.model.image_encoder.requires_grad_(False)

    def on_train_epoch_start(self) -> None:
        if self.freeze_encoder:  # BatchNorm/Dropout of a frozen encoder stay in eval mode
            self.model.image_encoder.eval()

    def encode(self, image: Tensor) -> Tensor:
        if self.freeze_encoder:
            if self.embedding_cache_bytes and self.training:
                return self._cached_encode(image)
            with torch.no_grad():
                return self.model.image_encoder(image).detach()
        return super().encode(image)

    @torch.no_grad()
    def _cached_encode(self, image: Tensor) -> Tensor:
        """Frozen-encoder forward of ``[B, 3, S, S]`` that only runs the images not in the cache."""
        # digest of each image's bytes, read in place (no copy on CPU)
        keys = [hashlib.blake2b(x.cpu().contiguous().numpy().data, digest_size=16).digest() for x in image]
        out = [self._cache.get(k) for k in keys]
        miss = [i for i, e in enumerate(out) if e is None]
        if miss:
            emb = self.model.image_encoder(image[miss])
            size = emb[0].numel() * emb.element_size()
            for j, i in enumerate(miss):
                out[i] = emb[j]
                if self._cache_used + size <= self.embedding_cache_bytes:  # store while there is room, never evict
                    self._cache[keys[i]] = emb[j].cpu().clone()
                    self._cache_used += size
        hits = len(keys) - len(miss)
        self.log("train/embedding_cache_hit_rate", hits / len(keys), on_step=False, on_epoch=True,
                 batch_size=len(keys), sync_dist=True)
        return torch.stack([e.to(image.device) for e in out])
