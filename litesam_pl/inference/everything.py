"""``LiteSamEverything``: SegEvery with ``SamAutomaticMaskGenerator``'s interface.

Options are set once, then ``generate(image)`` per image::

    from litesam_pl import LiteSamEverything

    generator = LiteSamEverything("litesam.pt", pred_iou_thresh=0.5, stability_score_thresh=0.8)
    records = generator.generate("photo.jpg")          # list of SAM-style record dicts
    generator.last_stats["filters"][0]["removed"]      # what each filter removed

It is orchestration: ``generate`` calls :func:`litesam_pl.inference.segevery.segment_everything` with the options
and returns its records; the only work of its own is reading the image (path / PIL image) and SAM's
``min_mask_region_area`` post-processing.
"""
from __future__ import annotations

import math
import os
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from .postprocess import box_nms, build_records, masks_to_boxes
from .sam_compat import check_sam_like
from .segevery import NMS_KINDS, PROMPT_SOURCES, PROMPT_TYPES, RANK_BY, segment_everything

__all__ = ["LiteSamEverything", "RECORD_OUTPUT_MODES"]

#: ``output_mode`` values, as ``SamAutomaticMaskGenerator``'s
RECORD_OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")

ImageInput = Union[np.ndarray, Tensor, str, "os.PathLike[str]", Any]  # Any: a PIL image

_PIL_CONVERT = ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1")  # modes load_image converts to RGB(A) too


def _err(name: str, must: str, value: Any) -> ValueError:
    return ValueError(f"LiteSamEverything: {name} must be {must}, got {value!r}")


def _int(name: str, value: Any, low: int, none_ok: bool = False) -> Optional[int]:
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        raise _err(name, f"an integer >= {low}" + (" or None" if none_ok else ""), value)
    return int(value)


def _real(name: str, value: Any, low: float, high: float = math.inf, none_ok: bool = False) -> Optional[float]:
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, Real) or not (low <= float(value) <= high):
        rng = f"a number in [{low:g}, {high:g}]" if math.isfinite(high) else f"a finite number >= {low:g}"
        raise _err(name, rng + (" or None" if none_ok else ""), value)
    if not math.isfinite(float(value)):
        raise _err(name, f"a finite number >= {low:g}", value)
    return float(value)


def _choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise _err(name, f"one of {tuple(allowed)}", value)
    return value


