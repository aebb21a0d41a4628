"""Evaluation-time prompting of a SAM-family model (Table 5): 1-box and 1-point prompts from ground truth.

- 1-box: the annotation's box ``[x, y, w, h]`` -> xyxy, in original-image pixels.
- 1-point: the interior pixel farthest from the mask boundary (``interior_point_prompt``, i.e.
  ``litesam_pl.data.geometry.interior_point``, the same point the data layer prompts validation with): Euclidean
  distance transform with the image border counting as boundary, first maximum in row-major order, as ``(x, y)``
  pixel indices (the RITM / EfficientViT-SAM clicker's first click).
- Every prompt of an image goes through one batched decoder call (``PromptPredictor``, on a ``SamPredictor``);
  by default (``mask_select="prompt_form"``) each prompt reads the output training supervises for its form
  (``litesam_pl.models.prompt_forms``): a box the single-mask output, a point the highest predicted IoU of the three
  multimask outputs. ``"max_pred_iou"`` applies the latter and ``"single"`` the former to both. Masks come back at
  the original resolution.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from segment_anything import SamPredictor

from litesam_pl.data.geometry import interior_point
from litesam_pl.models.prompt_forms import multimask_output_for

__all__ = [
    "MASK_SELECT_RULES",
    "interior_point_prompt",
    "interior_point_prompts",
    "boxes_from_annotations",
    "PromptPredictor",
]

#: name -> what the JSON's ``mask_select`` records.
MASK_SELECT_RULES = {
    "prompt_form": "each prompt form reads the output its training supervises: boxes multimask_output=False, "
                   "points multimask_output=True keeping the highest predicted IoU",
    "max_pred_iou": "multimask_output=True, keep the mask with the highest predicted IoU",
    "single": "multimask_output=False (the single-mask output token)",
}


def interior_point_prompt(mask: np.ndarray) -> np.ndarray:
    """The interior point of ``mask`` (:func:`litesam_pl.data.geometry.interior_point`: the pixel farthest from its
    boundary) as a float32 point prompt.

    Args:
        mask: bool / 0-1 ``[H, W]``, not empty.

    Returns:
        float32 ``[2]`` = ``(x, y)`` pixel indices (column, row). Ties: the first in row-major order.
    """
    return np.asarray(interior_point(mask), dtype=np.float32)


def interior_point_prompts(masks: np.ndarray) -> np.ndarray:
    """``interior_point_prompt`` of each mask of ``[K, H, W]``: float32 ``[K, 2]`` (x, y)."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [K, H, W], got shape {masks.shape}")
    if len(masks) == 0:
        return np.zeros((0, 2), dtype=np.float32)
    return np.stack([interior_point_prompt(m) for m in masks])


def boxes_from_annotations(anns: Sequence[dict]) -> np.ndarray:
    """COCO ``bbox`` ``[x, y, w, h]`` of each annotation as float32 xyxy ``[K, 4]`` (original pixels)."""
    if not anns:
        return np.zeros((0, 4), dtype=np.float32)
    b = np.asarray([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


class PromptPredictor:
    """Batched box / point prompting of a ``segment_anything.modeling.Sam`` (``LiteSAM`` included).

    Args:
        model: a ``Sam`` (``image_encoder``, ``prompt_encoder``, ``mask_decoder``, ``postprocess_masks``).
        mask_select: ``"prompt_form"`` (default: boxes the single output, points the best of 3),
            ``"max_pred_iou"`` (3 multimask outputs, keep the highest predicted IoU) or ``"single"``.
        max_prompts_per_call: prompts per decoder call; an image's prompts go in one call up to this bound.

    ``set_image(image)`` then ``predict_boxes(boxes)`` / ``predict_points(points)`` return
    ``(masks bool [K, H, W] numpy at original size, predicted IoU float32 [K] numpy)``.
    The selection happens on the low-resolution logits before upsampling, which gives exactly what
    ``SamPredictor.predict_torch`` + selecting would give, with a third of the upsampling memory.
    """

    def __init__(self, model: torch.nn.Module, mask_select: str = "prompt_form",
                 max_prompts_per_call: int = 64) -> None:
        if mask_select not in MASK_SELECT_RULES:
            raise ValueError(f"mask_select must be one of {sorted(MASK_SELECT_RULES)}, got {mask_select!r}")
        if max_prompts_per_call < 1:
            raise ValueError("max_prompts_per_call must be >= 1")
        self.model = model
        self.predictor = SamPredictor(model)
        self.mask_select = mask_select
        self.max_prompts_per_call = int(max_prompts_per_call)

    @property
    def device(self) -> torch.device:
        return self.predictor.device

    @torch.no_grad()
    def set_image(self, image: np.ndarray) -> None:
        """Embed one uint8 RGB image ``[H, W, 3]`` (original resolution)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be uint8 [H, W, 3] RGB, got {image.dtype} {image.shape}")
        self.predictor.set_image(image, image_format="RGB")

    @torch.no_grad()
    def _decode(self, points: tuple[torch.Tensor, torch.Tensor] | None, boxes: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.predictor
        sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=None)
        if self.mask_select == "prompt_form":
            multimask = multimask_output_for("point" if boxes is None else "box")
        else:
            multimask = self.mask_select == "max_pred_iou"
        low_res, iou_pred = self.model.mask_decoder(
            image_embeddings=p.features,
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
        best = iou_pred.argmax(dim=1)  # first max, like numpy's argmax
        rows = torch.arange(len(best), device=best.device)
        low_res = low_res[rows, best][:, None]
        scores = iou_pred[rows, best]
        masks = self.model.postprocess_masks(low_res, p.input_size, p.original_size)[:, 0]
        return masks > self.model.mask_threshold, scores

    def _run(self, kind: str, prompts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.predictor
        if not p.is_image_set:
            raise RuntimeError("call set_image(image) before predicting")
        h, w = p.original_size
        if len(prompts) == 0:
            return np.zeros((0, h, w), dtype=bool), np.zeros(0, dtype=np.float32)
        masks, scores = [], []
        for start in range(0, len(prompts), self.max_prompts_per_call):
            chunk = torch.as_tensor(prompts[start : start + self.max_prompts_per_call], dtype=torch.float32,
                                    device=self.device)
            if kind == "boxes":
                m, s = self._decode(None, p.transform.apply_boxes_torch(chunk, p.original_size))
            else:
                coords = p.transform.apply_coords_torch(chunk, p.original_size)[:, None, :]
                labels = torch.ones(coords.shape[:2], dtype=torch.int, device=self.device)
                m, s = self._decode((coords, labels), None)
            masks.append(m.cpu().numpy())
            scores.append(s.float().cpu().numpy())
        return np.concatenate(masks), np.concatenate(scores).astype(np.float32)

    def predict_boxes(self, boxes: Any) -> tuple[np.ndarray, np.ndarray]:
        """Box prompts xyxy ``[K, 4]`` in original pixels -> masks ``[K, H, W]``, predicted IoU ``[K]``."""
        b = np.asarray(boxes, dtype=np.float32)
        if b.ndim != 2 or b.shape[1] != 4:
            raise ValueError(f"boxes must be [K, 4] xyxy, got shape {b.shape}")
        return self._run("boxes", b)

    def predict_points(self, points: Any) -> tuple[np.ndarray, np.ndarray]:
        """One foreground point per prompt, ``[K, 2]`` (x, y) original pixels -> masks, predicted IoU."""
        pts = np.asarray(points, dtype=np.float32)
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise ValueError(f"points must be [K, 2] (x, y), got shape {pts.shape}")
        return self._run("points", pts)
