"""SegEvery ("segment everything") on a batch of images, end to end on the device.

``SegEvery(model, options).run(images)`` (options: ``SegEveryOptions``, ``segevery_options.py``) returns a
``SegEveryResult``: ``masks`` (per image records or tensors), ``timings`` and ``stats``; ``segment_everything(model,
images, **options)`` is the functional form (returns the masks only; it collects no timings or stats). Pipeline,
one small method per step::

    images -> resize/normalise/pad -> image encoder (one batched call)
           -> prompts: AutoPPN + Point-NMS + top-N (points and boxes)   | or a points_per_side^2 grid
           -> prompt encoder (all prompts at once)
           -> batched mask decoder (``FastMaskDecoder``; chunks of ``chunk_size`` prompts bound the memory)
           -> filters on predicted IoU and stability (low resolution)
           -> NMS on the low-resolution masks (greedy, exact, vectorised)
           -> only the survivors upsampled to the image resolution (``Sam.postprocess_masks`` math)
           -> records in ``SamAutomaticMaskGenerator``'s format (+ the prompt's AutoPPN ``ppn_score``), COCO RLE,
              or tensors

No Python loop runs per mask or per prompt (loops run over images and prompt chunks). ``SegEveryResult.timings``
holds per-phase seconds (``PHASES``) with device synchronisation for the benchmarks; ``SegEveryResult.stats`` per
image how many prompts and masks each filter removed (``stats["filters"]``, see ``FILTERS``), so that an empty
result can say why.

Modules: ``segevery_prompts`` (AutoPPN / grid prompts), ``segevery_masks`` (filters, NMS and upsampling of one
image's masks; the image part of the low-res frame by the data layer's padding-cell rule, ``data.geometry``); this
one runs the batched encoder and decoder calls and gathers what each step returns (masks, per-image counts) into
the ``SegEveryResult``.
"""
from __future__ import annotations

import inspect
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from typing import Any, ContextManager, Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from ..models.prompt_encoder import uses_box_mask
from ..models.prompt_forms import multimask_output_for
from .fast_decoder import FastMaskDecoder, embed_prompts, stock_decode
from .sam_compat import ImagesLike, as_image_list, check_sam_like, model_device, preprocess_images
from .segevery_masks import Decoded, ImageMasks, postprocess_image
from .segevery_options import NMS_KINDS, PROMPT_SOURCES, PROMPT_TYPES, RANK_BY, SegEveryOptions
from .segevery_prompts import (
    autoppn_prompts,
    grid_prompts,
    prompt_stage_stats,
    prompt_tensors,
    score_threshold_used,
)
from .timing import phase

__all__ = ["SegEvery", "SegEveryResult", "SegEveryOptions", "segment_everything", "Decoded", "gather_stats",
           "PROMPT_SOURCES", "PROMPT_TYPES", "RANK_BY", "NMS_KINDS", "PHASES", "FILTERS"]

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
    model: nn.Module, emb: Tensor, sparse: Tensor, multimask_output: bool, chunk_size: Optional[int],
    boxes: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """SAM's ``MaskDecoder`` on ``N`` prompts in chunks (the reference path; ``boxes [N, 4]`` for a prompt encoder
    that feeds boxes as dense mask prompts too)."""
    n = sparse.shape[0]
    chunk = max(1, n if not chunk_size or chunk_size <= 0 else chunk_size)
    outs = [
        stock_decode(model.mask_decoder, model.prompt_encoder, emb, sparse[i : i + chunk], multimask_output,
                     boxes=None if boxes is None else boxes[i : i + chunk])
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
    all_iou: bool = False,
) -> Decoded:
    """``FastMaskDecoder`` in chunks, with the mask upscaling run only for prompts that have at least one
    mask whose predicted IoU passes ``pred_iou_thresh`` (the IoU head needs only the output tokens).

    Returns low-res logits ``[R, M, 4h, 4w]``, IoU ``[R, M]``, the prompt indices ``rows [R]`` and, with
    ``all_iou``, the IoU ``[N, M]`` of every prompt's masks (the dropped prompts too; else None)."""
    cache = fast.prepare_image(emb)
    sel = fast.mask_tokens_for(multimask_output)
    n = sparse.shape[0]
    chunk = max(1, n if not chunk_size or chunk_size <= 0 else chunk_size)
    lows, ious, rows, seen = [], [], [], []
    for start in range(0, n, chunk):
        queries, keys = fast.run_transformer(cache, sparse[start : start + chunk])
        iou = fast.predict_iou(queries)[:, sel[0] : sel[-1] + 1]
        if all_iou:
            seen.append(iou)
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
        empty = sparse.new_zeros(0, len(sel))
        return Decoded(sparse.new_zeros(0, len(sel), 4 * h, 4 * w), empty,
                       torch.zeros(0, dtype=torch.long, device=sparse.device), empty if all_iou else None)
    return Decoded(torch.cat(lows), torch.cat(ious), torch.cat(rows), torch.cat(seen) if all_iou else None)


