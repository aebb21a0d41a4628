"""SegEvery's prompts (``segment_everything``'s "prompts" phase): AutoPPN's top-N points and boxes or a point grid,
their layout for the prompt encoder, and the prompt part of the per-image filter counts (``stats["filters"]``).
"""
from __future__ import annotations

import inspect
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from .fast_decoder import LABEL_BOX_BR, LABEL_BOX_TL, LABEL_PAD, LABEL_POS
from .sam_compat import grid_points

__all__ = ["autoppn_prompts", "grid_prompts", "prompt_tensors", "score_threshold_used", "prompt_stage_stats"]


def autoppn_prompts(
    model: nn.Module,
    embeddings: Tensor,
    input_sizes: List[Tuple[int, int]],
    top_n: int,
    score_threshold: Optional[float],
    nms_kernel: int,
) -> List[Dict[str, Tensor]]:
    """AutoPPN maps -> Point-NMS -> top-N prompts per image: ``points [N, 2]``, ``boxes [N, 4]`` (clipped to the
    image) and ``scores [N]`` (point confidence) in input pixels, plus ``topn_scores`` (the top-N scores before the
    score threshold, 0 for padding rows; read by the stats only).
    ``AutoPPN.decode(input_sizes=...)`` lets only cells inside the resized image compete, so no prompt lies in the
    padding."""
    ppn = getattr(model, "autoppn", None)
    if ppn is None:
        raise ValueError(f"prompts='autoppn' needs a model with an AutoPPN head; {type(model).__name__} has none "
                         "(use prompts='grid')")
    kw: Dict[str, Any] = {"top_n": int(top_n), "nms_kernel": int(nms_kernel)}
    if score_threshold is not None:
        kw["score_threshold"] = float(score_threshold)
    dec = ppn.decode(ppn(embeddings), int(model.image_encoder.img_size), input_sizes=input_sizes, **kw)
    return [
        {"points": dec["points"][b][v].float(), "boxes": dec["boxes"][b][v].float(), "scores": dec["scores"][b][v],
         "topn_scores": dec["scores"][b]}
        for b, v in enumerate(dec["valid"])
    ]


def grid_prompts(points_per_side: int, input_sizes: List[Tuple[int, int]], device: torch.device
                 ) -> List[Dict[str, Any]]:
    """SAM's ``points_per_side``^2 point grid over each resized image (no boxes, no scores)."""
    return [{"points": grid_points(points_per_side, s, device), "boxes": None, "scores": None} for s in input_sizes]


def prompt_tensors(points: Tensor, boxes: Optional[Tensor], prompt_type: str) -> Tuple[Tensor, Tensor]:
    """Points ``[N, 2]`` (+ boxes ``[N, 4]``) -> ``coords [N, P, 2]``, ``labels [N, P]`` (see ``embed_prompts``)."""
    n = points.shape[0]
    dev = points.device
    if prompt_type == "point" or boxes is None:
        coords = torch.stack([points, torch.zeros_like(points)], dim=1)
        labels = torch.tensor([LABEL_POS, LABEL_PAD], device=dev).expand(n, 2)
    elif prompt_type == "box":
        coords = boxes.reshape(n, 2, 2)
        labels = torch.tensor([LABEL_BOX_TL, LABEL_BOX_BR], device=dev).expand(n, 2)
    else:
        coords = torch.cat([points[:, None], boxes.reshape(n, 2, 2)], dim=1)
        labels = torch.tensor([LABEL_POS, LABEL_BOX_TL, LABEL_BOX_BR], device=dev).expand(n, 3)
    return coords, labels


def score_threshold_used(model: nn.Module, score_threshold: Optional[float]) -> Optional[float]:
    """The AutoPPN score threshold in effect: ``score_threshold`` or ``AutoPPN.decode``'s default."""
    if score_threshold is not None:
        return float(score_threshold)
    decode = getattr(getattr(model, "autoppn", None), "decode", None)
    try:
        default = inspect.signature(decode).parameters["score_threshold"].default
    except (TypeError, ValueError, KeyError):
        return None
    return None if default is None or default is inspect.Parameter.empty else float(default)


def prompt_stage_stats(pr: Dict[str, Any], prompts: str, n_prompts: int, thresholds: Dict[str, Any]) -> Dict[str, Any]:
    """The prompt part of one image's ``stats["filters"]`` entry: AutoPPN ``proposals`` (the in-image local
    maxima among the top-N) = ``prompts`` + ``removed_score_threshold``; grid prompts are all kept."""
    if prompts == "autoppn":
        top = pr["topn_scores"]  # the in-image local maxima among the top-N have a score > 0 (padding rows: 0)
        proposals = int((top > 0).sum())
        best_score: Optional[float] = float(top.max()) if proposals else None
    else:
        proposals, best_score = n_prompts, None
    return {
        "prompt_source": prompts,
        "proposals": proposals,
        "removed_score_threshold": proposals - n_prompts,
        "best_ppn_score": best_score,
        "prompts": n_prompts,
        "thresholds": thresholds,
    }
