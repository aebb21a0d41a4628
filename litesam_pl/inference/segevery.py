"""SegEvery ("segment everything") on a batch of images, end to end on the device.

Pipeline (``segment_everything``)::

    images -> resize/normalise/pad -> image encoder (one batched call)
           -> prompts: AutoPPN + Point-NMS + top-N (points and boxes)   | or a points_per_side^2 grid
           -> prompt encoder (all prompts at once)
           -> batched mask decoder (``FastMaskDecoder``; chunks of ``chunk_size`` prompts bound the memory)
           -> filters on predicted IoU and stability (low resolution)
           -> NMS on the low-resolution masks (greedy, exact, vectorised)
           -> only the survivors upsampled to the image resolution (``Sam.postprocess_masks`` math)
           -> records in ``SamAutomaticMaskGenerator``'s format (+ the prompt's AutoPPN ``ppn_score``), COCO RLE,
              or tensors

No Python loop runs per mask or per prompt (loops run over images and prompt chunks). ``timings`` (a dict)
collects per-phase seconds with device synchronisation for the benchmarks. ``stats`` (a dict) receives per image
how many prompts and masks each filter removed (``stats["filters"]``, see ``FILTERS``), so that an empty result
can say why.

Modules: ``segevery_prompts`` (AutoPPN / grid prompts), ``segevery_masks`` (filters, NMS and upsampling of one
image's masks; the image part of the low-res frame by the data layer's padding-cell rule, ``data.geometry``); this
one runs the batched encoder and decoder calls.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any, ContextManager, Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from ..models.prompt_forms import SEGEVERY_PROMPT_FORM, multimask_output_for
from .fast_decoder import FastMaskDecoder, embed_prompts, stock_decode
from .postprocess import OUTPUT_MODES
from .sam_compat import ImagesLike, as_image_list, check_sam_like, model_device, preprocess_images
from .segevery_masks import postprocess_image
from .segevery_prompts import (
    autoppn_prompts,
    grid_prompts,
    prompt_stage_stats,
    prompt_tensors,
    score_threshold_used,
)
from .timing import phase

__all__ = ["segment_everything", "PROMPT_SOURCES", "PROMPT_TYPES", "RANK_BY", "PHASES", "FILTERS"]

PROMPT_SOURCES = ("autoppn", "grid")
PROMPT_TYPES = ("point", "box", "point+box")
RANK_BY = ("iou", "iou_stability_mean", "stability", "ppn_score")
NMS_KINDS = ("mask", "box", "none")
PHASES = ("preprocess", "encoder", "prompts", "decoder", "postprocess")
# the mask filters in the order they apply (the keys of ``stats["filters"][i]["removed"]``)
FILTERS = ("pred_iou", "stability", "empty", "nms", "max_masks")


def _fast_decoder(model: nn.Module) -> FastMaskDecoder:
    """The model's ``FastMaskDecoder`` (built once, cached on the model without registering a sub-module)."""
    fd = model.__dict__.get("_segevery_fast_decoder")
    if fd is None or fd.mask_decoder is not model.mask_decoder or fd.prompt_encoder is not model.prompt_encoder:
        fd = FastMaskDecoder(model.mask_decoder, model.prompt_encoder)
        model.__dict__["_segevery_fast_decoder"] = fd
    return fd


def _stock_decode_chunked(
    model: nn.Module, emb: Tensor, sparse: Tensor, multimask_output: bool, chunk_size: Optional[int]
) -> Tuple[Tensor, Tensor]:
    """SAM's ``MaskDecoder`` on ``N`` prompts in chunks (the reference path)."""
    n = sparse.shape[0]
    chunk = max(1, n if not chunk_size or chunk_size <= 0 else chunk_size)
    outs = [
        stock_decode(model.mask_decoder, model.prompt_encoder, emb, sparse[i : i + chunk], multimask_output)
        for i in range(0, n, chunk)
    ]
    if not outs:
        m = 3 if multimask_output else 1
        return sparse.new_zeros(0, m, 4 * emb.shape[-2], 4 * emb.shape[-1]), sparse.new_zeros(0, m)
    return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])