@dataclass
class SegEveryResult:
    """What ``SegEvery.run`` returns.

    masks: per image a list of records (``segmentation, area, bbox (XYWH), predicted_iou, point_coords,
        stability_score, crop_box``, + ``ppn_score``) sorted by the ranking score, or with ``output_mode="tensors"``
        a dict of ``masks`` bool ``[K, H, W]``, ``low_res_logits [K, h, w]``, ``iou_preds``, ``stability_scores``,
        ``scores``, ``boxes`` (xyxy, inclusive), ``areas``, ``points [K, 2]`` (+ ``ppn_scores [K]``,
        ``mask_logits``, ``mask_probs``/``probs``). ``ppn_score`` / ``ppn_scores`` is the AutoPPN point confidence
        (``AutoPPN.decode``'s score) of the prompt that made the mask; ABSENT with grid prompts, whose records are
        then exactly ``SamAutomaticMaskGenerator``'s. One image in (an array or a 3-d tensor) gives one result, not
        a list. (This is what ``segment_everything`` returns.)
    timings: seconds per phase (``PHASES``), summed over images, device synchronised (empty when not collected).
    stats: lists with one item per image: ``prompts`` and ``masks_before_nms`` (ints) and ``filters``: dicts of
        ``prompt_source``; ``proposals`` (AutoPPN: the in-image local maxima among the top-N; grid: the points) =
        ``prompts`` + ``removed_score_threshold``; ``masks_per_prompt``; ``candidates`` (prompts x
        masks_per_prompt) = ``kept`` + the counts of ``removed`` (a dict keyed by ``FILTERS``, in the order the
        filters apply); ``best_ppn_score``, ``best_pred_iou`` (any mask) and ``best_stability`` (masks that passed
        the predicted-IoU filter), None where nothing was seen; and ``thresholds`` (those in effect, e.g. AutoPPN's
        default score threshold). Empty when not collected.
    """

    masks: Union[List[Any], Any]
    timings: Dict[str, float] = field(default_factory=dict)
    stats: Dict[str, Any] = field(default_factory=dict)


@dataclass
class _Run:
    """What one ``run`` shares between its steps (the model's geometry and the options resolved for it)."""

    device: torch.device
    size: int
    mask_threshold: float
    prompt_form: str
    multimask: bool
    amp: ContextManager
    fast: Optional[FastMaskDecoder]
    timings: Optional[Dict[str, float]]
    counts: bool
    thresholds: Dict[str, Any]


