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
"""
from __future__ import annotations

import inspect
import math
from contextlib import nullcontext
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .fast_decoder import LABEL_BOX_BR, LABEL_BOX_TL, LABEL_PAD, LABEL_POS, FastMaskDecoder, embed_prompts, stock_decode
from .postprocess import OUTPUT_MODES, box_nms, build_records, mask_nms, masks_to_boxes, stability_score
from ..models.prompt_forms import SEGEVERY_PROMPT_FORM, multimask_output_for
from .timing import phase
from .sam_compat import ImagesLike, as_image_list, check_sam_like, grid_points, model_device, preprocess_images

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


def _autoppn_prompts(
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


def _prompt_tensors(points: Tensor, boxes: Optional[Tensor], prompt_type: str) -> Tuple[Tensor, Tensor]:
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


def _upsample_logits(low: Tensor, size: int, input_size: Tuple[int, int], original_size: Tuple[int, int]) -> Tensor:
    """``Sam.postprocess_masks`` on ``[K, h4, w4]`` low-res logits -> ``[K, H, W]`` logits at image resolution."""
    x = F.interpolate(low[:, None].float(), (size, size), mode="bilinear", align_corners=False)
    x = x[..., : input_size[0], : input_size[1]]
    x = F.interpolate(x, original_size, mode="bilinear", align_corners=False)
    return x[:, 0]


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
    if multimask_output is None:
        multimask_output = multimask_output_for(prompt_type if prompts == "autoppn" else "point")
    amp = (
        torch.autocast(device_type=device.type, dtype=autocast_dtype)
        if autocast_dtype is not None and autocast_dtype != torch.float32
        else nullcontext()
    )
    thresholds: Dict[str, Any] = {}  # the filter settings in effect, the same for every image
    if stats is not None:
        stats.setdefault("prompts", [])
        stats.setdefault("masks_before_nms", [])
        stats.setdefault("filters", [])
        thresholds = dict(
            top_n=int(top_n) if prompts == "autoppn" else None,
            score_threshold=_score_threshold_used(model, score_threshold) if prompts == "autoppn" else None,
            points_per_side=int(points_per_side) if prompts == "grid" else None,
            pred_iou_thresh=float(pred_iou_thresh), stability_score_thresh=float(stability_score_thresh),
            box_nms_thresh=float(box_nms_thresh) if nms != "none" else None, nms=nms,
            max_masks=None if max_masks is None else int(max_masks),
        )

    results: List[Any] = []
    fast = _fast_decoder(model) if decoder == "fast" else None
    for g0 in range(0, len(image_list), max(1, int(image_batch_size))):
        group = image_list[g0 : g0 + max(1, int(image_batch_size))]
        with phase(timings, "preprocess", device):
            prep = preprocess_images(model, group, device)
        with phase(timings, "encoder", device), amp:
            embeddings = model.image_encoder(prep.pixels)
        with phase(timings, "prompts", device), amp:
            if prompts == "autoppn":
                per_image = _autoppn_prompts(model, embeddings, prep.input_sizes, top_n, score_threshold, nms_kernel)
            else:
                per_image = [
                    {"points": grid_points(points_per_side, s, device), "boxes": None, "scores": None}
                    for s in prep.input_sizes
                ]
        for b in range(len(group)):
            pr = per_image[b]
            with phase(timings, "prompts", device), amp:
                coords, labels = _prompt_tensors(pr["points"], pr["boxes"], prompt_type if prompts == "autoppn" else "point")
                sparse = embed_prompts(model.prompt_encoder, coords, labels)
            funnel: Optional[Dict[str, Any]] = None
            if stats is not None:
                stats["prompts"].append(int(sparse.shape[0]))
                funnel = _prompt_stage_stats(pr, prompts, int(sparse.shape[0]), dict(thresholds))
            iou_seen: Optional[List[Tensor]] = [] if funnel is not None else None
            with phase(timings, "decoder", device), amp:
                emb = embeddings[b : b + 1]
                if fast is not None and fast.supported:
                    low, iou, rows = _fast_decode_survivors(fast, emb, sparse, multimask_output, chunk_size,
                                                            pred_iou_thresh, iou_seen)
                else:
                    low, iou = _stock_decode_chunked(model, emb, sparse, multimask_output, chunk_size)
                    rows = torch.arange(low.shape[0], device=low.device)
                    iou_seen = [iou] if iou_seen is not None else None
            if funnel is not None:
                funnel["iou_all"] = torch.cat(iou_seen).float() if iou_seen else iou.float()
            with phase(timings, "postprocess", device):
                results.append(
                    _postprocess_image(
                        low.float(), iou.float(), rows, pr["points"], pr["scores"], prep.input_sizes[b],
                        prep.original_sizes[b] if output_sizes is None else tuple(output_sizes[g0 + b]), size,
                        mask_threshold, pred_iou_thresh, stability_score_thresh, stability_score_offset,
                        box_nms_thresh, nms, nms_resolution, rank_by, max_masks, output_mode, return_logits, stats,
                        funnel,
                    )
                )
    return results[0] if single else results


def _score_threshold_used(model: nn.Module, score_threshold: Optional[float]) -> Optional[float]:
    """The AutoPPN score threshold in effect: ``score_threshold`` or ``AutoPPN.decode``'s default."""
    if score_threshold is not None:
        return float(score_threshold)
    decode = getattr(getattr(model, "autoppn", None), "decode", None)
    try:
        default = inspect.signature(decode).parameters["score_threshold"].default
    except (TypeError, ValueError, KeyError):
        return None
    return None if default is None or default is inspect.Parameter.empty else float(default)