class LiteSamEverything:
    """Segment everything in an image, as ``segment_anything.SamAutomaticMaskGenerator``:
    ``LiteSamEverything(model, **options).generate(image)`` -> a list of records.

    Args:
        model: a LiteSAM (or any ``Sam``-like) model, or the path of an export / Lightning checkpoint (read with
            ``litesam_pl.load_model``, on the CPU, in eval mode). Move a model to its device before passing it.

        SAM's options (same names and meaning as ``SamAutomaticMaskGenerator``):

        points_per_side: grid size for ``prompts="grid"`` (ignored by AutoPPN prompts). Default 32.
        points_per_batch: prompts per decoder call (``segment_everything``'s ``chunk_size``); None: all prompts
            of an image at once. Default 256 (our batched decoder's chunk; SAM's is 64).
        pred_iou_thresh, stability_score_thresh, stability_score_offset: the predicted-IoU and stability filters
            (a threshold of 0 switches that filter off). Defaults 0.88, 0.95, 1.0.
        box_nms_thresh: IoU threshold of the NMS (mask IoU on the low-resolution masks with ``nms="mask"``, box
            IoU with ``nms="box"`` as SAM). Default 0.7.
        output_mode: ``"binary_mask"`` (HxW bool array), ``"uncompressed_rle"`` or ``"coco_rle"`` (the
            ``segmentation`` of each record, as SAM).
        min_mask_region_area: IMPLEMENTED as SAM's: if > 0, every mask loses its disconnected regions and
            holes smaller than this many pixels (``cv2.connectedComponentsWithStats``, SAM's own
            ``remove_small_regions``), its box and area are recomputed, and a box NMS at ``box_nms_thresh``
            removes the new duplicates, preferring masks that were not changed (as SAM; among equals, the
            better-ranked mask; skipped with ``nms="none"``). The records keep ``segment_everything``'s order.
            Default 0 (off).

        Ours (see ``segment_everything``):

        prompts: ``"autoppn"`` (AutoPPN + Point-NMS + top-N; needs a model with an AutoPPN head) or ``"grid"``.
        top_n, score_threshold, nms_kernel: AutoPPN decoding (``score_threshold=None``: AutoPPN's default).
        prompt_type: ``"point"``, ``"box"`` or ``"point+box"`` (AutoPPN prompts); None: the trained form.
        multimask_output: 3 masks per prompt or 1; None: the output the prompt form trains.
        max_masks: at most this many masks per image after NMS (None: all).
        nms: ``"mask"``, ``"box"`` or ``"none"``; nms_resolution: the mask NMS's resolution.
        rank_by: NMS / output order (``"iou"``, ``"iou_stability_mean"``, ``"stability"``, ``"ppn_score"``).
        decoder: ``"fast"`` (our batched decoder) or ``"stock"`` (SAM's ``MaskDecoder``).
        autocast_dtype: e.g. ``torch.bfloat16`` to run under autocast (CUDA); None: float32.
        image_batch_size: images per encoder call in ``generate_batch``.
        (``segment_everything`` has no ``device`` option: it runs where the model is.)

    Every option is checked here, once: a bad value raises a one-line ``ValueError``. The options are
    attributes of the generator (``generator.pred_iou_thresh``, ...), and ``options()`` returns what is passed to
    ``segment_everything``.

    Records: ``generate`` returns one list of dicts with SAM's keys ``segmentation, area, bbox`` (XYWH),
    ``predicted_iou, point_coords, stability_score, crop_box``, plus ``ppn_score`` (the AutoPPN confidence of the
    mask's prompt; absent with grid prompts), sorted by ``rank_by``; masks at the image's own size.
    ``last_stats`` holds ``segment_everything``'s ``stats`` of the last call (lists with one item per image:
    ``prompts``, ``masks_before_nms`` and ``filters``, whose ``removed`` counts what each filter removed).
    """

    def __init__(
        self,
        model: Union[nn.Module, str, "os.PathLike[str]"],
        points_per_side: int = 32,
        points_per_batch: Optional[int] = 256,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        *,
        prompts: str = "autoppn",
        top_n: int = 256,
        score_threshold: Optional[float] = None,
        nms_kernel: int = 3,
        prompt_type: Optional[str] = None,
        multimask_output: Optional[bool] = None,
        max_masks: Optional[int] = None,
        nms: str = "mask",
        nms_resolution: int = 64,
        rank_by: str = "iou",
        decoder: str = "fast",
        autocast_dtype: Optional[torch.dtype] = None,
        image_batch_size: int = 8,
    ) -> None:
        from ..models.prompt_forms import SEGEVERY_PROMPT_FORM

        self.points_per_side = _int("points_per_side", points_per_side, 1)
        self.points_per_batch = _int("points_per_batch", points_per_batch, 1, none_ok=True)
        self.pred_iou_thresh = _real("pred_iou_thresh", pred_iou_thresh, 0.0, 1.0)
        self.stability_score_thresh = _real("stability_score_thresh", stability_score_thresh, 0.0, 1.0)
        self.stability_score_offset = _real("stability_score_offset", stability_score_offset, 0.0)
        self.box_nms_thresh = _real("box_nms_thresh", box_nms_thresh, 0.0, 1.0)
        self.min_mask_region_area = _int("min_mask_region_area", min_mask_region_area, 0)
        if output_mode == "tensors":
            raise _err("output_mode", f"one of {RECORD_OUTPUT_MODES} (for tensors call segment_everything)",
                       output_mode)
        self.output_mode = _choice("output_mode", output_mode, RECORD_OUTPUT_MODES)
        self.prompts = _choice("prompts", prompts, PROMPT_SOURCES)
        self.top_n = _int("top_n", top_n, 1)
        self.score_threshold = _real("score_threshold", score_threshold, 0.0, 1.0, none_ok=True)
        self.nms_kernel = _int("nms_kernel", nms_kernel, 1)
        self.prompt_type = _choice("prompt_type", SEGEVERY_PROMPT_FORM if prompt_type is None else prompt_type,
                                   PROMPT_TYPES)
        if multimask_output is not None and not isinstance(multimask_output, bool):
            raise _err("multimask_output", "True, False or None", multimask_output)
        self.multimask_output = multimask_output
        self.max_masks = _int("max_masks", max_masks, 1, none_ok=True)
        self.nms = _choice("nms", nms, NMS_KINDS)
        self.nms_resolution = _int("nms_resolution", nms_resolution, 0)
        self.rank_by = _choice("rank_by", rank_by, RANK_BY)
        if self.rank_by == "ppn_score" and self.prompts != "autoppn":
            raise _err("rank_by", "not 'ppn_score' with prompts='grid' (grid prompts have no score)", rank_by)
        self.decoder = _choice("decoder", decoder, ("fast", "stock"))
        if autocast_dtype is not None and not isinstance(autocast_dtype, torch.dtype):
            raise _err("autocast_dtype", "a torch.dtype (e.g. torch.bfloat16) or None", autocast_dtype)
        self.autocast_dtype = autocast_dtype
        self.image_batch_size = _int("image_batch_size", image_batch_size, 1)

        if isinstance(model, (str, os.PathLike)):
            from .. import load_model

            model = load_model(model)
        if not isinstance(model, nn.Module):
            raise TypeError(f"LiteSamEverything: model must be a model or the path of a model file, "
                            f"got {type(model).__name__}")
        check_sam_like(model)
        if self.prompts == "autoppn" and getattr(model, "autoppn", None) is None:
            raise ValueError(f"LiteSamEverything: prompts='autoppn' needs a model with an AutoPPN head; "
                             f"{type(model).__name__} has none (use prompts='grid')")
        self.model = model
        self.last_stats: Optional[Dict[str, Any]] = None

    # -------------------------------------------------------------------------------------------------- options
    def options(self) -> Dict[str, Any]:
        """The keyword arguments ``generate`` passes to ``segment_everything`` (``output_mode`` included)."""
        return dict(
            prompts=self.prompts, top_n=self.top_n, score_threshold=self.score_threshold, nms_kernel=self.nms_kernel,
            points_per_side=self.points_per_side, prompt_type=self.prompt_type,
            multimask_output=self.multimask_output, pred_iou_thresh=self.pred_iou_thresh,
            stability_score_thresh=self.stability_score_thresh, stability_score_offset=self.stability_score_offset,
            box_nms_thresh=self.box_nms_thresh, nms=self.nms, nms_resolution=self.nms_resolution,
            rank_by=self.rank_by, max_masks=self.max_masks, output_mode=self.output_mode,
            chunk_size=self.points_per_batch, decoder=self.decoder, autocast_dtype=self.autocast_dtype,
            image_batch_size=self.image_batch_size,
        )

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items() if k != "chunk_size")
        return (f"LiteSamEverything({type(self.model).__name__}, points_per_batch={self.points_per_batch!r}, "
                f"min_mask_region_area={self.min_mask_region_area}, {opts})")

    # ------------------------------------------------------------------------------------------------- generate
    def generate(self, image: ImageInput) -> List[Dict[str, Any]]:
        """Segment everything in ONE image: an ``HxWx3`` uint8 RGB array, a ``[3, H, W]`` tensor in 0..255, the
        path of an image file (``str`` / ``Path``, read with ``litesam_pl.inference.images.load_image``: any mode,
        EXIF orientation applied) or a PIL image (converted the same way). Returns a list of record dicts (see
        the class doc); ``last_stats`` receives the stats of this call."""
        if isinstance(image, (list, tuple)):
            raise TypeError("LiteSamEverything.generate takes one image; use generate_batch for a list of images")
        return self.generate_batch([image])[0]

    def generate_batch(self, images: Sequence[ImageInput]) -> List[List[Dict[str, Any]]]:
        """``generate`` on several images in one ``segment_everything`` call (the encoder batches
        ``image_batch_size`` of them): a list with one list of records per image."""
        if isinstance(images, (str, os.PathLike)) or not isinstance(images, (list, tuple, np.ndarray, Tensor)):
            raise TypeError(f"LiteSamEverything.generate_batch takes a list of images, got {type(images).__name__}")
        arrays = [_as_array(im, i) for i, im in enumerate(images)]
        if not arrays:
            self.last_stats = {"prompts": [], "masks_before_nms": [], "filters": []}
            return []
        opts = self.options()
        if self.min_mask_region_area > 0:
            opts["output_mode"] = "tensors"
        stats: Dict[str, Any] = {}
        results = segment_everything(self.model, arrays, stats=stats, **opts)
        self.last_stats = stats
        if self.min_mask_region_area > 0:
            results = [self._small_regions_records(out) for out in results]
        return results

    __call__ = generate

    # ---------------------------------------------------------------------------------- min_mask_region_area
    def _small_regions_records(self, out: Dict[str, Tensor]) -> List[Dict[str, Any]]:
        """SAM's ``postprocess_small_regions`` on one image's ``segment_everything`` tensors, then records."""
        masks = out["masks"]
        h, w = int(masks.shape[-2]), int(masks.shape[-1])
        masks, keep = remove_small_regions_and_dedup(
            masks, self.min_mask_region_area, self.box_nms_thresh if self.nms != "none" else None)
        ppn = out.get("ppn_scores")
        return build_records(masks[keep], out["iou_preds"][keep], out["stability_scores"][keep],
                             masks_to_boxes(masks[keep]), out["points"][keep], (h, w), self.output_mode,
                             ppn_scores=None if ppn is None else ppn[keep])


