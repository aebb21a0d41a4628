"""Shared machinery of ``benchmarks.coco`` and ``benchmarks.lvis`` (Lite-SAM Tables 5 and 6).

Per image (one ``set_image`` each):
  1. 1-box:   every non-crowd instance's GT box -> one batched decoder call -> IoU with the GT mask at original
              resolution; the same masks, with the GT category and the predicted IoU as score, are the
              detections of mask AP (paper's note (3) to Table 5: GT boxes as prompts).
  2. 1-point: the farthest interior point of every instance's GT mask -> one batched call -> IoU.
  Each prompt form is read from the decoder output training supervises (``--mask-select prompt_form``, the
  default; ``litesam_pl.models.prompt_forms``): box prompts the single-mask output (``multimask_output=False``),
  point prompts the highest predicted IoU of the three multimask outputs (SAM).
  3. SegEvery proposals for AR@1000 (unless --skip-ar): SAM's proposal protocol (no crops, no IoU/stability
     filters, box NMS 0.9, ranked by the mean of predicted IoU and stability score), from
     ``segment_everything(model, ...)`` (AutoPPN or grid prompts) or SAM's ``SamAutomaticMaskGenerator`` (``amg``).
  4. Classical 1-box references on the same instances (``benchmarks.baselines``: box fill, GrabCut) unless
     --no-baselines; --baselines-only runs them without a model.
Then mIoU (overall, small / medium / large by the annotation's area), AP (pycocotools, or the official LVIS
evaluator), class-agnostic AR@100/1000 (COCOeval, useCats=0), all in percent in the JSON.

Several devices: ``torchrun --nproc_per_node N -m benchmarks.coco ...`` (or ``benchmarks.lvis``). Each rank takes
every N-th image id from its rank (``shard_ids``) and runs it on its own device (``--device cuda`` ->
``cuda:<LOCAL_RANK>``); rank 0 gathers the per-instance IoUs and areas, detections, proposals and baseline IoUs
(``torch.distributed.gather_object`` over gloo), puts them back in the single-process order and scores, so the
numbers are those of one process; only rank 0 prints, shows a progress bar and writes the JSON (its
``world_size`` field says N; ``seconds_prompting`` / ``seconds_segevery`` are summed over ranks).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from benchmarks._results import write_json
from benchmarks._wandb import publish

log = logging.getLogger("benchmarks")

__all__ = [
    "PAPER_ROWS",
    "MASK_SELECT",
    "mask_select_for",
    "add_common_args",
    "build_model",
    "make_proposer",
    "evaluate_instances",
    "format_table",
    "write_json",
    "main_for",
    "PER_IMAGE_LISTS",
    "dist_env",
    "init_distributed",
    "rank_device",
    "shard_ids",
    "interleave",
    "gather_run",
]

# Lite-SAM (ours, r640) in the paper: Table 5 (mIoU, AP) and Table 6 (Mask AR@1000, COCO only).
PAPER_ROWS: dict[str, dict[str, float | None]] = {
    "coco": {"miou_1box": 74.8, "miou_1point": 55.8, "ap": 55.8, "ap_s": 46.7, "ap_m": 59.6, "ap_l": 69.6,
             "ar1000": 52.8},
    "lvis": {"miou_1box": 73.2, "miou_1point": 54.4, "ap": 58.4, "ap_s": 45.9, "ap_m": 66.9, "ap_l": 77.5,
             "ar1000": None},
}
PAPER_ROWS_R1024: dict[str, dict[str, float | None]] = {
    "coco": {"miou_1box": 76.3, "miou_1point": 56.9, "ap": 56.5, "ap_s": 47.4, "ap_m": 61.0, "ap_l": 70.7,
             "ar1000": 54.1},
    "lvis": {"miou_1box": 75.7, "miou_1point": 57.3, "ap": 60.7, "ap_s": 49.3, "ap_m": 71.9, "ap_l": 79.8,
             "ar1000": None},
}

RANDOM_WEIGHTS_BANNER = (
    "\n" + "!" * 78 + "\n"
    "!!  NO --ckpt GIVEN: evaluating a RANDOMLY INITIALISED litesam model.             !!\n"
    "!!  The numbers below measure nothing but the pipeline. Pass --ckpt PATH.          !!\n"
    + "!" * 78 + "\n"
)


# ---------------------------------------------------------------------------------------------- arguments

# --mask-select: which decoder output the 1-box / 1-point prompts are read from (the JSON records the rule); the
# keys are PromptPredictor's mask_select rules (litesam_pl.inference.prompting.MASK_SELECT_RULES), which apply them
MASK_SELECT: dict[str, str] = {
    "prompt_form": "per prompt form (litesam_pl.models.prompt_forms.multimask_output_for): box prompts the "
                   "single-mask output (multimask_output=False, what training supervises), point prompts the "
                   "highest predicted IoU of the 3 multimask outputs (SAM)",
    "max_pred_iou": "box and point prompts: multimask_output=True, keep the highest predicted IoU "
                    "(EfficientViT-SAM's protocol; for boxes it reads outputs only point prompts train)",
    "single": "box and point prompts: multimask_output=False (the single-mask output token)",
}


def mask_select_for(mask_select: str, form: str) -> str:
    """``PromptPredictor``'s ``mask_select`` rule for prompt ``form`` (``"box"`` / ``"point"``) under the
    benchmark's ``--mask-select``."""
    from litesam_pl.models.prompt_forms import multimask_output_for

    if mask_select not in MASK_SELECT:
        raise ValueError(f"mask_select must be one of {tuple(MASK_SELECT)}, got {mask_select!r}")
    if mask_select == "prompt_form":
        return "max_pred_iou" if multimask_output_for(form) else "single"
    return mask_select