def _prompt_stage_stats(pr: Dict[str, Any], prompts: str, n_prompts: int, thresholds: Dict[str, Any]) -> Dict[str, Any]:
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


def _filter_stats(
    funnel: Dict[str, Any],
    masks_per_prompt: int,
    iou_keep: Tensor,
    stab_keep: Tensor,
    nonempty_keep: Tensor,
    stab: Tensor,
    n_nms_in: int,
    n_nms_out: int,
    n_kept: int,
) -> Dict[str, Any]:
    """Complete one image's ``stats["filters"]`` entry with the mask stage: ``candidates`` (prompts x
    ``masks_per_prompt``) = ``kept`` + the ``removed`` counts of ``FILTERS`` (in the order they apply), the best
    predicted IoU of any mask (``best_pred_iou``) and the best stability of the masks that passed the predicted-IoU
    filter (``best_stability``; None when none did). The boolean masks and ``stab`` are over the decoded masks."""
    iou_all = funnel.pop("iou_all")
    decoded = iou_keep.numel()
    counts = torch.stack([iou_keep.sum(), stab_keep.sum(), nonempty_keep.sum()]).tolist() if decoded else [0, 0, 0]
    n_iou, n_stab, n_nonempty = (int(c) for c in counts)
    candidates = funnel["prompts"] * masks_per_prompt
    best_stab = float(stab[iou_keep].max()) if n_iou else None
    funnel.update(
        masks_per_prompt=masks_per_prompt,
        candidates=candidates,
        removed={"pred_iou": candidates - n_iou, "stability": n_iou - n_stab, "empty": n_stab - n_nonempty,
                 "nms": n_nms_in - n_nms_out, "max_masks": n_nms_out - n_kept},
        kept=n_kept,
        best_pred_iou=float(iou_all.max()) if iou_all.numel() else None,
        best_stability=best_stab,
    )
    return funnel


def _rank_score(rank_by: str, iou: Tensor, stab: Tensor, ppn: Optional[Tensor]) -> Tensor:
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