class SegEvery:
    """Segment everything with ``model`` (LiteSAM, SAM-B + AutoPPN, or any ``Sam`` for grid prompts), as SAM's
    ``SamAutomaticMaskGenerator``: options once, then ``run(images)`` -> ``SegEveryResult``.

    ``SegEvery(model, options=None, **overrides)``: ``options`` a ``SegEveryOptions`` (default: its defaults),
    ``overrides`` change some of its fields (checked: a bad one raises a one-line ``ValueError`` naming it).
    ``model``: a ``Sam``-like model (``image_encoder.img_size``, ``prompt_encoder``, ``mask_decoder``; ``autoppn``
    for ``prompts="autoppn"``); SegEvery runs where the model is.

    The steps are methods: ``encode`` (preprocess + image encoder, ``image_batch_size`` images per call),
    ``propose`` (AutoPPN or grid prompts), ``decode`` (prompt encoder + mask decoder per image) and
    ``postprocess`` (filters, NMS, upsampling, records; ``segevery_masks``); with stats, ``prompt_stats`` (the
    prompt part of an image's counts). Each returns its values; ``run`` alone assembles the result.
    """

    def __init__(self, model: nn.Module, options: Optional[SegEveryOptions] = None, **overrides: Any) -> None:
        if options is None:
            options = SegEveryOptions(**overrides)
        elif not isinstance(options, SegEveryOptions):
            raise TypeError(f"SegEvery: options must be a SegEveryOptions, got {type(options).__name__}")
        elif overrides:
            options = options.replace(**overrides)
        check_sam_like(model)
        self.model = model
        self.options = options

    def __repr__(self) -> str:
        return f"SegEvery({type(self.model).__name__}, {self.options!r})"

    @torch.no_grad()
    def run(self, images: ImagesLike, output_sizes: Optional[List[Tuple[int, int]]] = None, *,
            collect_timings: bool = True, collect_stats: bool = True) -> SegEveryResult:
        """Segment everything in ``images``: one ``HxWx3`` uint8 array, a list of them, or a ``[B, 3, H, W]`` /
        ``[3, H, W]`` tensor in 0..255. ``output_sizes``: per image the ``(H, W)`` its masks, boxes, areas and
        points are returned at (None: the image's own size), e.g. the original size of a photo downscaled before
        the call: the low-resolution logits are upsampled straight to it, as ``Sam.postprocess_masks`` does.
        ``collect_timings`` / ``collect_stats`` False skip the device synchronisations / counts they cost."""
        image_list, single = as_image_list(images)
        if output_sizes is not None and len(output_sizes) != len(image_list):
            raise ValueError(f"output_sizes: {len(output_sizes)} sizes for {len(image_list)} images")
        ctx = self._start(collect_timings, collect_stats)
        outs: List[ImageMasks] = []
        prompt_parts: List[Dict[str, Any]] = []
        step = self.options.image_batch_size
        for g0 in range(0, len(image_list), step):
            group = image_list[g0 : g0 + step]
            prep, embeddings = self.encode(group, ctx)
            per_image = self.propose(embeddings, prep.input_sizes, ctx)
            for b, pr in enumerate(per_image):
                if ctx.counts:
                    prompt_parts.append(self.prompt_stats(pr, ctx))
                dec = self.decode(embeddings[b : b + 1], pr, ctx)
                out_size = prep.original_sizes[b] if output_sizes is None else tuple(output_sizes[g0 + b])
                outs.append(self.postprocess(dec, pr, prep.input_sizes[b], out_size, ctx))
        masks = [out.masks for out in outs]
        stats = gather_stats(prompt_parts, outs) if ctx.counts else {}
        return SegEveryResult(masks[0] if single else masks, ctx.timings or {}, stats)

    # ------------------------------------------------------------------------------------------------------ steps
    def _start(self, collect_timings: bool, collect_stats: bool) -> _Run:
        """The run's shared state: device, input size, prompt form, autocast and the thresholds for the stats."""
        o, model = self.options, self.model
        device = model_device(model)
        prompt_form = o.prompt_type if o.prompts == "autoppn" else "point"
        amp = (torch.autocast(device_type=device.type, dtype=o.autocast_dtype)
               if o.autocast_dtype is not None and o.autocast_dtype != torch.float32 else nullcontext())
        thresholds = self._thresholds() if collect_stats else {}
        return _Run(device, int(model.image_encoder.img_size), float(getattr(model, "mask_threshold", 0.0)),
                    prompt_form, multimask_output_for(prompt_form) if o.multimask_output is None
                    else o.multimask_output, amp, _fast_decoder(model) if o.decoder == "fast" else None,
                    {} if collect_timings else None, bool(collect_stats), thresholds)

    def _thresholds(self) -> Dict[str, Any]:
        """The filter settings in effect (the same for every image; ``stats["filters"][i]["thresholds"]``)."""
        o, autoppn = self.options, self.options.prompts == "autoppn"
        return dict(
            top_n=o.top_n if autoppn else None,
            score_threshold=score_threshold_used(self.model, o.score_threshold) if autoppn else None,
            points_per_side=o.points_per_side if o.prompts == "grid" else None,
            pred_iou_thresh=float(o.pred_iou_thresh), stability_score_thresh=float(o.stability_score_thresh),
            box_nms_thresh=float(o.box_nms_thresh) if o.nms != "none" else None, nms=o.nms,
            max_masks=o.max_masks,
        )

    def encode(self, group: List[Any], ctx: _Run) -> Tuple[Any, Tensor]:
        """Resize, normalise and pad ``group`` (``preprocess_images``) and run the image encoder on it at once."""
        with phase(ctx.timings, "preprocess", ctx.device):
            prep = preprocess_images(self.model, group, ctx.device)
        with phase(ctx.timings, "encoder", ctx.device), ctx.amp:
            embeddings = self.model.image_encoder(prep.pixels)
        return prep, embeddings

    def propose(self, embeddings: Tensor, input_sizes: List[Tuple[int, int]], ctx: _Run) -> List[Dict[str, Any]]:
        """Per image its prompts: AutoPPN + Point-NMS + top-N points and boxes, or the point grid."""
        o = self.options
        with phase(ctx.timings, "prompts", ctx.device), ctx.amp:
            if o.prompts == "autoppn":
                return autoppn_prompts(self.model, embeddings, input_sizes, o.top_n, o.score_threshold, o.nms_kernel)
            return grid_prompts(o.points_per_side, input_sizes, ctx.device)

    def prompt_stats(self, pr: Dict[str, Any], ctx: _Run) -> Dict[str, Any]:
        """The prompt part of one image's ``stats["filters"]`` entry (``prompt_stage_stats``)."""
        return prompt_stage_stats(pr, self.options.prompts, int(pr["points"].shape[0]), dict(ctx.thresholds))

    def decode(self, emb: Tensor, pr: Dict[str, Any], ctx: _Run) -> Decoded:
        """One image's prompts ``pr`` through the prompt encoder and the mask decoder: low-res logits, predicted
        IoU and the prompts they belong to (``rows``), and the IoU of every prompt's masks when counting; float32
        (cast here once, whatever the autocast dtype)."""
        o, model = self.options, self.model
        with phase(ctx.timings, "prompts", ctx.device), ctx.amp:
            coords, labels = prompt_tensors(pr["points"], pr["boxes"], ctx.prompt_form)
            sparse = embed_prompts(model.prompt_encoder, coords, labels)
        # a box that is also a dense mask prompt makes the image tokens differ per prompt from the first layer on,
        # which the fast decoder's shared first block assumes they do not: such prompts take SAM's decoder
        dense_boxes = (pr["boxes"] if ctx.prompt_form != "point" and pr["boxes"] is not None
                       and uses_box_mask(model.prompt_encoder) else None)
        with phase(ctx.timings, "decoder", ctx.device), ctx.amp:
            if ctx.fast is not None and ctx.fast.supported and dense_boxes is None:
                dec = _fast_decode_survivors(ctx.fast, emb, sparse, ctx.multimask, o.chunk_size,
                                             o.pred_iou_thresh, ctx.counts)
            else:
                low, iou = _stock_decode_chunked(model, emb, sparse, ctx.multimask, o.chunk_size, dense_boxes)
                dec = Decoded(low, iou, torch.arange(low.shape[0], device=low.device), iou if ctx.counts else None)
            return dec.float()

    def postprocess(self, dec: Decoded, pr: Dict[str, Any], input_size: Tuple[int, int],
                    output_size: Tuple[int, int], ctx: _Run) -> ImageMasks:
        """Filters, NMS, upsampling of the survivors to ``output_size`` and the records (``postprocess_image``),
        with the image's mask counts when counting (``dec.iou_all`` set)."""
        with phase(ctx.timings, "postprocess", ctx.device):
            return postprocess_image(dec, pr, self.options, input_size=input_size, output_size=output_size,
                                     size=ctx.size, mask_threshold=ctx.mask_threshold)