def add_common_args(p: argparse.ArgumentParser, dataset: str) -> None:
    p.add_argument("--ann", required=True, help=f"official {dataset.upper()} instances annotation file (json)")
    p.add_argument("--images", required=True, help="folder of the images (COCO val2017/)")
    p.add_argument("--ckpt", default=None,
                   help="model: a `litesam export` file or a Lightning checkpoint (litesam_pl.load_model). "
                        "Without it a RANDOM-weight litesam is evaluated (pipeline check only)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images (sorted by id)")
    p.add_argument("--img-size", type=int, default=None,
                   help="input side of the random model when no --ckpt (default: the registry's, 640)")
    p.add_argument("--device", default=None,
                   help="torch device (default: cuda if available, else cpu); under torchrun, cuda means "
                        "cuda:<LOCAL_RANK>")
    p.add_argument("--json", required=True, help="write the results JSON here")
    p.add_argument("--save-results", default=None,
                   help="write the GT-box-prompt masks as COCO results (RLE) here, re-scorable with pycocotools")
    p.add_argument("--mask-select", default="prompt_form", choices=list(MASK_SELECT),
                   help="which decoder output to keep: prompt_form (default): box prompts the single-mask "
                        "output training supervises, point prompts the multimask output with the highest "
                        "predicted IoU; max_pred_iou: that multimask rule for boxes too (EfficientViT-SAM); "
                        "single: the single-mask output for both")
    p.add_argument("--max-prompts", type=int, default=128,
                   help="prompts per decoder call (an image's prompts go in one call up to this many)")
    p.add_argument("--skip-ar", action="store_true", help="skip the SegEvery AR@1000 evaluation")
    p.add_argument("--segevery", default="autoppn", choices=["autoppn", "grid", "amg"],
                   help="proposal source for AR@1000: AutoPPN (256 prompts), our grid search, or SAM's "
                        "SamAutomaticMaskGenerator driving our model (default autoppn)")
    p.add_argument("--ppn-top-n", type=int, default=256, help="AutoPPN prompts per image (paper: 256)")
    p.add_argument("--ppn-score-threshold", type=float, default=0.0,
                   help="AutoPPN point-confidence floor (default 0: the --ppn-top-n best local maxima inside "
                        "the image)")
    p.add_argument("--points-per-side", type=int, default=32, help="grid / amg: points per side (SAM: 32)")
    p.add_argument("--max-proposals", type=int, default=1000, help="AR@k's largest k (default 1000)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


# ------------------------------------------------------------------------------------------------- model


def _default_device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def build_model(ckpt: str | None, img_size: int | None, device: str | None) -> tuple[Any, dict]:
    """``load_or_random(ckpt, "litesam")`` (the checkpoint, else the seed-0 random model); eval mode, on ``device``."""
    from litesam_pl.models.checkpoint import load_or_random

    info: dict[str, Any] = {"device": _default_device(device)}
    if ckpt and not os.path.isfile(ckpt):
        raise FileNotFoundError(f"--ckpt not found: {ckpt}")
    kwargs = {} if img_size is None else {"img_size": int(img_size)}
    model, got = load_or_random(ckpt, "litesam", seed=0, **kwargs)
    if ckpt:
        info.update(ckpt=got["ckpt"], random_weights=False)
        if img_size is not None and int(getattr(model.image_encoder, "img_size", img_size)) != img_size:
            warnings.warn(f"--img-size {img_size} ignored: the checkpoint's model takes "
                          f"{model.image_encoder.img_size}")
    else:
        info.update(ckpt=None, random_weights=True, model="litesam", model_kwargs=kwargs)
    info["img_size"] = int(model.image_encoder.img_size)
    model = model.to(info["device"]).eval()
    return model, info


# ------------------------------------------------------------------------------------------------ SegEvery


def _proposal_score(rec: Mapping[str, Any]) -> float:
    """SAM App. D.3: rank by the mean of predicted IoU and stability score (a given ``score`` otherwise)."""
    if "predicted_iou" in rec and "stability_score" in rec:
        return 0.5 * (float(rec["predicted_iou"]) + float(rec["stability_score"]))
    if "score" in rec:
        return float(rec["score"])
    if "predicted_iou" in rec:
        return float(rec["predicted_iou"])
    raise ValueError("a SegEvery record needs 'predicted_iou' and 'stability_score' (or 'score')")


def _record_rle(rec: Mapping[str, Any]) -> dict:
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
    the mean of predicted IoU and stability score. ``autoppn`` / ``grid`` call ``segment_everything(model, ...)``
    (``litesam_pl.inference.segevery``); ``amg`` (and the fallback for a model that is not a ``LiteSAM``, e.g. SAM-B) runs ``segment_anything.SamAutomaticMaskGenerator`` on the model.
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
    seg_fn = None
    reason = None
    from litesam_pl.models.litesam import LiteSAM

    if not isinstance(model, LiteSAM):
        reason = "the model is not a LiteSAM (ours or SAM-B + AutoPPN)"
    else:
        try:
            from functools import partial

            from litesam_pl.inference.segevery import segment_everything

            seg_fn = partial(segment_everything, model)
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

    def run(image: np.ndarray) -> list[dict]:
        out = seg_fn(image, **kwargs)
        if out and isinstance(out, list) and isinstance(out[0], list):  # a batched result of one image
            out = out[0]
        return list(out)

    return run, name


# ---------------------------------------------------------------------------------------------- distributed

# the lists of an ``evaluate_instances`` run that hold entries per image (``run["per_image"]`` counts them)
PER_IMAGE_LISTS = ("box_ious", "point_ious", "areas", "results", "proposals")
# a rank that finished its share waits this long in the gather for the slowest one (torchrun stops every rank
# when one fails, so this is no hang guard; it only has to outlast the imbalance of the shares)
DIST_TIMEOUT_S = 6 * 3600


def dist_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``);
    ``(0, 1, 0)`` when ``WORLD_SIZE`` is unset: the single-process path."""
    world = int(os.environ.get("WORLD_SIZE") or 1)
    if world <= 1:
        return 0, 1, 0
    rank = int(os.environ.get("RANK") or 0)
    return rank, world, int(os.environ.get("LOCAL_RANK") or rank)


def init_distributed() -> tuple[int, int, int]:
    """Join torchrun's process group when ``WORLD_SIZE`` > 1 (gloo: the only collective is one gather of CPU
    objects, so GPU runs need no NCCL); returns ``dist_env()``."""
    rank, world, local_rank = dist_env()
    if world > 1:
        import datetime

        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=DIST_TIMEOUT_S))
    return rank, world, local_rank


def rank_device(device: str | None, local_rank: int, world_size: int) -> str:
    """The device of this rank: ``--device`` (default cuda if available, else cpu); a bare ``cuda`` becomes
    ``cuda:<LOCAL_RANK>`` when there are several ranks (an explicit index is kept)."""
    dev = _default_device(device)
    if world_size > 1 and dev == "cuda":
        import torch

        dev = f"cuda:{local_rank % max(1, torch.cuda.device_count())}"
        torch.cuda.set_device(torch.device(dev))
    return dev


def shard_ids(image_ids: Sequence[int], rank: int, world_size: int) -> list[int]:
    """Rank ``rank``'s share of the (sorted) image ids: every ``world_size``-th one from its rank, ``ids[r::W]``."""
    return list(image_ids)[rank::world_size]


