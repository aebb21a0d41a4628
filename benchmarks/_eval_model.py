"""What a user runs on images, as the COCO / LVIS benchmarks run it: the model (``build_model``: the checkpoint,
else the seed-0 random litesam) and SegEvery's proposals under SAM's proposal protocol (``make_proposer``), with the
ranking score and COCO RLE of a SegEvery record (``proposal_score``, ``record_rle``).

Evaluation-only code lives apart: GT prompting in ``benchmarks._eval_prompting``, the classical references in
``benchmarks.baselines``, scoring in ``benchmarks._eval_score``, several devices in ``benchmarks._eval_dist``.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["default_device", "build_model", "make_proposer", "proposal_score", "record_rle"]


def default_device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def build_model(ckpt: str | None, img_size: int | None, device: str | None) -> tuple[Any, dict]:
    """``load_or_random(ckpt, "litesam")`` (the checkpoint, else the seed-0 random model); eval mode, on ``device``."""
    from litesam_pl.models.checkpoint import load_or_random

    info: dict[str, Any] = {"device": default_device(device)}
    if ckpt and not os.path.isfile(ckpt):
        raise FileNotFoundError(f"--ckpt not found: {ckpt}")
    kwargs = {} if img_size is None else {"img_size": int(img_size)}
    if ckpt and img_size is not None:  # the checkpoint's weights at another input side
        from litesam_pl.models.checkpoint import load_model

        model, got = load_model(ckpt, img_size=int(img_size)), {"ckpt": os.path.abspath(ckpt)}
    else:
        model, got = load_or_random(ckpt, "litesam", seed=0, **kwargs)
    if ckpt:
        info.update(ckpt=got["ckpt"], random_weights=False)
    else:
        info.update(ckpt=None, random_weights=True, model="litesam", model_kwargs=kwargs)
    info["img_size"] = int(model.image_encoder.img_size)
    model = model.to(info["device"]).eval()
    return model, info


# ------------------------------------------------------------------------------------------------ SegEvery


def proposal_score(rec: Mapping[str, Any]) -> float:
    """SAM App. D.3: rank by the mean of predicted IoU and stability score (a given ``score`` otherwise)."""
    if "predicted_iou" in rec and "stability_score" in rec:
        return 0.5 * (float(rec["predicted_iou"]) + float(rec["stability_score"]))
    if "score" in rec:
        return float(rec["score"])
    if "predicted_iou" in rec:
        return float(rec["predicted_iou"])
    raise ValueError("a SegEvery record needs 'predicted_iou' and 'stability_score' (or 'score')")


def record_rle(rec: Mapping[str, Any]) -> dict:
    from litesam_pl.data.rle import encode_mask, rle_to_json

    seg = rec["segmentation"]
    if isinstance(seg, Mapping):
        return rle_to_json(seg)
    if hasattr(seg, "detach"):
        seg = seg.detach().cpu().numpy()
    return encode_mask(np.asarray(seg, dtype=bool))


def make_proposer(model: Any, mode: str, *, ppn_top_n: int = 256, ppn_score_threshold: float | None = 0.0,
                  points_per_side: int = 32) -> tuple[Callable[[np.ndarray], list[dict]], str]:
    """A function ``image uint8 [H, W, 3] -> SegEvery records`` under SAM's proposal protocol, and its name.

    Protocol (SAM App. D.3): no crops, no predicted-IoU / stability filters, box NMS at 0.9, proposals ranked by
    the mean of predicted IoU and stability score. ``autoppn`` / ``grid`` run ``SegEvery(model,
    SegEveryOptions(...)).run`` (``litesam_pl.inference.segevery``); ``amg`` (and the fallback for a model that is not a ``LiteSAM``, e.g. SAM-B) runs ``segment_anything.SamAutomaticMaskGenerator`` on the model.
    """
    protocol = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=0.9)

    def amg() -> Callable[[np.ndarray], list[dict]]:
        from segment_anything import SamAutomaticMaskGenerator

        gen = SamAutomaticMaskGenerator(model, points_per_side=points_per_side, crop_n_layers=0,
                                        min_mask_region_area=0, output_mode="coco_rle", **protocol)
        return gen.generate

    if mode == "amg":
        return amg(), f"amg (SamAutomaticMaskGenerator, {points_per_side}x{points_per_side} grid)"
    if mode not in ("autoppn", "grid"):
        raise ValueError(f"segevery mode must be autoppn, grid or amg, got {mode!r}")
    reason = None
    from litesam_pl.models.litesam import LiteSAM

    if not isinstance(model, LiteSAM):
        reason = "the model is not a LiteSAM (ours or SAM-B + AutoPPN)"
    else:
        try:
            from litesam_pl.inference.segevery import SegEvery, SegEveryOptions
        except ImportError as e:
            reason = f"litesam_pl.inference.segevery is not importable ({e})"
    if mode == "autoppn" and getattr(model, "autoppn", None) is None:
        reason = "the model has no AutoPPN head"
    if reason is not None:
        warnings.warn(f"--segevery {mode}: {reason}; falling back to SamAutomaticMaskGenerator (amg)")
        return amg(), f"amg (fallback for {mode}: {reason})"
    kwargs: dict[str, Any] = dict(protocol, prompts=mode, nms="box", rank_by="iou_stability_mean",
                                  output_mode="coco_rle")
    if mode == "autoppn":
        kwargs.update(top_n=ppn_top_n, score_threshold=ppn_score_threshold)
        name = f"autoppn (segment_everything, top {ppn_top_n} prompts, score threshold {ppn_score_threshold})"
    else:
        kwargs.update(points_per_side=points_per_side)
        name = f"grid (segment_everything, {points_per_side}x{points_per_side} points)"

    segevery = SegEvery(model, SegEveryOptions(**kwargs))

    def run(image: np.ndarray) -> list[dict]:
        out = segevery.run(image, collect_timings=False, collect_stats=False).masks
        if out and isinstance(out, list) and isinstance(out[0], list):  # a batched result of one image
            out = out[0]
        return list(out)

    return run, name
