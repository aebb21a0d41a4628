"""The command line of ``benchmarks.coco`` and ``benchmarks.lvis`` (Lite-SAM Tables 5 and 6): ``main_for``.

Per image (one ``set_image`` each):
  1-2. GT prompting (``benchmarks._eval_prompting``): every non-crowd instance's GT box (1-box; the masks are also
     the detections of mask AP) and its farthest interior point (1-point), each read from the decoder output
     ``--mask-select`` names.
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

The pieces, one job each (their names are re-exported here): ``_eval_model`` (the model and SegEvery's proposals:
what a user runs on images), ``_eval_prompting`` (GT prompting, steps 1-2, and the per-image loop), ``baselines``
(step 4), ``_eval_score`` (the numbers and the table), ``_eval_dist`` (several devices).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

from benchmarks._eval_dist import dist_env, gather_run, init_distributed, interleave, rank_device, shard_ids
from benchmarks._eval_model import build_model, make_proposer
from benchmarks._eval_prompting import MASK_SELECT, PER_IMAGE_LISTS, evaluate_instances, mask_select_for
from benchmarks._eval_score import format_table, miou_row, score
from benchmarks._wandb import publish
from litesam_pl.inference.segevery_options import add_option_flags
from benchmarks.toolkit.results import write_json
from benchmarks.toolkit.timing import Laps

log = logging.getLogger("benchmarks")

__all__ = [
    "MASK_SELECT",
    "mask_select_for",
    "add_common_args",
    "build_model",
    "make_proposer",
    "evaluate_instances",
    "miou_row",
    "score",
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

RANDOM_WEIGHTS_BANNER = (
    "\n" + "!" * 78 + "\n"
    "!!  NO --ckpt GIVEN: evaluating a RANDOMLY INITIALISED litesam model.             !!\n"
    "!!  The numbers below measure nothing but the pipeline. Pass --ckpt PATH.          !!\n"
    + "!" * 78 + "\n"
)


# ---------------------------------------------------------------------------------------------- arguments


def add_common_args(p: argparse.ArgumentParser, dataset: str) -> None:
    p.add_argument("--ann", required=True, help=f"official {dataset.upper()} instances annotation file (json)")
    p.add_argument("--images", required=True, help="folder of the images (COCO val2017/)")
    p.add_argument("--ckpt", default=None,
                   help="model: a `litesam export` file or a Lightning checkpoint (litesam_pl.load_model). "
                        "Without it a RANDOM-weight litesam is evaluated (pipeline check only)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images (sorted by id)")
    p.add_argument("--img-size", type=int, default=None,
                   help="input side: of the random model when no --ckpt (default: the registry's, 640), or the "
                        "checkpoint's weights run at this side (default: the side it was trained at)")
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
    # --ppn-top-n (256, the paper's), --ppn-score-threshold (default 0: the --ppn-top-n best local maxima inside the
    # image), --points-per-side (grid / amg; SAM: 32): SegEvery's own options
    add_option_flags(p, ("top_n", "score_threshold", "points_per_side"), defaults={"score_threshold": 0.0},
                       flags={"top_n": "--ppn-top-n", "score_threshold": "--ppn-score-threshold"})
    p.add_argument("--max-proposals", type=int, default=1000, help="AR@k's largest k (default 1000)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


# --------------------------------------------------------------------------------------------------- main


def _parser(dataset_kind: str, description: str) -> argparse.ArgumentParser:
    from benchmarks import baselines as bl

    p = argparse.ArgumentParser(prog=f"python -m benchmarks.{dataset_kind}", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p, dataset_kind)
    if dataset_kind == "lvis":
        p.add_argument("--lvis-backend", default="lvis", choices=["lvis", "faster"],
                       help="AP scorer: the official lvis.LVISEval (default) or faster_coco_eval's LVIS mode")
    bl.add_baseline_args(p)
    return p


def _load_data(p: argparse.ArgumentParser, args: argparse.Namespace, dataset_kind: str, rank: int,
               world: int) -> tuple[Any, int, str]:
    """The ``CocoInstances`` of this rank's share (``shard_ids``), the number of images in the annotation file and
    the progress bar's suffix; a usage error when the files are unusable or no image was found."""
    from litesam_pl.data.coco import CocoInstances

    try:
        data = CocoInstances(args.ann, args.images, fmt=dataset_kind, limit=args.limit)
    except (FileNotFoundError, ValueError) as e:
        p.error(str(e))
    n_total = len(data.imgs)
    if data.num_missing and rank == 0:
        print(f"WARNING: {data.num_missing} of {n_total} images listed in {args.ann} have no file in "
              f"{args.images}: skipped (counted in the JSON as 'missing_images')", file=sys.stderr)
    if len(data) == 0:
        p.error(f"no image of {args.ann} was found under {args.images}")
    desc = ""
    if world > 1:  # this rank's share; rank 0 gathers the runs and restores the single-process order
        n_images = len(data.image_ids)
        data.image_ids = shard_ids(data.image_ids, rank, world)
        desc = f" (rank {rank} of {world}: {len(data.image_ids)} of {n_images})"
    return data, n_total, desc