def interleave(per_rank: Sequence[Sequence[Any]], per_rank_counts: Sequence[Sequence[int]]) -> list[Any]:
    """The single-process order of per-image entries of ranks that ran ``shard_ids`` shares: ``per_rank[r]`` is
    rank r's flat list, ``per_rank_counts[r]`` how many entries each of its images added; global image ``i`` is
    rank ``i % W``'s image ``i // W``."""
    world = len(per_rank)
    chunks: list[list[Sequence[Any]]] = []
    for r, (flat, counts) in enumerate(zip(per_rank, per_rank_counts)):
        if sum(counts) != len(flat):
            raise RuntimeError(f"rank {r}: {len(flat)} entries but per-image counts sum to {sum(counts)}")
        pos, own = 0, []
        for c in counts:
            own.append(flat[pos:pos + c])
            pos += c
        chunks.append(own)
    n = sum(len(c) for c in chunks)
    out: list[Any] = []
    for i in range(n):
        out.extend(chunks[i % world][i // world])
    return out


def gather_run(run: dict[str, Any], baselines: Any, rank: int, world_size: int) -> tuple[dict | None, Any]:
    """Gather every rank's ``evaluate_instances`` run (and ``Baselines``) on rank 0 and put the entries back in
    the single-process order (``interleave``); counters and seconds are summed over ranks. Rank 0 gets
    ``(run, baselines)`` as one process would have them, the other ranks ``(None, None)``."""
    import torch.distributed as dist

    state = {"run": run, "baselines": None if baselines is None else baselines.state()}
    states: list[Any] | None = [None] * world_size if rank == 0 else None
    dist.gather_object(state, states, dst=0)
    if rank != 0:
        return None, None
    assert states is not None
    runs = [s["run"] for s in states]
    merged: dict[str, Any] = dict(runs[0])
    merged["image_ids"] = interleave([r["image_ids"] for r in runs], [[1] * len(r["image_ids"]) for r in runs])
    for key in PER_IMAGE_LISTS:
        merged[key] = interleave([r[key] for r in runs], [r["per_image"][key] for r in runs])
    merged["per_image"] = {key: interleave([r["per_image"][key] for r in runs],
                                           [[1] * len(r["image_ids"]) for r in runs]) for key in PER_IMAGE_LISTS}
    for key in ("skipped_crowd", "skipped_empty", "seconds_prompting", "seconds_segevery"):
        merged[key] = sum(r[key] for r in runs)
    if baselines is not None:
        baselines.load_states([s["baselines"] for s in states], [r["per_image"]["areas"] for r in runs])
    return merged, baselines


# ------------------------------------------------------------------------------------------------ main loop


def _ann_masks(anns: Sequence[dict], h: int, w: int) -> np.ndarray:
    from litesam_pl.data.coco import ann_to_mask

    if not anns:
        return np.zeros((0, h, w), dtype=bool)
    return np.stack([ann_to_mask(a, h, w) for a in anns])


def evaluate_instances(
    model: Any,
    data: Any,
    *,
    mask_select: str = "prompt_form",
    max_prompts: int = 128,
    proposer: Callable[[np.ndarray], list[dict]] | None = None,
    max_proposals: int = 1000,
    progress: bool = True,
    instance_hook: Callable[[Any, list[dict], np.ndarray], Mapping[str, Any] | None] | None = None,
    desc_suffix: str = "",
) -> dict[str, Any]:
    """Run the model over every image of ``data`` (a ``CocoInstances``) and collect what the metrics need.

    ``model=None`` prompts nothing (only the instances and ``instance_hook`` run: ``--baselines-only``).
    ``instance_hook(sample, anns, gt)`` is called per image with the prompted instances and their GT masks
    ``[K, H, W]`` (``benchmarks.baselines.Baselines``); what it returns is added to the progress bar.

    ``mask_select`` (``MASK_SELECT``, the rules of ``PromptPredictor``) picks the decoder output of each prompt
    form (``mask_select_for`` names what it means per form, for the JSON).
    Returns a dict with ``box_ious``, ``point_ious``, ``areas`` (per prompted instance), ``results`` (box-prompt
    detections, COCO format), ``proposals`` (SegEvery records, COCO format, score = SAM's ranking score),
    ``image_ids`` (processed), counters ``skipped_crowd``, ``skipped_empty``, timing, and ``per_image``: for
    each list of ``PER_IMAGE_LISTS``, the number of entries each image added (``gather_run`` uses it to restore
    the single-process order of a distributed run). ``desc_suffix`` is appended to the progress bar's label.
    """
    import torch
    from tqdm import tqdm

    from litesam_pl.inference.prompting import PromptPredictor, boxes_from_annotations, farthest_interior_points
    from litesam_pl.metrics.coco import results_from_masks
    from litesam_pl.metrics.miou import mask_ious

    mask_select_for(mask_select, "box")  # a clear error for an unknown rule
    predictor = None if model is None else PromptPredictor(model, mask_select=mask_select,
                                                           max_prompts_per_call=max_prompts)
    box_ious: list[float] = []
    point_ious: list[float] = []
    areas: list[float] = []
    results: list[dict] = []
    proposals: list[dict] = []
    image_ids: list[int] = []
    # per image, how many entries it added to each list (``gather_run`` restores the single-process order)
    per_image: dict[str, list[int]] = {k: [] for k in PER_IMAGE_LISTS}
    skipped_crowd = skipped_empty = 0
    t_prompt = t_segevery = 0.0
    bar = tqdm(data.image_ids, desc=f"{data.format} images{desc_suffix}", unit="img", disable=not progress,
               file=sys.stderr)
    with torch.inference_mode():
        for image_id in bar:
            sample = data.load(image_id)
            h, w = sample.height, sample.width
            anns = []
            for a in sample.annotations:
                if a.get("iscrowd", 0):
                    skipped_crowd += 1
                elif float(a.get("area", 0)) < 1 or a["bbox"][2] <= 0 or a["bbox"][3] <= 0:
                    skipped_empty += 1
                else:
                    anns.append(a)
            gt = _ann_masks(anns, h, w)
            keep = gt.reshape(len(gt), -1).any(axis=1) if len(gt) else np.zeros(0, dtype=bool)
            skipped_empty += int((~keep).sum())
            anns = [a for a, k in zip(anns, keep) if k]
            gt = gt[keep]
            image_ids.append(int(image_id))
            before = {"box_ious": len(box_ious), "point_ious": len(point_ious), "areas": len(areas),
                      "results": len(results), "proposals": len(proposals)}

            t0 = time.perf_counter()
            if predictor is not None:
                predictor.set_image(sample.image)
            if anns and predictor is not None:
                box_masks, box_scores = predictor.predict_boxes(boxes_from_annotations(anns))
                box_ious += np.atleast_1d(mask_ious(box_masks, gt)).tolist()
                results += results_from_masks(image_id, box_masks, box_scores, [a["category_id"] for a in anns])
                del box_masks
                pt_masks, _ = predictor.predict_points(farthest_interior_points(gt))
                point_ious += np.atleast_1d(mask_ious(pt_masks, gt)).tolist()
                del pt_masks
            areas += [float(a["area"]) for a in anns]
            t_prompt += time.perf_counter() - t0
            postfix = dict(instance_hook(sample, anns, gt) or {}) if instance_hook is not None else {}

            if proposer is not None:
                t0 = time.perf_counter()
                recs = proposer(sample.image)
                t_segevery += time.perf_counter() - t0
                recs = sorted(recs, key=_proposal_score, reverse=True)[:max_proposals]
                proposals += [{"image_id": int(image_id), "category_id": 1, "segmentation": _record_rle(r),
                               "score": _proposal_score(r)} for r in recs]
            for k, lst in (("box_ious", box_ious), ("point_ious", point_ious), ("areas", areas),
                           ("results", results), ("proposals", proposals)):
                per_image[k].append(len(lst) - before[k])
            bar.set_postfix(inst=len(areas), **postfix)
    return {
        "box_ious": box_ious, "point_ious": point_ious, "areas": areas, "results": results,
        "proposals": proposals, "image_ids": image_ids, "skipped_crowd": skipped_crowd,
        "skipped_empty": skipped_empty, "seconds_prompting": t_prompt, "seconds_segevery": t_segevery,
        "per_image": per_image,
    }


# ------------------------------------------------------------------------------------------------- scoring


def _pct(x: float | None) -> float | None:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return 100.0 * float(x)


def miou_row(ious: Sequence[float], areas: Sequence[float], name: str = "1box") -> dict[str, Any]:
    """``miou_<name>`` and ``miou_<name>_<small|medium|large>`` in percent (None for an empty group), the key names
    of the benchmarks' tables and JSON, from per-instance IoUs and annotation areas."""
    from litesam_pl.metrics.miou import summarize_miou

    s = summarize_miou(ious, areas)
    return {f"miou_{name}": _pct(s["miou"]), **{f"miou_{name}_{g}": _pct(s[f"miou_{g}"])
                                                for g in ("small", "medium", "large")}}


def score(dataset_kind: str, gt: str | os.PathLike | dict, run: Mapping[str, Any], *, max_proposals: int = 1000,
          lvis_backend: str = "lvis") -> dict[str, Any]:
    """The Table-5/6 numbers (percent) of an ``evaluate_instances`` run.

    ``gt`` is the annotation file (read afresh: the evaluators rewrite GT records in place) or its dict (copied).
    """
    from litesam_pl.metrics.coco import lvis_ap, mask_ap, proposal_recall_coco
    from litesam_pl.metrics.miou import summarize_miou

    out: dict[str, Any] = {}
    for name, ious in (("1box", run["box_ious"]), ("1point", run["point_ious"])):
        out.update(miou_row(ious, run["areas"], name))
    counts = summarize_miou(run["box_ious"], run["areas"])
    for g in ("small", "medium", "large"):
        out[f"instances_{g}"] = counts[f"n_{g}"]
    img_ids = run["image_ids"]
    if dataset_kind == "lvis":
        ap = lvis_ap(gt, run["results"], img_ids=img_ids, max_dets=300, backend=lvis_backend)
        keys = ("ap", "ap50", "ap75", "ap_s", "ap_m", "ap_l", "ap_r", "ap_c", "ap_f")
    else:
        ap = mask_ap(gt, run["results"], img_ids=img_ids)
        keys = ("ap", "ap50", "ap75", "ap_s", "ap_m", "ap_l")
    for k in keys:
        out[k] = _pct(ap[k])
    if run.get("proposals_evaluated"):
        if dataset_kind == "lvis":  # pycocotools wants iscrowd; LVIS has no crowd regions
            if not isinstance(gt, Mapping):
                with open(gt) as f:
                    gt = json.load(f)
            gt = {**gt, "annotations": [{**a, "iscrowd": 0} for a in gt["annotations"]]}
        dets = sorted({100, max_proposals})
        ar = proposal_recall_coco(gt, run["proposals"], img_ids=img_ids, max_dets=dets, iou_type="segm")
        out["ar1000" if max_proposals == 1000 else f"ar{max_proposals}"] = _pct(ar[f"ar@{max_proposals}"])
        out["ar100"] = _pct(ar["ar@100"])
        for g in ("s", "m", "l"):
            out[f"ar1000_{g}" if max_proposals == 1000 else f"ar{max_proposals}_{g}"] = _pct(ar[f"ar_{g}@{max_proposals}"])
    else:
        out["ar1000"] = None
    return out


# ------------------------------------------------------------------------------------------------- output


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.1f}"


def format_table(dataset_kind: str, ours: Mapping[str, Any] | None, label: str,
                 extra_rows: Sequence[tuple[str, Mapping[str, Any]]] = ()) -> str:
    """A Table-5-shaped block (mIoU 1-box / 1-point, AP, AP_S/M/L) plus Table 6's Mask AR@1000; ``extra_rows``
    (the classical baselines, ``benchmarks.baselines.baseline_rows``) follow ours (None: no row of ours)."""
    cols = [("1-box mIoU", "miou_1box"), ("1-point mIoU", "miou_1point"), ("AP", "ap"), ("AP_S", "ap_s"),
            ("AP_M", "ap_m"), ("AP_L", "ap_l"), ("AR@1000", "ar1000")]
    if dataset_kind == "lvis":
        cols += [("AP_r", "ap_r"), ("AP_c", "ap_c"), ("AP_f", "ap_f")]
    rows = [("Lite-SAM (paper, r640)", PAPER_ROWS[dataset_kind]),
            ("Lite-SAM (paper, r1024)", PAPER_ROWS_R1024[dataset_kind])]
    rows += ([(label, ours)] if ours is not None else []) + list(extra_rows)
    w0 = max(len(r[0]) for r in rows) + 2
    title = {"coco": "MSCOCO 2017 val", "lvis": "LVIS val"}[dataset_kind]
    head = f"{'Model':<{w0}}" + "".join(f"{c:>14}" for c, _ in cols)
    lines = [f"Table 5/6 ({title}; percent; AR@1000 is Table 6, class-agnostic SegEvery proposals)", head,
             "-" * len(head)]
    for name, vals in rows:
        lines.append(f"{name:<{w0}}" + "".join(f"{_fmt(vals.get(k)):>14}" for _, k in cols))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- main


def main_for(dataset_kind: str, argv: Sequence[str] | None, description: str) -> dict[str, Any]:
    """The whole command line of ``benchmarks.coco`` / ``benchmarks.lvis``; returns the JSON payload.

    Under ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` > 1) every rank evaluates ``shard_ids`` of the image ids
    on its own device (``rank_device``), rank 0 gathers the runs (``gather_run``: the single-process order), scores,
    prints and writes the JSON; the other ranks return ``{}``. The numbers equal a one-process run's; only
    ``world_size``, ``device`` (``cuda:<LOCAL_RANK>``) and the ``seconds_*`` fields (summed over ranks, except
    ``seconds_total``: rank 0's wall time) differ."""
    from benchmarks import baselines as bl
    from litesam_pl.data.coco import CocoInstances

    p = argparse.ArgumentParser(prog=f"python -m benchmarks.{dataset_kind}", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p, dataset_kind)
    if dataset_kind == "lvis":
        p.add_argument("--lvis-backend", default="lvis", choices=["lvis", "faster"],
                       help="AP scorer: the official lvis.LVISEval (default) or faster_coco_eval's LVIS mode")
    bl.add_baseline_args(p)
    args = p.parse_args(argv)
    bl.check_baseline_args(p, args)
    rank, world, local_rank = init_distributed()  # (0, 1, 0) without torchrun
    main_rank = rank == 0
    logging.basicConfig(level=logging.INFO if main_rank else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    if not main_rank:  # rank 0 speaks for all (every rank sees the same data and model)
        warnings.filterwarnings("ignore")

    t_start = time.perf_counter()
    try:
        data = CocoInstances(args.ann, args.images, fmt=dataset_kind, limit=args.limit)
    except (FileNotFoundError, ValueError) as e:
        p.error(str(e))
    n_total = len(data.imgs)
    if data.num_missing and main_rank:
        print(f"WARNING: {data.num_missing} of {n_total} images listed in {args.ann} have no file in "
              f"{args.images}: skipped (counted in the JSON as 'missing_images')", file=sys.stderr)
    if len(data) == 0:
        p.error(f"no image of {args.ann} was found under {args.images}")
    desc = ""
    if world > 1:  # this rank's share; rank 0 gathers the runs and restores the single-process order
        n_images = len(data.image_ids)
        data.image_ids = shard_ids(data.image_ids, rank, world)
        desc = f" (rank {rank} of {world}: {len(data.image_ids)} of {n_images})"

    model, info = None, {"ckpt": None, "random_weights": False, "model": None}
    if not args.baselines_only:
        try:
            model, info = build_model(args.ckpt, args.img_size, rank_device(args.device, local_rank, world))
        except (FileNotFoundError, ValueError) as e:
            p.error(str(e))
    if info["random_weights"] and main_rank:
        print(RANDOM_WEIGHTS_BANNER, file=sys.stderr)
    baselines = bl.make_baselines(args)
    proposer, segevery_name = (None, None)
    if not args.skip_ar and model is not None:
        proposer, segevery_name = make_proposer(model, args.segevery, ppn_top_n=args.ppn_top_n,
                                                ppn_score_threshold=args.ppn_score_threshold,
                                                points_per_side=args.points_per_side)
    run = evaluate_instances(model, data, mask_select=args.mask_select, max_prompts=args.max_prompts,
                             proposer=proposer, max_proposals=args.max_proposals,
                             progress=not args.no_progress and main_rank, instance_hook=baselines,
                             desc_suffix=desc)
    if world > 1:
        import torch.distributed as dist

        run, baselines = gather_run(run, baselines, rank, world)
        if not main_rank:
            dist.destroy_process_group()
            return {}
        dist.destroy_process_group()
    run["proposals_evaluated"] = proposer is not None
    numbers = {} if model is None else score(dataset_kind, args.ann, run, max_proposals=args.max_proposals,
                                             lvis_backend=getattr(args, "lvis_backend", "lvis"))
    base = baselines.summary(run["areas"]) if baselines is not None else None

    if args.save_results:
        Path(args.save_results).parent.mkdir(parents=True, exist_ok=True)
        with open(args.save_results, "w") as f:
            json.dump(run["results"], f)

    payload: dict[str, Any] = {
        **numbers,
        "baselines": base,
        "baselines_only": bool(args.baselines_only),
        "images": len(run["image_ids"]),
        "instances": len(run["areas"]),
        "mask_select": f"{args.mask_select}: {MASK_SELECT[args.mask_select]}",
        "mask_select_box": mask_select_for(args.mask_select, "box"),
        "mask_select_point": mask_select_for(args.mask_select, "point"),
        "dataset": dataset_kind,
        "ann": os.path.abspath(args.ann),
        "images_dir": os.path.abspath(args.images),
        "images_in_annotations": n_total,
        "missing_images": data.num_missing,
        "limit": args.limit,
        "skipped_crowd": run["skipped_crowd"],
        "skipped_empty": run["skipped_empty"],
        "point_rule": "farthest interior point: distance transform of the 1-px-padded GT mask, first argmax",
        "ap_protocol": ("GT boxes as prompts (paper Table 5 note 3); GT category; score = predicted IoU; "
                        + ("LVIS federated eval, 300 dets/image" if dataset_kind == "lvis" else "pycocotools COCOeval")),
        "ar_protocol": (None if proposer is None else
                        "class-agnostic COCOeval (useCats=0, segm), SAM App. D.3: no crops, no IoU/stability "
                        "filters, box NMS 0.9, ranked by mean(predicted IoU, stability score)"),
        "segevery": segevery_name,
        "proposals": len(run["proposals"]) if proposer is not None else None,
        **info,
        "world_size": world,
        "seconds_total": time.perf_counter() - t_start,
        "seconds_prompting": run["seconds_prompting"],
        "seconds_segevery": run["seconds_segevery"],
        "save_results": os.path.abspath(args.save_results) if args.save_results else None,
    }
    if info["random_weights"]:
        payload["warning"] = "RANDOM WEIGHTS: no --ckpt given; these numbers only check the pipeline"
    write_json(args.json, payload)

    label = "ours (RANDOM weights)" if info["random_weights"] else f"ours ({Path(args.ckpt or '-').name})"
    label += f", r{info.get('img_size')}"
    ours = None if model is None else payload
    print(format_table(dataset_kind, ours, label, bl.baseline_rows(base)))
    if base:
        print(bl.format_baseline_table(base, ours, label))
    print(f"{payload['images']} images ({data.num_missing} missing, limit {args.limit}), {payload['instances']} "
          f"instances ({run['skipped_crowd']} crowd, {run['skipped_empty']} empty skipped); mask_select="
          f"{args.mask_select}; SegEvery: {segevery_name or 'skipped'}; JSON: {args.json}")
    if info["random_weights"]:
        print(RANDOM_WEIGHTS_BANNER, file=sys.stderr)
    publish(dataset_kind, payload)
    return payload
