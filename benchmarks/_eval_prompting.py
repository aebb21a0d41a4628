"""GT prompting, the evaluation-only half of the COCO / LVIS benchmarks (Lite-SAM Table 5): per image (one
``set_image`` each)

  1. 1-box:   every non-crowd instance's GT box -> one batched decoder call -> IoU with the GT mask at original
              resolution; the same masks, with the GT category and the predicted IoU as score, are the
              detections of mask AP (paper's note (3) to Table 5: GT boxes as prompts).
  2. 1-point: the farthest interior point of every instance's GT mask -> one batched call -> IoU.
  Each prompt form is read from the decoder output training supervises (``--mask-select prompt_form``, the
  default; ``litesam_pl.models.prompt_forms``): box prompts the single-mask output (``multimask_output=False``),
  point prompts the highest predicted IoU of the three multimask outputs (SAM).
  3. the SegEvery proposals of a ``benchmarks._eval_model.make_proposer`` (what a user runs), for AR@1000.
  4. ``instance_hook``: the classical 1-box references on the same instances (``benchmarks.baselines``).

``evaluate_instances`` runs this over a ``CocoInstances``; ``benchmarks._eval_score`` turns its run into numbers.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from benchmarks._eval_model import proposal_score, record_rle
from benchmarks.toolkit.timing import Laps

__all__ = [
    "MASK_SELECT",
    "PER_IMAGE_LISTS",
    "mask_select_for",
    "gt_instances",
    "prompt_gt",
    "proposal_records",
    "evaluate_instances",
]

# the lists of an ``evaluate_instances`` run that hold entries per image (``run["per_image"]`` counts them)
PER_IMAGE_LISTS = ("box_ious", "point_ious", "areas", "results", "proposals")

# --mask-select: which decoder output the 1-box / 1-point prompts are read from (the JSON records the rule); the
# keys are PromptPredictor's mask_select rules (litesam_pl.evaluation.prompting.MASK_SELECT_RULES), which apply them
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


def gt_instances(sample: Any) -> tuple[list[dict], np.ndarray, int, int]:
    """The instances of one image that are prompted: ``(anns, gt masks [K, H, W], crowd skipped, empty skipped)``.
    Crowd regions are skipped, and so are instances with an area under 1, an empty box or an empty mask."""
    from litesam_pl.data.coco import ann_masks

    anns: list[dict] = []
    crowd = empty = 0
    for a in sample.annotations:
        if a.get("iscrowd", 0):
            crowd += 1
        elif float(a.get("area", 0)) < 1 or a["bbox"][2] <= 0 or a["bbox"][3] <= 0:
            empty += 1
        else:
            anns.append(a)
    gt = ann_masks(anns, sample.height, sample.width)
    keep = gt.reshape(len(gt), -1).any(axis=1) if len(gt) else np.zeros(0, dtype=bool)
    empty += int((~keep).sum())
    return [a for a, k in zip(anns, keep) if k], gt[keep], crowd, empty


def prompt_gt(predictor: Any, image_id: int, image: np.ndarray, anns: list[dict], gt: np.ndarray,
              run: dict[str, list]) -> None:
    """1-box and 1-point prompts of one image's instances (``predictor``: a ``PromptPredictor``, or None to prompt
    nothing): the IoUs with the GT masks go to ``run["box_ious"]`` / ``run["point_ious"]``, the box-prompt masks as
    COCO detections (GT category, predicted IoU as score) to ``run["results"]``."""
    from litesam_pl.evaluation.prompting import boxes_from_annotations, interior_point_prompts
    from litesam_pl.metrics.coco import results_from_masks
    from litesam_pl.metrics.miou import mask_ious

    if predictor is not None:
        predictor.set_image(image)
    if anns and predictor is not None:
        box_masks, box_scores = predictor.predict_boxes(boxes_from_annotations(anns))
        run["box_ious"] += np.atleast_1d(mask_ious(box_masks, gt)).tolist()
        run["results"] += results_from_masks(image_id, box_masks, box_scores, [a["category_id"] for a in anns])
        del box_masks
        pt_masks, _ = predictor.predict_points(interior_point_prompts(gt))
        run["point_ious"] += np.atleast_1d(mask_ious(pt_masks, gt)).tolist()
        del pt_masks


def proposal_records(recs: Sequence[Mapping[str, Any]], image_id: int, max_proposals: int) -> list[dict]:
    """SegEvery records -> the image's ``max_proposals`` best, as class-agnostic COCO results (score = SAM's
    ranking score, ``proposal_score``)."""
    recs = sorted(recs, key=proposal_score, reverse=True)[:max_proposals]
    return [{"image_id": int(image_id), "category_id": 1, "segmentation": record_rle(r), "score": proposal_score(r)}
            for r in recs]


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
    """Run the model over every image of ``data`` (a ``CocoInstances``) and collect what the metrics need
    (longer than most for this docstring: the run is the contract ``gather_run`` and ``score`` read).

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

    from litesam_pl.evaluation.prompting import PromptPredictor

    mask_select_for(mask_select, "box")  # a clear error for an unknown rule
    predictor = None if model is None else PromptPredictor(model, mask_select=mask_select,
                                                           max_prompts_per_call=max_prompts)
    run = _new_run()
    bar = tqdm(data.image_ids, desc=f"{data.format} images{desc_suffix}", unit="img", disable=not progress,
               file=sys.stderr)
    with torch.inference_mode():
        for image_id in bar:
            postfix = _evaluate_image(run, data.load(image_id), int(image_id), predictor, proposer, max_proposals,
                                      instance_hook)
            bar.set_postfix(inst=len(run["areas"]), **postfix)
    return run


def _new_run() -> dict[str, Any]:
    """An empty ``evaluate_instances`` run: its lists, counters, seconds and per-image entry counts."""
    return {**{k: [] for k in PER_IMAGE_LISTS}, "image_ids": [], "skipped_crowd": 0, "skipped_empty": 0,
            "seconds_prompting": 0.0, "seconds_segevery": 0.0, "per_image": {k: [] for k in PER_IMAGE_LISTS}}


def _evaluate_image(run: dict[str, Any], sample: Any, image_id: int, predictor: Any,
                    proposer: Callable[[np.ndarray], list[dict]] | None, max_proposals: int,
                    instance_hook: Callable[[Any, list[dict], np.ndarray], Mapping[str, Any] | None] | None,
                    ) -> dict[str, Any]:
    """One image of ``evaluate_instances`` into ``run``: GT prompting (timed as ``seconds_prompting``), the
    ``instance_hook``, the proposals (``seconds_segevery``) and how many entries each list gained; returns the
    hook's progress-bar postfix."""
    anns, gt, crowd, empty = gt_instances(sample)
    run["skipped_crowd"] += crowd
    run["skipped_empty"] += empty
    run["image_ids"].append(image_id)
    before = {k: len(run[k]) for k in PER_IMAGE_LISTS}
    laps = Laps()
    prompt_gt(predictor, image_id, sample.image, anns, gt, run)
    run["areas"] += [float(a["area"]) for a in anns]
    run["seconds_prompting"] += laps.lap()
    postfix = dict(instance_hook(sample, anns, gt) or {}) if instance_hook is not None else {}
    if proposer is not None:
        laps.lap()  # not the hook's time
        recs = proposer(sample.image)
        run["seconds_segevery"] += laps.lap()
        run["proposals"] += proposal_records(recs, image_id, max_proposals)
    for k in PER_IMAGE_LISTS:
        run["per_image"][k].append(len(run[k]) - before[k])
    return postfix