def gather_stats(prompt_parts: List[Dict[str, Any]], outs: List[ImageMasks]) -> Dict[str, Any]:
    """``SegEveryResult.stats`` from each image's prompt part (``prompt_stage_stats``) and mask stage
    (``ImageMasks``): the lists ``prompts``, ``masks_before_nms`` and ``filters`` (the two parts in one dict)."""
    return {
        "prompts": [p["prompts"] for p in prompt_parts],
        "masks_before_nms": [out.masks_before_nms for out in outs],
        "filters": [{**p, **out.filters} for p, out in zip(prompt_parts, outs)],
    }


def segment_everything(model: nn.Module, images: ImagesLike, *, output_sizes: Optional[List[Tuple[int, int]]] = None,
                       **options: Any) -> Union[List[Any], Any]:
    """Segment everything in ``images`` with ``model``: ``SegEvery(model, SegEveryOptions(**options)).run(images,
    output_sizes).masks`` (see ``SegEvery``, ``SegEveryResult`` for the return value and ``SegEveryOptions`` for
    every option and its default; a bad option value raises a one-line ``ValueError`` naming it, an unknown option a
    one-line ``TypeError`` naming it).

    The masks only: no timing or count is collected. For the per-phase timings or the per-image stats run
    ``SegEvery(model, options).run(images)`` and read ``SegEveryResult.timings`` / ``.stats`` (``stats=`` /
    ``timings=``, the dicts it once filled, are refused with that pointer).
    """
    import difflib

    names = SegEveryOptions.names()
    unknown = sorted(set(options) - set(names))
    if unknown:
        name = unknown[0]
        if name in ("stats", "timings"):
            raise TypeError(f"segment_everything: unexpected option {name!r} (it returns the masks only; for the "
                            f"{name} read SegEvery(model, options).run(images).{name})")
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        guess = f"did you mean {close[0]!r}? " if close else ""
        raise TypeError(f"segment_everything: unexpected option {name!r} ({guess}options: {', '.join(names)})")
    return SegEvery(model, SegEveryOptions(**options)).run(
        images, output_sizes, collect_timings=False, collect_stats=False).masks


def _signature() -> inspect.Signature:
    """``segment_everything``'s signature with every ``SegEveryOptions`` field as a keyword (for ``help`` and
    ``inspect``): ``(model, images, *, <options with their defaults>, output_sizes=None)``."""
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD),
              inspect.Parameter("images", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(f.name, kw, default=f.default) for f in fields(SegEveryOptions)]
    params.append(inspect.Parameter("output_sizes", kw, default=None))
    return inspect.Signature(params)


segment_everything.__signature__ = _signature()  # type: ignore[attr-defined]