def _payload(dataset_kind: str, args: argparse.Namespace, data: Any, n_total: int, run: Mapping[str, Any],
             numbers: Mapping[str, Any], base: Any, info: Mapping[str, Any], segevery_name: str | None,
             proposer: Any, world: int, clock: Laps) -> dict[str, Any]:
    """The results JSON of a run (the numbers, what was evaluated and how, the model, timing: ``clock`` started with
    the run)."""
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
        "seconds_total": clock.lap(),
        "seconds_prompting": run["seconds_prompting"],
        "seconds_segevery": run["seconds_segevery"],
        "save_results": os.path.abspath(args.save_results) if args.save_results else None,
    }
    if info["random_weights"]:
        payload["warning"] = "RANDOM WEIGHTS: no --ckpt given; these numbers only check the pipeline"
    return payload


def _report(dataset_kind: str, args: argparse.Namespace, payload: Mapping[str, Any], info: Mapping[str, Any],
            model: Any, base: Any, data: Any, run: Mapping[str, Any], segevery_name: str | None) -> None:
    """Print the Table-5/6 block (and the baselines' table) and a one-line summary of the run."""
    from benchmarks import baselines as bl

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


def _load_model(p: argparse.ArgumentParser, args: argparse.Namespace, local_rank: int, world: int,
                main_rank: bool) -> tuple[Any, dict[str, Any]]:
    """``(model, info)`` for ``main_for``: no model with ``--baselines-only``; a bad ``--ckpt`` is a usage error."""
    model, info = None, {"ckpt": None, "random_weights": False, "model": None}
    if not args.baselines_only:
        try:
            model, info = build_model(args.ckpt, args.img_size, rank_device(args.device, local_rank, world))
        except (FileNotFoundError, ValueError) as e:
            p.error(str(e))
    if info["random_weights"] and main_rank:
        print(RANDOM_WEIGHTS_BANNER, file=sys.stderr)
    return model, info


def main_for(dataset_kind: str, argv: Sequence[str] | None, description: str) -> dict[str, Any]:
    """The whole command line of ``benchmarks.coco`` / ``benchmarks.lvis``; returns the JSON payload.

    Under ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` > 1) every rank evaluates ``shard_ids`` of the image ids
    on its own device (``rank_device``), rank 0 gathers the runs (``gather_run``: the single-process order), scores,
    prints and writes the JSON; the other ranks return ``{}``. The numbers equal a one-process run's; only
    ``world_size``, ``device`` (``cuda:<LOCAL_RANK>``) and the ``seconds_*`` fields (summed over ranks, except
    ``seconds_total``: rank 0's wall time) differ."""
    from benchmarks import baselines as bl

    p = _parser(dataset_kind, description)
    args = p.parse_args(argv)
    bl.check_baseline_args(p, args)
    rank, world, local_rank = init_distributed()  # (0, 1, 0) without torchrun
    main_rank = rank == 0
    logging.basicConfig(level=logging.INFO if main_rank else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    if not main_rank:  # rank 0 speaks for all (every rank sees the same data and model)
        warnings.filterwarnings("ignore")

    clock = Laps()
    data, n_total, desc = _load_data(p, args, dataset_kind, rank, world)
    model, info = _load_model(p, args, local_rank, world, main_rank)
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

    if args.save_results:  # one line, as pycocotools' loadRes reads it
        write_json(args.save_results, run["results"], indent=None)
    payload = _payload(dataset_kind, args, data, n_total, run, numbers, base, info, segevery_name, proposer, world,
                       clock)
    write_json(args.json, payload)
    _report(dataset_kind, args, payload, info, model, base, data, run, segevery_name)
    publish(dataset_kind, payload)
    return payload