def _fast_decode_survivors(
    fast: FastMaskDecoder,
    emb: Tensor,
    sparse: Tensor,
    multimask_output: bool,
    chunk_size: Optional[int],
    pred_iou_thresh: float,
    iou_seen: Optional[List[Tensor]] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    """``FastMaskDecoder`` in chunks, with the mask upscaling run only for prompts that have at least one
    mask whose predicted IoU passes ``pred_iou_thresh`` (the IoU head needs only the output tokens).

    Returns low-res logits ``[R, M, 4h, 4w]``, IoU ``[R, M]`` and the prompt indices ``rows [R]``; the IoU of
    every prompt's masks (``[chunk, M]`` per chunk, the dropped prompts too) is appended to ``iou_seen``."""
    cache = fast.prepare_image(emb)
    sel = fast.mask_tokens_for(multimask_output)
    n = sparse.shape[0]
    chunk = max(1, n if not chunk_size or chunk_size <= 0 else chunk_size)
    lows, ious, rows = [], [], []
    for start in range(0, n, chunk):
        queries, keys = fast.run_transformer(cache, sparse[start : start + chunk])
        iou = fast.predict_iou(queries)[:, sel[0] : sel[-1] + 1]
        if iou_seen is not None:
            iou_seen.append(iou)
        # as SamAutomaticMaskGenerator: a threshold of 0 (or below) switches the filter off
        passed = (iou > pred_iou_thresh).any(1) if pred_iou_thresh > 0 else torch.ones_like(iou[:, 0], dtype=torch.bool)
        keep = passed.nonzero()[:, 0]
        if keep.numel() < iou.shape[0]:
            queries, keys, iou = queries[keep], keys[keep], iou[keep]
        lows.append(fast.predict_masks(queries, keys, cache.hw, sel))
        ious.append(iou)
        rows.append(keep + start)
    h, w = cache.hw
    if not lows:
        return sparse.new_zeros(0, len(sel), 4 * h, 4 * w), sparse.new_zeros(0, len(sel)), torch.zeros(
            0, dtype=torch.long, device=sparse.device)
    return torch.cat(lows), torch.cat(ious), torch.cat(rows)


def _check_options(prompts: str, prompt_type: str, rank_by: str, nms: str, output_mode: str, decoder: str) -> None:
    for name, value, allowed in (
        ("prompts", prompts, PROMPT_SOURCES),
        ("prompt_type", prompt_type, PROMPT_TYPES),
        ("rank_by", rank_by, RANK_BY),
        ("nms", nms, NMS_KINDS),
        ("output_mode", output_mode, OUTPUT_MODES),
        ("decoder", decoder, ("fast", "stock")),
    ):
        if value not in allowed:
            raise ValueError(f"segment_everything: {name} must be one of {allowed}, got {value!r}")
    if rank_by == "ppn_score" and prompts != "autoppn":
        raise ValueError("segment_everything: rank_by='ppn_score' needs prompts='autoppn' (grid prompts have no score)")


def _stats_thresholds(stats: Optional[Dict[str, Any]], model: nn.Module, prompts: str, top_n: int,
                      score_threshold: Optional[float], points_per_side: int, pred_iou_thresh: float,
                      stability_score_thresh: float, box_nms_thresh: float, nms: str, max_masks: Optional[int]
                      ) -> Dict[str, Any]:
    """Start ``stats``' per-image lists and return the filter settings in effect (the same for every image; empty
    without ``stats``)."""
    if stats is None:
        return {}
    stats.setdefault("prompts", [])
    stats.setdefault("masks_before_nms", [])
    stats.setdefault("filters", [])
    return dict(
        top_n=int(top_n) if prompts == "autoppn" else None,
        score_threshold=score_threshold_used(model, score_threshold) if prompts == "autoppn" else None,
        points_per_side=int(points_per_side) if prompts == "grid" else None,
        pred_iou_thresh=float(pred_iou_thresh), stability_score_thresh=float(stability_score_thresh),
        box_nms_thresh=float(box_nms_thresh) if nms != "none" else None, nms=nms,
        max_masks=None if max_masks is None else int(max_masks),
    )


def _decode_image(model: nn.Module, fast: Optional[FastMaskDecoder], emb: Tensor, pr: Dict[str, Any],
                  prompt_form: str, prompts: str, multimask_output: bool, chunk_size: Optional[int],
                  pred_iou_thresh: float, stats: Optional[Dict[str, Any]], thresholds: Dict[str, Any],
                  timings: Optional[Dict[str, float]], device: torch.device, amp: ContextManager
                  ) -> Tuple[Tensor, Tensor, Tensor, Optional[Dict[str, Any]]]:
    """One image's prompts ``pr`` through the prompt encoder and the mask decoder: low-res logits, predicted IoU and
    the prompts they belong to (``rows``), and the prompt part of its filter counts (None without ``stats``)."""
    with phase(timings, "prompts", device), amp:
        coords, labels = prompt_tensors(pr["points"], pr["boxes"], prompt_form)
        sparse = embed_prompts(model.prompt_encoder, coords, labels)
    funnel: Optional[Dict[str, Any]] = None
    if stats is not None:
        stats["prompts"].append(int(sparse.shape[0]))
        funnel = prompt_stage_stats(pr, prompts, int(sparse.shape[0]), dict(thresholds))
    iou_seen: Optional[List[Tensor]] = [] if funnel is not None else None
    with phase(timings, "decoder", device), amp:
        if fast is not None and fast.supported:
            low, iou, rows = _fast_decode_survivors(fast, emb, sparse, multimask_output, chunk_size,
                                                    pred_iou_thresh, iou_seen)
        else:
            low, iou = _stock_decode_chunked(model, emb, sparse, multimask_output, chunk_size)
            rows = torch.arange(low.shape[0], device=low.device)
            iou_seen = [iou] if iou_seen is not None else None
    if funnel is not None:
        funnel["iou_all"] = torch.cat(iou_seen).float() if iou_seen else iou.float()
    return low, iou, rows, funnel


@torch.no_grad()
def segment_everything(
    model: nn.Module,
    images: ImagesLike,
    *,
    prompts: str = "autoppn",
    top_n: int = 256,
    score_threshold: Optional[float] = None,
    nms_kernel: int = 3,
    points_per_side: int = 32,
    prompt_type: str = SEGEVERY_PROMPT_FORM,
    multimask_output: Optional[bool] = None,
    pred_iou_thresh: float = 0.88,
    stability_score_thresh: float = 0.95,
    stability_score_offset: float = 1.0,
    box_nms_thresh: float = 0.7,
    nms: str = "mask",
    nms_resolution: int = 64,
    rank_by: str = "iou",
    max_masks: Optional[int] = None,
    output_mode: str = "binary_mask",
    return_logits: bool = False,
    chunk_size: Optional[int] = 256,
    decoder: str = "fast",
    autocast_dtype: Optional[torch.dtype] = None,
    image_batch_size: int = 8,
    timings: Optional[Dict[str, float]] = None,
    stats: Optional[Dict[str, Any]] = None,
    output_sizes: Optional[List[Tuple[int, int]]] = None,
) -> Union[List[Any], Any]:
    """Segment everything in ``images`` with ``model`` (LiteSAM, SAM-B + AutoPPN, or any ``Sam`` for grids).

    (Long for its signature and this docstring: the public API names and documents every SAM-AMG option; the
    work is in ``_decode_image``, ``segevery_prompts`` and ``segevery_masks``.)

    Args:
        model: a ``Sam``-like model (``image_encoder.img_size``, ``prompt_encoder``, ``mask_decoder``;
            ``autoppn`` for ``prompts="autoppn"``).
        images: one ``HxWx3`` uint8 array, a list of them, or a ``[B, 3, H, W]`` / ``[3, H, W]`` tensor in 0..255.
        prompts: ``"autoppn"`` (AutoPPN + Point-NMS + top-N) or ``"grid"`` (``points_per_side``^2 points).
        top_n, score_threshold, nms_kernel: AutoPPN decoding (``AutoPPN.decode``; ``score_threshold=None``
            keeps its default, ``0`` takes the ``top_n`` best in-image local maxima, fewer where the image has
            fewer; cells in the padding are never prompts).
        points_per_side: grid size for ``prompts="grid"`` (32 as SAM's AMG).
        prompt_type: AutoPPN prompt given to the decoder: ``"point"``, ``"box"`` or ``"point+box"`` (default
            ``prompt_forms.SEGEVERY_PROMPT_FORM``; grid prompts are always points).
        multimask_output: 3 masks per prompt (True) or 1; None = the output the prompt form trains,
            ``prompt_forms.multimask_output_for(form)`` (form ``"point"`` for grid prompts).
        pred_iou_thresh, stability_score_thresh, stability_score_offset: SAM AMG's filters (the stability score
            is computed on the low-resolution logits).
        box_nms_thresh: IoU threshold of the NMS (mask IoU on the low-res masks for ``nms="mask"``, box IoU
            for ``nms="box"`` as SAM's AMG; ``nms="none"`` skips it).
        rank_by: NMS / output order: ``"iou"`` (predicted IoU, as SAM), ``"iou_stability_mean"`` (SAM's
            AR@1000 proposal ranking), ``"stability"`` or ``"ppn_score"`` (the AutoPPN point confidence of the
            mask's prompt; AutoPPN prompts only).
        max_masks: keep at most this many masks per image after NMS (None: all).
        output_mode: ``"binary_mask"`` / ``"coco_rle"`` / ``"uncompressed_rle"`` (AMG records) or ``"tensors"``.
        return_logits: with ``"tensors"``, also return ``mask_logits`` and ``mask_probs`` ``[K, H, W]``
            (probability maps at image resolution, e.g. for BSDS edges).
        chunk_size: prompts per decoder call (bounds memory; None or 0: all prompts of an image at once).
        decoder: ``"fast"`` (``FastMaskDecoder``) or ``"stock"`` (SAM's ``MaskDecoder.forward``).
        autocast_dtype: e.g. ``torch.bfloat16`` to run encoder and decoder under autocast (CUDA).
        image_batch_size: images per encoder call (bounds memory for long lists).
        timings: dict that receives per-phase seconds (``PHASES``), summed over images.
        stats: dict that receives, as lists with one item per image, ``prompts`` and ``masks_before_nms`` (ints)
            and ``filters``: dicts of ``prompt_source``; ``proposals`` (AutoPPN: the in-image local maxima among
            the top-N; grid: the points) = ``prompts`` + ``removed_score_threshold``; ``masks_per_prompt``;
            ``candidates`` (prompts x masks_per_prompt) = ``kept`` + the counts of ``removed`` (a dict keyed by
            ``FILTERS``, in the order the filters apply); ``best_ppn_score``, ``best_pred_iou`` (any mask) and
            ``best_stability`` (masks that passed the predicted-IoU filter), None where nothing was seen; and
            ``thresholds`` (those in effect, e.g. AutoPPN's default score threshold).
        output_sizes: per image the ``(H, W)`` its masks, boxes, areas and points are returned at (None: the
            image's own size), e.g. the original size of a photo downscaled before the call: the low-resolution
            logits are upsampled straight to it, as ``Sam.postprocess_masks`` does to any original size.
    Returns:
        per image a list of records (``segmentation, area, bbox (XYWH), predicted_iou, point_coords,
        stability_score, crop_box``, + ``ppn_score``) sorted by the ranking score, or with ``"tensors"`` a dict of
        ``masks`` bool ``[K, H, W]``, ``low_res_logits [K, h, w]``, ``iou_preds``, ``stability_scores``,
        ``scores``, ``boxes`` (xyxy, inclusive), ``areas``, ``points [K, 2]`` (+ ``ppn_scores [K]``,
        ``mask_logits``, ``mask_probs``/``probs``). ``ppn_score`` (float) / ``ppn_scores`` is the AutoPPN point
        confidence (``AutoPPN.decode``'s score) of the prompt that made the mask; it is ABSENT with grid prompts,
        whose records are then exactly ``SamAutomaticMaskGenerator``'s.
        One image in (an array or a 3-d tensor) gives one result, not a list.
    """
    _check_options(prompts, prompt_type, rank_by, nms, output_mode, decoder)
    check_sam_like(model)
    image_list, single = as_image_list(images)
    if output_sizes is not None and len(output_sizes) != len(image_list):
        raise ValueError(f"output_sizes: {len(output_sizes)} sizes for {len(image_list)} images")
    device = model_device(model)
    size = int(model.image_encoder.img_size)
    mask_threshold = float(getattr(model, "mask_threshold", 0.0))
    prompt_form = prompt_type if prompts == "autoppn" else "point"
    if multimask_output is None:
        multimask_output = multimask_output_for(prompt_form)
    amp = (
        torch.autocast(device_type=device.type, dtype=autocast_dtype)
        if autocast_dtype is not None and autocast_dtype != torch.float32
        else nullcontext()
    )
    thresholds = _stats_thresholds(stats, model, prompts, top_n, score_threshold, points_per_side, pred_iou_thresh,
                                   stability_score_thresh, box_nms_thresh, nms, max_masks)
    results: List[Any] = []
    fast = _fast_decoder(model) if decoder == "fast" else None
    step = max(1, int(image_batch_size))
    for g0 in range(0, len(image_list), step):
        group = image_list[g0 : g0 + step]
        with phase(timings, "preprocess", device):
            prep = preprocess_images(model, group, device)
        with phase(timings, "encoder", device), amp:
            embeddings = model.image_encoder(prep.pixels)
        with phase(timings, "prompts", device), amp:
            if prompts == "autoppn":
                per_image = autoppn_prompts(model, embeddings, prep.input_sizes, top_n, score_threshold, nms_kernel)
            else:
                per_image = grid_prompts(points_per_side, prep.input_sizes, device)
        for b in range(len(group)):
            pr = per_image[b]
            low, iou, rows, funnel = _decode_image(model, fast, embeddings[b : b + 1], pr, prompt_form, prompts,
                                                   multimask_output, chunk_size, pred_iou_thresh, stats, thresholds,
                                                   timings, device, amp)
            with phase(timings, "postprocess", device):
                results.append(
                    postprocess_image(
                        low.float(), iou.float(), rows, pr["points"], pr["scores"], prep.input_sizes[b],
                        prep.original_sizes[b] if output_sizes is None else tuple(output_sizes[g0 + b]), size,
                        mask_threshold, pred_iou_thresh, stability_score_thresh, stability_score_offset,
                        box_nms_thresh, nms, nms_resolution, rank_by, max_masks, output_mode, return_logits, stats,
                        funnel,
                    )
                )
    return results[0] if single else results
