"""SegEvery's mask stage for one image (``segment_everything``'s "postprocess" phase): the filters on the
low-resolution logits of the image part of the frame, NMS, the upsampling of the survivors to the image resolution
(``Sam.postprocess_masks`` math), and the mask part of the per-image filter counts (``stats["filters"]``),
returned with the masks (``ImageMasks``) for the caller to gather.

The image part of the low-res frame is decided by the data layer's one padding-cell rule,
``litesam_pl.data.geometry.inside_cells``: a low-res cell belongs to the image when its centre does.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.geometry import inside_cells
from .postprocess import box_nms, build_records, mask_nms, masks_to_boxes, stability_score

__all__ = ["postprocess_image", "ImageMasks", "filter_stats", "rank_score", "upsample_logits", "valid_frame"]


def upsample_logits(low: Tensor, size: int, input_size: Tuple[int, int], original_size: Tuple[int, int]) -> Tensor:
    """``Sam.postprocess_masks`` on ``[K, h4, w4]`` low-res logits -> ``[K, H, W]`` logits at image resolution."""
    x = F.interpolate(low[:, None].float(), (size, size), mode="bilinear", align_corners=False)
    x = x[..., : input_size[0], : input_size[1]]
    x = F.interpolate(x, original_size, mode="bilinear", align_corners=False)
    return x[:, 0]


def valid_frame(input_size: Tuple[int, int], size: int, low_hw: Tuple[int, int]) -> Tuple[int, int]:
    """Rows and columns of the ``low_hw`` low-res frame (over the padded ``size x size`` input) that are image, not
    padding: ``inside_cells``, the rule of the AutoPPN grid and its targets."""
    return inside_cells(input_size[0], size, low_hw[0]), inside_cells(input_size[1], size, low_hw[1])


def rank_score(rank_by: str, iou: Tensor, stab: Tensor, ppn: Optional[Tensor]) -> Tensor:
    """The NMS / output ranking score of each mask (see ``segment_everything``'s ``rank_by``)."""
    if rank_by == "iou":
        return iou
    if rank_by == "stability":
        return stab
    if rank_by == "ppn_score":
        if ppn is None:
            raise ValueError("rank_by='ppn_score' needs AutoPPN prompts")
        return ppn
    return 0.5 * (iou + stab)


def filter_stats(
    iou_all: Tensor,
    masks_per_prompt: int,
    iou_keep: Tensor,
    stab_keep: Tensor,
    nonempty_keep: Tensor,
    stab: Tensor,
    n_nms_in: int,
    n_nms_out: int,
    n_kept: int,
) -> Dict[str, Any]:
    """The mask part of one image's ``stats["filters"]`` entry: ``candidates`` (prompts x ``masks_per_prompt``) =
    ``kept`` + the ``removed`` counts of ``FILTERS`` (in the order they apply), the best predicted IoU of any mask
    (``best_pred_iou``) and the best stability of the masks that passed the predicted-IoU filter
    (``best_stability``; None when none did). ``iou_all [N, M]`` is the predicted IoU of every prompt's masks (its
    rows are the prompts); the boolean masks and ``stab`` are over the decoded masks."""
    decoded = iou_keep.numel()
    counts = torch.stack([iou_keep.sum(), stab_keep.sum(), nonempty_keep.sum()]).tolist() if decoded else [0, 0, 0]
    n_iou, n_stab, n_nonempty = (int(c) for c in counts)
    candidates = int(iou_all.shape[0]) * masks_per_prompt
    best_stab = float(stab[iou_keep].max()) if n_iou else None
    return dict(
        masks_per_prompt=masks_per_prompt,
        candidates=candidates,
        removed={"pred_iou": candidates - n_iou, "stability": n_iou - n_stab, "empty": n_stab - n_nonempty,
                 "nms": n_nms_in - n_nms_out, "max_masks": n_nms_out - n_kept},
        kept=n_kept,
        best_pred_iou=float(iou_all.max()) if iou_all.numel() else None,
        best_stability=best_stab,
    )


class ImageMasks(NamedTuple):
    """One image's mask stage (``postprocess_image``): its ``masks`` (records, or the tensors dict), the number of
    masks that passed the filters (``masks_before_nms``, the NMS's input) and the mask part of its
    ``stats["filters"]`` entry (``filter_stats``; None when not counted)."""

    masks: Any
    masks_before_nms: int
    filters: Optional[Dict[str, Any]]


class _Survivors(NamedTuple):
    """The masks kept by NMS and ``max_masks``, best first: indices ``idx`` into the decoded masks, their predicted
    IoU, stability, ranking score, prompt and AutoPPN score (None for grid prompts)."""

    idx: Tensor
    iou: Tensor
    stab: Tensor
    score: Tensor
    src: Tensor
    ppn: Optional[Tensor]


class _Filtered(NamedTuple):
    """The masks that passed the filters (indices ``idx`` into the decoded masks, with their predicted IoU,
    stability, binary low-res mask, prompt, AutoPPN score and ranking score) and the filters' boolean masks over all
    decoded masks (for ``filter_stats``; ``iou_keep`` / ``stab_keep`` are copies only when counts are wanted)."""

    idx: Tensor
    iou: Tensor
    stab: Tensor
    binary: Tensor
    src: Tensor
    ppn: Optional[Tensor]
    score: Tensor
    iou_keep: Tensor
    stab_keep: Tensor
    keep: Tensor
    stab_all: Tensor

    def survivors(self, order: Tensor) -> _Survivors:
        """The filtered masks at the positions ``order`` (the NMS survivors, best first)."""
        ppn = self.ppn[order] if self.ppn is not None else None
        return _Survivors(self.idx[order], self.iou[order], self.stab[order], self.score[order], self.src[order], ppn)


def _filter_masks(crop: Tensor, iou: Tensor, src: Tensor, prompt_scores: Optional[Tensor], mask_threshold: float,
                  pred_iou_thresh: float, stability_score_thresh: float, stability_score_offset: float,
                  rank_by: str, counts: bool) -> _Filtered:
    """SAM AMG's filters on the low-res logits ``crop [K, vh, vw]`` of the image part: predicted IoU, stability,
    non-empty (a threshold of 0 or below switches a filter off, as in ``SamAutomaticMaskGenerator``)."""
    keep = iou > pred_iou_thresh if pred_iou_thresh > 0 else torch.ones_like(iou, dtype=torch.bool)
    iou_keep = keep.clone() if counts else keep
    stab = stability_score(crop, mask_threshold, stability_score_offset)
    if stability_score_thresh > 0:
        keep &= stab >= stability_score_thresh
    stab_keep = keep.clone() if counts else keep
    binary = crop > mask_threshold
    keep &= binary.flatten(1).any(1)
    idx = keep.nonzero()[:, 0]
    src = src[idx]
    ppn = prompt_scores.float()[src] if prompt_scores is not None else None
    score = rank_score(rank_by, iou[idx], stab[idx], ppn)
    return _Filtered(idx, iou[idx], stab[idx], binary[idx], src, ppn, score, iou_keep, stab_keep, keep, stab)


def _nms_order(binary: Tensor, score: Tensor, nms: str, box_nms_thresh: float, nms_resolution: int) -> Tensor:
    """The survivors of the NMS (``"mask"``: mask IoU on the low-res masks subsampled to at most ``nms_resolution``
    cells a side; ``"box"``: box IoU; ``"none"``), best first."""
    if nms == "mask":
        vh, vw = binary.shape[-2:]
        step = max(1, math.ceil(max(vh, vw) / nms_resolution)) if nms_resolution and nms_resolution > 0 else 1
        return mask_nms(binary[:, ::step, ::step], score, box_nms_thresh)
    if nms == "box":
        return box_nms(masks_to_boxes(binary), score, box_nms_thresh)
    return torch.argsort(score, descending=True, stable=True)


def _upsample_survivors(low: Tensor, idx: Tensor, size: int, input_size: Tuple[int, int],
                        original_size: Tuple[int, int], mask_threshold: float, return_logits: bool
                        ) -> Tuple[Tensor, Optional[Tensor]]:
    """The masks ``[K, H, W]`` (and their logits when ``return_logits``) of the surviving low-res logits
    ``low[idx]`` at ``original_size``, in chunks that bound the memory (~0.5 GB of float32 each)."""
    h, w = original_size
    per = max(1, int(2**27 // max(1, size * size + h * w)))
    full_logits: List[Tensor] = []
    masks_l: List[Tensor] = []
    for i in range(0, idx.numel(), per):
        lg = upsample_logits(low[idx[i : i + per]], size, input_size, original_size)
        masks_l.append(lg > mask_threshold)
        if return_logits:
            full_logits.append(lg)
    masks = torch.cat(masks_l) if masks_l else torch.zeros(0, h, w, dtype=torch.bool, device=low.device)
    if not return_logits:
        return masks, None
    return masks, torch.cat(full_logits) if full_logits else torch.zeros(0, h, w, device=low.device)


def postprocess_image(
    low: Tensor,
    iou: Tensor,
    rows: Tensor,
    points: Tensor,
    prompt_scores: Optional[Tensor],
    input_size: Tuple[int, int],
    original_size: Tuple[int, int],
    size: int,
    mask_threshold: float,
    pred_iou_thresh: float,
    stability_score_thresh: float,
    stability_score_offset: float,
    box_nms_thresh: float,
    nms: str,
    nms_resolution: int,
    rank_by: str,
    max_masks: Optional[int],
    output_mode: str,
    return_logits: bool,
    *,
    iou_all: Optional[Tensor] = None,
) -> ImageMasks:
    """Filter, NMS and upsample the decoder outputs of one image: ``low [R, M, h4, w4]`` logits and
    ``iou [R, M]`` of the prompts ``rows [R]`` (the others had no mask above ``pred_iou_thresh``) whose points
    and AutoPPN scores (None for grid prompts) are ``points [N, 2]`` and ``prompt_scores [N]``. With ``iou_all``
    (the predicted IoU ``[N, M]`` of all ``N`` prompts' masks) the filter counts are returned too (``filter_stats``).
    Long for its signature: ``segment_everything``'s per-image options, positional (``benchmarks.segevery_ort``
    calls it so); the steps are the helpers above."""
    n, m, lh, lw = low.shape
    low = low.reshape(n * m, lh, lw)
    vh, vw = valid_frame(input_size, size, (lh, lw))
    f = _filter_masks(low[:, :vh, :vw], iou.reshape(n * m), rows.repeat_interleave(m), prompt_scores,
                      mask_threshold, pred_iou_thresh, stability_score_thresh, stability_score_offset, rank_by,
                      counts=iou_all is not None)
    order = _nms_order(f.binary, f.score, nms, box_nms_thresh, nms_resolution)
    n_nms_out = int(order.numel())
    if max_masks is not None:
        order = order[: int(max_masks)]
    counts = None
    if iou_all is not None:
        counts = filter_stats(iou_all, m, f.iou_keep, f.stab_keep, f.keep, f.stab_all, int(f.idx.numel()),
                              n_nms_out, int(order.numel()))
    masks = _image_outputs(low, f.survivors(order), points, input_size, original_size, size, (vh, vw),
                           mask_threshold, output_mode, return_logits)
    return ImageMasks(masks, int(f.idx.numel()), counts)


def _prompt_points(points: Tensor, src: Tensor, input_size: Tuple[int, int], original_size: Tuple[int, int]
                   ) -> Tensor:
    """The points ``[K, 2]`` of the prompts ``src`` (input pixels) at ``original_size``."""
    h, w = original_size
    scale_y, scale_x = h / input_size[0], w / input_size[1]
    if not src.numel():
        return points.new_zeros(0, 2)
    return points[src] * torch.tensor([scale_x, scale_y], device=points.device)


def _image_outputs(low: Tensor, s: _Survivors, points: Tensor, input_size: Tuple[int, int],
                   original_size: Tuple[int, int], size: int, valid_hw: Tuple[int, int], mask_threshold: float,
                   output_mode: str, return_logits: bool) -> Any:
    """The survivors ``s`` of the low-res logits ``low [K, h4, w4]`` at the image resolution: records
    (``build_records``) or, with ``output_mode="tensors"``, the tensors dict of ``SegEveryResult.masks``."""
    # only the survivors go to the image resolution
    masks, logits = _upsample_survivors(low, s.idx, size, input_size, original_size, mask_threshold, return_logits)
    boxes = masks_to_boxes(masks)
    pts = _prompt_points(points, s.src, input_size, original_size)
    if output_mode != "tensors":
        return build_records(masks, s.iou, s.stab, boxes, pts, original_size, output_mode, ppn_scores=s.ppn)
    vh, vw = valid_hw
    out: Dict[str, Tensor] = {
        "masks": masks,
        "low_res_logits": low[s.idx][:, :vh, :vw],
        "iou_preds": s.iou,
        "stability_scores": s.stab,
        "scores": s.score,
        "boxes": boxes,
        "areas": masks.flatten(1).sum(1),
        "points": pts,
    }
    if s.ppn is not None:
        out["ppn_scores"] = s.ppn
    if logits is not None:
        out["mask_logits"] = logits
        out["mask_probs"] = out["probs"] = torch.sigmoid(logits)
    return out