def _postprocess_image(
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
    stats: Optional[Dict[str, Any]],
    funnel: Optional[Dict[str, Any]] = None,
) -> Any:
    """Filter, NMS and upsample the decoder outputs of one image: ``low [R, M, h4, w4]`` logits and
    ``iou [R, M]`` of the prompts ``rows [R]`` (the others had no mask above ``pred_iou_thresh``) whose points
    and AutoPPN scores (None for grid prompts) are ``points [N, 2]`` and ``prompt_scores [N]``. ``funnel``
    (``_prompt_stage_stats`` + ``iou_all``, the IoU of all ``N`` prompts' masks) is completed by
    ``_filter_stats`` and appended to ``stats["filters"]``."""
    n, m, lh, lw = low.shape
    low = low.reshape(n * m, lh, lw)
    iou = iou.reshape(n * m)
    src = rows.repeat_interleave(m)  # prompt of each mask
    # the valid (unpadded) part of the low-res frame
    vh = min(lh, math.ceil(input_size[0] * lh / size))
    vw = min(lw, math.ceil(input_size[1] * lw / size))
    crop = low[:, :vh, :vw]
    # as SamAutomaticMaskGenerator: a threshold of 0 (or below) switches that filter off
    keep = iou > pred_iou_thresh if pred_iou_thresh > 0 else torch.ones_like(iou, dtype=torch.bool)
    iou_keep = keep.clone() if funnel is not None else keep
    stab = stability_score(crop, mask_threshold, stability_score_offset)
    if stability_score_thresh > 0:
        keep &= stab >= stability_score_thresh
    stab_keep = keep.clone() if funnel is not None else keep
    stab_all = stab
    binary = crop > mask_threshold
    keep &= binary.flatten(1).any(1)
    idx = keep.nonzero()[:, 0]
    iou, stab, binary, src = iou[idx], stab[idx], binary[idx], src[idx]
    ppn = prompt_scores.float()[src] if prompt_scores is not None else None
    score = _rank_score(rank_by, iou, stab, ppn)
    if stats is not None:
        stats["masks_before_nms"].append(int(idx.numel()))
    if nms == "mask":
        step = max(1, math.ceil(max(vh, vw) / nms_resolution)) if nms_resolution and nms_resolution > 0 else 1
        order = mask_nms(binary[:, ::step, ::step], score, box_nms_thresh)
    elif nms == "box":
        order = box_nms(masks_to_boxes(binary), score, box_nms_thresh)
    else:
        order = torch.argsort(score, descending=True, stable=True)
    n_nms_out = int(order.numel())
    if max_masks is not None:
        order = order[: int(max_masks)]
    if funnel is not None and stats is not None:
        stats["filters"].append(_filter_stats(funnel, m, iou_keep, stab_keep, keep, stab_all, int(idx.numel()),
                                              n_nms_out, int(order.numel())))
    idx, iou, stab, score, src = idx[order], iou[order], stab[order], score[order], src[order]
    ppn = ppn[order] if ppn is not None else None

    # only the survivors go to the image resolution, in chunks that bound the memory
    h, w = original_size
    per = max(1, int(2**27 // max(1, size * size + h * w)))  # ~0.5 GB of float32 per chunk
    full_logits: List[Tensor] = []
    masks_l: List[Tensor] = []
    for i in range(0, idx.numel(), per):
        lg = _upsample_logits(low[idx[i : i + per]], size, input_size, original_size)
        masks_l.append(lg > mask_threshold)
        if return_logits:
            full_logits.append(lg)
    masks = torch.cat(masks_l) if masks_l else torch.zeros(0, h, w, dtype=torch.bool, device=low.device)
    boxes = masks_to_boxes(masks)
    scale_y, scale_x = h / input_size[0], w / input_size[1]
    pts = points[src] * torch.tensor([scale_x, scale_y], device=points.device) if src.numel() else points.new_zeros(0, 2)

    if output_mode == "tensors":
        out: Dict[str, Tensor] = {
            "masks": masks,
            "low_res_logits": low[idx][:, :vh, :vw],
            "iou_preds": iou,
            "stability_scores": stab,
            "scores": score,
            "boxes": boxes,
            "areas": masks.flatten(1).sum(1),
            "points": pts,
        }
        if ppn is not None:
            out["ppn_scores"] = ppn
        if return_logits:
            lg = torch.cat(full_logits) if full_logits else torch.zeros(0, h, w, device=low.device)
            out["mask_logits"] = lg
            out["mask_probs"] = out["probs"] = torch.sigmoid(lg)
        return out
    return build_records(masks, iou, stab, boxes, pts, original_size, output_mode, ppn_scores=ppn)