def remove_small_regions_and_dedup(masks: Tensor, min_area: int, nms_thresh: Optional[float]) -> tuple:
    """SAM's ``SamAutomaticMaskGenerator.postprocess_small_regions`` on bool ``masks [K, H, W]`` (ranked, best
    first): holes then islands below ``min_area`` pixels removed from each mask (SAM's ``remove_small_regions``,
    ``cv2.connectedComponentsWithStats``), then box NMS at ``nms_thresh`` on the new boxes preferring unchanged
    masks (then the better-ranked; ``nms_thresh=None`` skips it). Returns ``(new masks [K, H, W], kept indices in
    rank order)``."""
    from segment_anything.utils.amg import remove_small_regions

    k = int(masks.shape[0])
    if k == 0:
        return masks, torch.zeros(0, dtype=torch.long, device=masks.device)
    new, unchanged = [], []
    for m in masks.cpu().numpy():
        m, changed_holes = remove_small_regions(m, min_area, mode="holes")
        m, changed_islands = remove_small_regions(m, min_area, mode="islands")
        new.append(torch.from_numpy(np.ascontiguousarray(m, dtype=bool)))
        unchanged.append(not (changed_holes or changed_islands))
    masks = torch.stack(new).to(masks.device)
    if nms_thresh is None:
        return masks, torch.arange(k, device=masks.device)
    # unchanged masks first (as SAM), then rank order: scores in (0, 1] for changed, (1, 2] for unchanged
    rank = 1.0 - torch.arange(k, dtype=torch.float64) / k
    score = (torch.tensor(unchanged, dtype=torch.float64) + rank).to(masks.device)
    keep = box_nms(masks_to_boxes(masks), score, nms_thresh)
    return masks, torch.sort(keep).values


def _as_array(image: ImageInput, i: int) -> Union[np.ndarray, Tensor]:
    """A path or PIL image -> RGB ``uint8 [H, W, 3]`` (as ``load_image``); arrays and tensors pass through."""
    if isinstance(image, (np.ndarray, Tensor)):
        return image
    if isinstance(image, (str, os.PathLike)):
        from .images import load_image

        return load_image(Path(image))
    try:
        from PIL import Image, ImageOps
    except ImportError:  # pragma: no cover - PIL is a dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        from .images import to_rgb_uint8

        im = ImageOps.exif_transpose(image)
        if im.mode in _PIL_CONVERT:
            im = im.convert("RGBA" if "transparency" in im.info or im.mode == "PA" else "RGB")
        return to_rgb_uint8(np.asarray(im), name=f"image {i}")
    raise TypeError(f"LiteSamEverything: image {i} must be an HxWx3 uint8 array, a [3, H, W] tensor, a path or a "
                    f"PIL image, got {type(image).__name__}")
