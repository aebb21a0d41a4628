"""``LiteSamEverything``: SegEvery with ``SamAutomaticMaskGenerator``'s interface.

Options are set once, then ``generate(image)`` per image::

    from litesam_pl import LiteSamEverything

    generator = LiteSamEverything("litesam.pt", pred_iou_thresh=0.5, stability_score_thresh=0.8)
    records = generator.generate("photo.jpg")          # list of SAM-style record dicts
    generator.last_stats["filters"][0]["removed"]      # what each filter removed

It is orchestration: its options are a ``SegEveryOptions`` (``segevery_options.py``: defaults and checks declared
there once) plus SAM's own (``min_mask_region_area``, ``points_per_batch``, thresholds in [0, 1]); ``generate`` runs
``SegEvery(model, options).run`` and returns its records; the only work of its own is reading the image (path / PIL
image) and SAM's ``min_mask_region_area`` post-processing.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from .postprocess import box_nms, build_records, masks_to_boxes
from .sam_compat import check_sam_like
from .segevery import SegEvery, gather_stats
from .segevery_options import OptionError, SegEveryOptions, check_choice, check_int, check_real

__all__ = ["LiteSamEverything", "RECORD_OUTPUT_MODES", "remove_small_regions_and_dedup"]

#: ``output_mode`` values, as ``SamAutomaticMaskGenerator``'s
RECORD_OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")

ImageInput = Union[np.ndarray, Tensor, str, "os.PathLike[str]", Any]  # Any: a PIL image

_PIL_CONVERT = ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1")  # modes load_image converts to RGB(A) too

_D = SegEveryOptions()  # the defaults (declared once, in SegEveryOptions)
#: the SegEveryOptions fields LiteSamEverything takes as keywords (chunk_size is SAM's points_per_batch; records only)
_KEYWORDS = tuple(n for n in SegEveryOptions.names() if n not in ("chunk_size", "output_mode", "return_logits"))
_ATTRS = _KEYWORDS + ("output_mode", "points_per_batch")  # the options read and set as generator attributes


def _sam_checks(name: str, value: Any) -> Any:
    """The rules SAM's generator adds to ``SegEveryOptions``' for its own option names: thresholds in [0, 1],
    records only, ``points_per_batch`` >= 1, ``min_mask_region_area`` >= 0."""
    if name in ("pred_iou_thresh", "stability_score_thresh"):
        return check_real(name, value, 0.0, 1.0)
    if name == "points_per_batch":
        return check_int(name, value, 1, none_ok=True)
    if name == "min_mask_region_area":
        return check_int(name, value, 0)
    if name == "output_mode":
        if value == "tensors":
            raise OptionError(name, f"one of {RECORD_OUTPUT_MODES} (for tensors use SegEvery or "
                              "segment_everything)", value)
        return check_choice(name, value, RECORD_OUTPUT_MODES)
    return value


class LiteSamEverything:
    """Segment everything in an image, as ``segment_anything.SamAutomaticMaskGenerator``:
    ``LiteSamEverything(model, **options).generate(image)`` -> a list of records.

    Args:
        model: a LiteSAM (or any ``Sam``-like) model, or the path of an export / Lightning checkpoint (read with
            ``litesam_pl.load_model``, on the CPU, in eval mode). Move a model to its device before passing it.

        SAM's options (same names, order and meaning as ``SamAutomaticMaskGenerator``; defaults from
        ``SegEveryOptions``):

        points_per_side: grid size for ``prompts="grid"`` (ignored by AutoPPN prompts). Default 32.
        points_per_batch: prompts per decoder call (``SegEveryOptions.chunk_size``); None: all prompts of an image
            at once. Default 256 (our batched decoder's chunk; SAM's is 64).
        pred_iou_thresh, stability_score_thresh, stability_score_offset: the predicted-IoU and stability filters
            (thresholds in [0, 1], as SAM; 0 switches that filter off). Defaults 0.88, 0.95, 1.0.
        box_nms_thresh: IoU threshold of the NMS (mask IoU on the low-resolution masks with ``nms="mask"``, box
            IoU with ``nms="box"`` as SAM). Default 0.7.
        output_mode: ``"binary_mask"`` (HxW bool array), ``"uncompressed_rle"`` or ``"coco_rle"`` (the
            ``segmentation`` of each record, as SAM).
        min_mask_region_area: IMPLEMENTED as SAM's: if > 0, every mask loses its disconnected regions and
            holes smaller than this many pixels (``cv2.connectedComponentsWithStats``, SAM's own
            ``remove_small_regions``), its box and area are recomputed, and a box NMS at ``box_nms_thresh``
            removes the new duplicates, preferring masks that were not changed (as SAM; among equals, the
            better-ranked mask; skipped with ``nms="none"``). The records keep SegEvery's order.
            Default 0 (off).

        Ours, keyword-only: every other ``SegEveryOptions`` field (its docstring lists them): ``prompts``
        (``"autoppn"``, needing a model with an AutoPPN head, or ``"grid"``), ``top_n``, ``score_threshold``,
        ``nms_kernel``, ``prompt_type`` (None: the trained form), ``multimask_output``, ``max_masks``, ``nms``,
        ``nms_resolution``, ``rank_by``, ``decoder``, ``autocast_dtype``, ``image_batch_size`` (images per
        encoder call in ``generate_batch``). (SegEvery has no ``device`` option: it runs where the model is.)

    Every option is checked here, once (``SegEveryOptions`` + SAM's rules above): a bad value raises a one-line
    ``ValueError``. The options are ``generator.segevery_options`` (a ``SegEveryOptions``) and attributes of the
    generator (``generator.pred_iou_thresh``, ...; setting one checks it); ``options()`` returns them as a dict.

    Records: ``generate`` returns one list of dicts with SAM's keys ``segmentation, area, bbox`` (XYWH),
    ``predicted_iou, point_coords, stability_score, crop_box``, plus ``ppn_score`` (the AutoPPN confidence of the
    mask's prompt; absent with grid prompts), sorted by ``rank_by``; masks at the image's own size.
    ``last_stats`` holds the ``SegEveryResult.stats`` of the last call (lists with one item per image:
    ``prompts``, ``masks_before_nms`` and ``filters``, whose ``removed`` counts what each filter removed).
    """

    def __init__(
        self,
        model: Union[nn.Module, str, "os.PathLike[str]"],
        points_per_side: int = _D.points_per_side,
        points_per_batch: Optional[int] = _D.chunk_size,
        pred_iou_thresh: float = _D.pred_iou_thresh,
        stability_score_thresh: float = _D.stability_score_thresh,
        stability_score_offset: float = _D.stability_score_offset,
        box_nms_thresh: float = _D.box_nms_thresh,
        min_mask_region_area: int = 0,
        output_mode: str = _D.output_mode,
        **options: Any,
    ) -> None:
        unknown = sorted(set(options) - set(_KEYWORDS))
        if unknown:
            raise TypeError(f"LiteSamEverything: unexpected option {unknown[0]!r} (options: {', '.join(_KEYWORDS)})")
        if options.get("prompt_type", "") is None:  # None: the trained form, SegEvery's default
            del options["prompt_type"]
        sam = dict(points_per_side=points_per_side, chunk_size=points_per_batch, pred_iou_thresh=pred_iou_thresh,
                   stability_score_thresh=stability_score_thresh, stability_score_offset=stability_score_offset,
                   box_nms_thresh=box_nms_thresh, output_mode=output_mode)
        try:
            for name, value in (("points_per_batch", points_per_batch), ("pred_iou_thresh", pred_iou_thresh),
                                ("stability_score_thresh", stability_score_thresh), ("output_mode", output_mode),
                                ("min_mask_region_area", min_mask_region_area)):
                _sam_checks(name, value)
            self.__dict__["segevery_options"] = SegEveryOptions(**sam, **options)
        except OptionError as err:
            raise err.for_owner("LiteSamEverything") from None
        self.min_mask_region_area = int(min_mask_region_area)
        self.model = _as_model(model, self.segevery_options.prompts)
        self.last_stats: Optional[Dict[str, Any]] = None

    # -------------------------------------------------------------------------------------------------- options
    def __getattr__(self, name: str) -> Any:
        opts = self.__dict__.get("segevery_options")
        if opts is not None and name == "points_per_batch":
            return opts.chunk_size
        if opts is not None and name in _ATTRS:
            return getattr(opts, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _ATTRS:
            try:
                _sam_checks(name, value)
                opts = self.segevery_options.replace(**{"chunk_size" if name == "points_per_batch" else name: value})
            except OptionError as err:
                raise err.for_owner("LiteSamEverything") from None
            name, value = "segevery_options", opts
        elif name == "min_mask_region_area":
            try:
                value = _sam_checks(name, value)
            except OptionError as err:
                raise err.for_owner("LiteSamEverything") from None
        super().__setattr__(name, value)

    def options(self) -> Dict[str, Any]:
        """The SegEvery options of ``generate`` as keyword arguments (``chunk_size`` = ``points_per_batch``)."""
        return self.segevery_options.to_dict()

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items() if k not in ("chunk_size", "return_logits"))
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
        """``generate`` on several images in one ``SegEvery.run`` (the encoder batches
        ``image_batch_size`` of them): a list with one list of records per image."""
        if isinstance(images, (str, os.PathLike)) or not isinstance(images, (list, tuple, np.ndarray, Tensor)):
            raise TypeError(f"LiteSamEverything.generate_batch takes a list of images, got {type(images).__name__}")
        arrays = [_as_array(im, i) for i, im in enumerate(images)]
        if not arrays:
            self.last_stats = gather_stats([], [])  # no image: the stats' lists, empty
            return []
        opts = self.segevery_options
        if self.min_mask_region_area > 0:
            opts = opts.replace(output_mode="tensors")
        result = SegEvery(self.model, opts).run(arrays, collect_timings=False)
        self.last_stats = result.stats
        if self.min_mask_region_area > 0:
            return [self._small_regions_records(out) for out in result.masks]
        return result.masks

    __call__ = generate

    # ---------------------------------------------------------------------------------- min_mask_region_area
    def _small_regions_records(self, out: Dict[str, Tensor]) -> List[Dict[str, Any]]:
        """SAM's ``postprocess_small_regions`` on one image's SegEvery tensors, then records."""
        masks = out["masks"]
        h, w = int(masks.shape[-2]), int(masks.shape[-1])
        masks, keep = remove_small_regions_and_dedup(
            masks, self.min_mask_region_area, self.box_nms_thresh if self.nms != "none" else None)
        ppn = out.get("ppn_scores")
        return build_records(masks[keep], out["iou_preds"][keep], out["stability_scores"][keep],
                             masks_to_boxes(masks[keep]), out["points"][keep], (h, w), self.output_mode,
                             ppn_scores=None if ppn is None else ppn[keep])


def remove_small_regions_and_dedup(masks: Tensor, min_area: int, nms_thresh: Optional[float]
                                   ) -> Tuple[Tensor, Tensor]:
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


def _as_model(model: Union[nn.Module, str, "os.PathLike[str]"], prompts: str) -> nn.Module:
    """The model (a path: ``litesam_pl.load_model``), checked: ``Sam``-like, with an AutoPPN head for AutoPPN."""
    if isinstance(model, (str, os.PathLike)):
        from ..models.checkpoint import load_model

        model = load_model(model)
    if not isinstance(model, nn.Module):
        raise TypeError(f"LiteSamEverything: model must be a model or the path of a model file, "
                        f"got {type(model).__name__}")
    check_sam_like(model)
    if prompts == "autoppn" and getattr(model, "autoppn", None) is None:
        raise ValueError(f"LiteSamEverything: prompts='autoppn' needs a model with an AutoPPN head; "
                         f"{type(model).__name__} has none (use prompts='grid')")
    return model


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
