"""SegEvery's mask stage for one image (``SegEvery.postprocess``, the "postprocess" phase): the filters on the
low-resolution logits of the image part of the frame, NMS, the upsampling of the survivors to the image resolution
(``Sam.postprocess_masks`` math), and the mask part of the per-image filter counts (``stats["filters"]``),
returned with the masks (``ImageMasks``) for the caller to gather.

``postprocess_image(decoded, prompts, options, ...)`` takes the decoder's float32 outputs (``Decoded``), the
image's prompts and the ``SegEveryOptions`` that set the filters, the NMS and the output form.

The image part of the low-res frame is decided by the data layer's one padding-cell rule,
``litesam_pl.data.geometry.inside_cells``: a low-res cell belongs to the image when its centre does.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.geometry import inside_cells
from .postprocess import box_nms, build_records, mask_nms, masks_to_boxes, stability_score
from .segevery_options import SegEveryOptions

__all__ = ["postprocess_image", "Decoded", "ImageMasks", "filter_stats", "rank_score", "upsample_logits",
           "valid_frame"]


class Decoded(NamedTuple):
    """One image's decoder outputs, float32: low-res logits ``low [R, M, 4h, 4w]`` and predicted IoU ``iou [R, M]``
    of the prompts ``rows [R]`` that were decoded, and the predicted IoU ``iou_all [N, M]`` of all ``N`` prompts'
    masks (for the filter counts; None when not counted)."""

    low: Tensor
    iou: Tensor
    rows: Tensor
    iou_all: Optional[Tensor]

    def float(self) -> "Decoded":
        """The same outputs as float32 (the decoder may run under autocast)."""
        return Decoded(self.low.float(), self.iou.float(), self.rows,
                       None if self.iou_all is None else self.iou_all.float())


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
    """The NMS / output ranking score of each mask (see ``SegEveryOptions.rank_by``)."""
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
                  o: SegEveryOptions, counts: bool) -> _Filtered:
    """SAM AMG's filters on the low-res logits ``crop [K, vh, vw]`` of the image part: predicted IoU, stability,
    non-empty (a threshold of 0 or below switches a filter off, as in ``SamAutomaticMaskGenerator``), with the
    thresholds and ranking of the options ``o``."""
    keep = iou > o.pred_iou_thresh if o.pred_iou_thresh > 0 else torch.ones_like(iou, dtype=torch.bool)
    iou_keep = keep.clone() if counts else keep
    stab = stability_score(crop, mask_threshold, o.stability_score_offset)
    if o.stability_score_thresh > 0:
        keep &= stab >= o.stability_score_thresh
    stab_keep = keep.clone() if counts else keep
    binary = crop > mask_threshold
    keep &= binary.flatten(1).any(1)
    idx = keep.nonzero()[:, 0]
    src = src[idx]
    ppn = prompt_scores.float()[src] if prompt_scores is not None else None
    score = rank_score(o.rank_by, iou[idx], stab[idx], ppn)
    return _Filtered(idx, iou[idx], stab[idx], binary[idx], src, ppn, score, iou_keep, stab_keep, keep, stab)


def _nms_order(binary: Tensor, score: Tensor, o: SegEveryOptions) -> Tensor:
    """The survivors of the NMS ``o.nms`` (``"mask"``: mask IoU on the low-res masks subsampled to at most
    ``o.nms_resolution`` cells a side; ``"box"``: box IoU; ``"none"``) at ``o.box_nms_thresh``, best first."""
    res = o.nms_resolution
    if o.nms == "mask":
        vh, vw = binary.shape[-2:]
        step = max(1, math.ceil(max(vh, vw) / res)) if res and res > 0 else 1
        return mask_nms(binary[:, ::step, ::step], score, o.box_nms_thresh)
    if o.nms == "box":
        return box_nms(masks_to_boxes(binary), score, o.box_nms_thresh)
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
    decoded: Decoded,
    prompts: Mapping[str, Optional[Tensor]],
    options: SegEveryOptions,
    *,
    input_size: Tuple[int, int],
    output_size: Tuple[int, int],
    size: int,
    mask_threshold: float,
) -> ImageMasks:
    """Filter, NMS and upsample the decoder outputs of one image.

    ``decoded``: float32 ``low [R, M, h4, w4]`` logits and ``iou [R, M]`` of the prompts ``rows [R]`` (the others
    had no mask above ``pred_iou_thresh``); with ``iou_all`` (the predicted IoU ``[N, M]`` of all ``N`` prompts'
    masks) the filter counts are returned too (``filter_stats``). ``prompts``: the image's ``points [N, 2]`` and
    AutoPPN ``scores [N]`` (None for grid prompts), input pixels. ``options``: the filters (``pred_iou_thresh``,
    ``stability_score_thresh``, ``stability_score_offset``), the NMS (``nms``, ``box_nms_thresh``,
    ``nms_resolution``), ``rank_by``, ``max_masks``, ``output_mode`` and ``return_logits``. ``input_size``: the
    ``(h, w)`` of the resized image in the padded ``size x size`` input; ``output_size``: the ``(H, W)`` the masks
    are returned at; ``mask_threshold``: the model's logit threshold."""
    low, iou, rows, iou_all = decoded
    n, m, lh, lw = low.shape
    low = low.reshape(n * m, lh, lw)
    vh, vw = valid_frame(input_size, size, (lh, lw))
    f = _filter_masks(low[:, :vh, :vw], iou.reshape(n * m), rows.repeat_interleave(m), prompts["scores"],
                      mask_threshold, options, counts=iou_all is not None)
    order = _nms_order(f.binary, f.score, options)
    n_nms_out = int(order.numel())
    if options.max_masks is not None:
        order = order[: int(options.max_masks)]
    counts = None
    if iou_all is not None:
        counts = filter_stats(iou_all, m, f.iou_keep, f.stab_keep, f.keep, f.stab_all, int(f.idx.numel()),
                              n_nms_out, int(order.numel()))
    masks = _image_outputs(low, f.survivors(order), prompts["points"], input_size, output_size, size, (vh, vw),
                           mask_threshold, options)
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
                   o: SegEveryOptions) -> Any:
    """The survivors ``s`` of the low-res logits ``low [K, h4, w4]`` at the image resolution: records
    (``build_records``) or, with ``o.output_mode="tensors"``, the tensors dict of ``SegEveryResult.masks``."""
    # only the survivors go to the image resolution
    masks, logits = _upsample_survivors(low, s.idx, size, input_size, original_size, mask_threshold,
                                        o.return_logits)
    boxes = masks_to_boxes(masks)
    pts = _prompt_points(points, s.src, input_size, original_size)
    if o.output_mode != "tensors":
        return build_records(masks, s.iou, s.stab, boxes, pts, original_size, o.output_mode, ppn_scores=s.ppn)
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
