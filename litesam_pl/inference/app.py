"""``litesam segment-everything IMAGE... [--ckpt PATH] [--out DIR]``: SegEvery on image files.

Inputs: files, folders (``--recursive``: with subfolders) and quoted globs (``'photos/*.jpg'``,
``'photos/**/*.png'``). Output folder: ``--out DIR``, else a new ``runs/segment/predict``, ``predict2``, ...; an
existing output file is never overwritten without ``--exist-ok`` (one-line error naming it). Per image ``<stem>``
it writes ``<stem>_overlay.png`` (coloured, outlined masks over the image under a caption band: model, mask count,
thresholds, and why there are no masks when the filters removed them all) and ``<stem>_masks.json`` (SA-1B layout:
``{"image": {...}, "annotations": [{"segmentation": COCO RLE, "bbox", "area", "predicted_iou",
"stability_score", "point_coords", "crop_box"}]}``); over all images ``results.json`` (COCO results: ``image_id``,
``category_id`` 1, ``segmentation``, ``score`` = predicted IoU, the ranking score, ``bbox``) and ``images.json``
(a COCO dataset of the ``image_id`` -> file names). Masks are at the ORIGINAL image size: the model sees the image
downscaled to ``--max-side`` when larger (memory guard), its masks are upsampled to the original size (or to
``--max-output-side``, an opt-in). Any image mode loads (grey, RGBA, palette, 16-bit, float TIFF); missing files,
non-images, over-large images, empty folders and URLs are reported by name in one line each and skipped (exit
status 1; 2 when nothing is left to do). Output: a start line (model, device, input size) on stderr, one line per
image (mask count, time; a second line saying which filter removed the masks when (almost) none are left, with the
flag to relax), then a summary line. Without ``--ckpt`` the model has random weights and a loud warning says so
(once).
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from litesam_pl.models.prompt_forms import PROMPT_FORMS, SEGEVERY_PROMPT_FORM, multimask_output_for

from .images import DEFAULT_MAX_PIXELS, ImageLoadError, load_image
from .outputs import (IMAGE_SUFFIXES, coco_results, collect_inputs, first_existing, fit_side, image_ids, limit_side,
                      new_run_dir, out_dir_error, output_names, planned_files, write_coco, write_masks_json)
from .overlay import draw_masks, draw_overlay

__all__ = ["main", "overlay", "write_outputs", "filter_report", "needs_filter_report", "IMAGE_SUFFIXES"]

PROG = "litesam segment-everything"
# below this share of the candidate masks kept, the per-image line is followed by the filter report
FEW_KEPT = 0.01


def overlay(image: np.ndarray, masks: Sequence[np.ndarray], alpha: float = 0.5, seed: int = 0) -> np.ndarray:
    """Blend a random colour per mask over ``image`` (largest masks first, so small ones stay visible) and outline
    each mask (``overlay.draw_masks``)."""
    return draw_masks(image, masks, alpha=alpha, seed=seed)


def write_outputs(path: Path, image: np.ndarray, records: List[Dict[str, Any]], out_dir: Path,
                  alpha: float = 0.5, original_size: Optional[Sequence[int]] = None,
                  caption: Sequence[str] = (), alerts: Sequence[str] = (), image_id: int = 0,
                  stem: Optional[str] = None) -> Dict[str, Path]:
    """Write ``<stem>_overlay.png`` (masks + a caption band of ``caption`` and ``alerts`` lines, see
    ``overlay.draw_overlay``) and ``<stem>_masks.json`` for one image (``stem``: ``path.stem`` by default;
    ``image``: the picture at the masks' size); returns their paths."""
    from PIL import Image

    from ..data.rle import decode_rle

    out_dir.mkdir(parents=True, exist_ok=True)
    masks = [decode_rle(r["segmentation"]) for r in records]
    over = draw_overlay(image, masks, alpha=alpha, lines=caption, alerts=alerts)
    stem = stem or path.stem
    png = out_dir / f"{stem}_overlay.png"
    Image.fromarray(over).save(png)
    js = write_masks_json(out_dir / f"{stem}_masks.json", records, image_id, image.shape[:2], path.name,
                          original_size)
    return {"overlay": png, "masks": js}


def _resolve_device(spec: str) -> Tuple[Optional[torch.device], str]:
    """``(device, "")`` for ``--device``: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``, ``cuda:N``
    or ``N`` (= ``cuda:N``); ``(None, one-line reason)`` when it is no device or not on this machine."""
    s = spec.strip().lower()
    if s == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu"), ""
    try:
        device = torch.device(f"cuda:{s}" if s.isdigit() else s)
    except (RuntimeError, ValueError):
        return None, f"--device {spec}: not a device; use auto, cpu, cuda or cuda:N"
    if device.type not in ("cpu", "cuda"):
        return None, f"--device {spec}: not supported; use auto, cpu, cuda or cuda:N"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return None, f"--device {spec}: CUDA is not available on this machine; use --device cpu"
        if device.index is not None and device.index >= torch.cuda.device_count():
            return None, f"--device {spec}: this machine has {_plural(torch.cuda.device_count(), 'CUDA device')}"
    return device, ""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="litesam segment-everything",
        description="Segment everything in images with Lite-SAM: writes <stem>_overlay.png and <stem>_masks.json "
        "(COCO RLE, SA-1B layout) per image, results.json (COCO results over all images) and images.json (their "
        "image_id -> file names, a COCO dataset) into the output folder. Masks are at the original image size.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files, folders of images, or quoted globs ('photos/*.jpg', 'photos/**/*.png')")
    p.add_argument("--ckpt", help="export (litesam export) or Lightning checkpoint; random weights when absent")
    p.add_argument("--out", default=None,
                   help="output directory (default: a new runs/segment/predict, predict2, ...); created if missing, "
                   "may exist, but an output file already there stops the run before any work unless --exist-ok")
    p.add_argument("--exist-ok", action="store_true",
                   help="overwrite output files already in --out (default: refuse, naming the file)")
    p.add_argument("--recursive", "-r", action="store_true", help="also search the subfolders of folder inputs")
    p.add_argument("--model", default="litesam", help="model name for random weights (default litesam)")
    p.add_argument("--img-size", type=int, default=640, help="input side for random weights (default 640)")
    p.add_argument("--device", default="auto",
                   help="auto (default: cuda when available, else cpu), cpu, cuda, cuda:N or N (= cuda:N)")
    p.add_argument("--half", action="store_true",
                   help="bf16 autocast on CUDA (faster, less memory); ignored on CPU, with a one-line note")
    p.add_argument("--prompts", default="autoppn", choices=["autoppn", "grid"], help="prompt source (default autoppn)")
    p.add_argument("--top-n", type=int, default=256, help="AutoPPN prompts per image (default 256)")
    p.add_argument("--score-threshold", type=float, default=None, help="AutoPPN score threshold (model default)")
    p.add_argument("--points-per-side", type=int, default=32, help="grid size with --prompts grid (default 32)")
    p.add_argument("--prompt-type", default=SEGEVERY_PROMPT_FORM, choices=list(PROMPT_FORMS),
                   help=f"prompt AutoPPN proposals are given as (default {SEGEVERY_PROMPT_FORM}; grid prompts are "
                   "always points)")
    p.add_argument("--multimask-output", action=argparse.BooleanOptionalAction, default=None,
                   help="3 masks per prompt or 1 (default: the output the prompt form trains, "
                   "prompt_forms.multimask_output_for; 'point' for grid prompts)")
    p.add_argument("--pred-iou-thresh", type=float, default=0.88)
    p.add_argument("--stability-score-thresh", type=float, default=0.95)
    p.add_argument("--box-nms-thresh", type=float, default=0.7)
    p.add_argument("--max-masks", type=int, default=None, help="keep at most this many masks per image")
    p.add_argument("--max-side", type=int, default=4096,
                   help="the model sees images with a longer side downscaled to it (memory guard; 0: never; default "
                   "4096); the masks are still returned at the original size")
    p.add_argument("--max-output-side", type=int, default=0,
                   help="also downscale the outputs (masks, JSON, overlay) to this longer side, e.g. to bound the "
                   "memory of many masks on huge photos (default 0: the original size)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger images (0: no limit)")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity (default 0.5)")
    p.add_argument("--seed", type=int, default=0, help="seed for random weights")
    return p


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _error(message: str) -> None:
    """One ``litesam segment-everything: error: ...`` line on stderr."""
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _relax_below(best: float, step: float, strict: bool) -> float:
    """A threshold under ``best`` on a ``step`` grid (0 when none is above 0): ``best`` passes it (``> t``
    when ``strict``, else ``>= t``)."""
    t = math.floor(best / step) * step
    if strict and t >= best:
        t -= step
    return round(max(0.0, t), 6)


def _suggestions(f: Dict[str, Any]) -> List[str]:
    """The flags (with values) that relax the filters that removed masks or prompts in ``f``."""
    th, removed = f["thresholds"], f["removed"]
    flags: List[str] = []
    if f["removed_score_threshold"] and f["best_ppn_score"] is not None:
        flags.append(f"--score-threshold {_relax_below(f['best_ppn_score'], 0.01, strict=False):g}")
    if removed["pred_iou"] and f["best_pred_iou"] is not None:
        flags.append(f"--pred-iou-thresh {_relax_below(f['best_pred_iou'], 0.1, strict=True):g}")
    if removed["stability"] and f["best_stability"] is not None:
        flags.append(f"--stability-score-thresh {_relax_below(f['best_stability'], 0.1, strict=False):g}")
    if not flags and f["prompt_source"] == "autoppn" and f["proposals"] == 0:
        flags.append("--prompts grid")
    if not flags and th.get("max_masks") is not None and removed["max_masks"]:
        flags.append(f"--max-masks {2 * int(th['max_masks']) or 1}")
    return flags


def filter_report(f: Dict[str, Any]) -> str:
    """One line on where the masks of one image went, from its ``segment_everything`` ``stats["filters"]`` entry:
    prompts, how many masks each filter removed (in the order they apply), the best scores seen and the flags
    that relax the filters that removed them."""
    th, removed = f["thresholds"], f["removed"]

    def best(key: str) -> str:
        return "n/a" if f[key] is None else f"{f[key]:.3f}"

    source = ""
    if f["prompt_source"] == "autoppn":
        source = (f", from {f['proposals']} AutoPPN proposals: {f['removed_score_threshold']} under score threshold "
                  f"{th['score_threshold']} (best score {best('best_ppn_score')})")
    line = (f"{f['kept']} of {f['candidates']} masks kept ({f['prompts']} prompts decoded{source}); removed by "
            f"predicted IoU <= {th['pred_iou_thresh']:g}: {removed['pred_iou']} (best {best('best_pred_iou')}), "
            f"stability < {th['stability_score_thresh']:g}: {removed['stability']} (best {best('best_stability')}), "
            f"empty: {removed['empty']}, NMS: {removed['nms']}, max masks: {removed['max_masks']}")
    flags = _suggestions(f)
    return line + (f"; to keep more, try {' '.join(flags)}" if flags else "")


def needs_filter_report(f: Dict[str, Any]) -> bool:
    """(Almost) all candidate masks were removed: none kept, or under ``FEW_KEPT`` of them."""
    return f["kept"] == 0 or f["kept"] < FEW_KEPT * f["candidates"]


def _load(args: argparse.Namespace, argv: Sequence[str]) -> Tuple[Optional[torch.nn.Module], str, bool]:
    """``(model, label, random_weights)``: the model (None after a one-line error), its caption label
    ("<name> (<ckpt file>)" or "<name>") and whether its weights are random (then the banner is printed, once).
    A ``--model`` that is not a Lite-SAM model, and a checkpoint without AutoPPN head under ``--prompts autoppn``,
    are one-line errors here, before any image is read."""
    from litesam_pl.models.checkpoint import load_or_random
    from litesam_pl.models.registry import ModelError, check_segmenter

    if args.ckpt:
        try:
            model, info = load_or_random(args.ckpt)
        except (FileNotFoundError, ValueError) as err:
            _error(str(err))
            return None, "", False
        if args.prompts == "autoppn" and getattr(model, "autoppn", None) is None:
            given = "--prompts autoppn" + ("" if any(a.startswith("--prompts") for a in argv) else " (the default)")
            _error(f"{given} needs a model with an AutoPPN head and {args.ckpt} has none (a backbone-stage "
                   "checkpoint); use --prompts grid, or a checkpoint of the autoppn / litesam stage")
            return None, "", False
        return model, f"{info['model']} ({Path(args.ckpt).name})", False
    try:
        check_segmenter(args.model)
    except ModelError as err:
        _error(f"--model: {err}")
        return None, "", False
    banner = (
        "!" * 78 + "\n"
        "!! WARNING: no --ckpt given: the model has RANDOM WEIGHTS; the masks are meaningless.\n"
        "!! Train one (litesam fit ...) or pass --ckpt PATH.\n" + "!" * 78
    )
    print(banner, file=sys.stderr)
    model, _ = load_or_random(None, args.model, seed=args.seed, img_size=args.img_size)
    return model, args.model, True


def _settings_line(args: argparse.Namespace, f: Dict[str, Any]) -> str:
    """The caption's thresholds line."""
    th = f["thresholds"]
    if args.prompts == "autoppn":
        prompts = f"AutoPPN top-{args.top_n}, score >= {th['score_threshold']}"
    else:
        prompts = f"grid {args.points_per_side}x{args.points_per_side}"
    nms = "no NMS" if th["box_nms_thresh"] is None else f"NMS {th['box_nms_thresh']:g}"
    extra = "" if args.max_masks is None else f", max {args.max_masks}"
    return (f"{prompts}; pred IoU > {args.pred_iou_thresh:g}, stability >= {args.stability_score_thresh:g}, "
            f"{nms}{extra}")


def _check_paths(args: argparse.Namespace) -> Tuple[Optional[List[Path]], List[str]]:
    """``(paths, input errors)`` after one-line errors for an unusable ``--out``, each bad input and an output file
    ``--out`` already holds (without ``--exist-ok``); paths is None when there is nothing to do (then the exit
    status is 2). Creates nothing."""
    out_problem = out_dir_error(args.out) if args.out else None
    if out_problem:
        _error(out_problem)
        return None, []
    paths, input_errors = collect_inputs(args.images, recursive=args.recursive)
    for message in input_errors:
        _error(message)
    if not paths:
        if not input_errors:
            _error("no images given")
        return None, input_errors
    taken = None if args.exist_ok or not args.out else first_existing(planned_files(Path(args.out),
                                                                                    output_names(paths)))
    if taken is not None:
        _error(f"{taken} already exists; pass --exist-ok to overwrite, or another --out (without --out each run "
               "writes to a new runs/segment/predict<N>)")
        return None, input_errors
    return paths, input_errors


def _make_out_dir(out: Optional[str]) -> Optional[Path]:
    """``--out`` (created when missing), or a new ``runs/segment/predict<N>``; None after a one-line error."""
    try:
        if out is None:
            return new_run_dir()
        Path(out).mkdir(parents=True, exist_ok=True)
        return Path(out)
    except OSError as err:
        _error(f"{out or 'runs/segment'}: cannot create the directory ({err.strerror or err})")
        return None


def _start_line(label: str, random_weights: bool, model: torch.nn.Module, device: torch.device,
                amp: Optional[torch.dtype], n_images: int) -> str:
    """The line printed before the first image: model (name and checkpoint file), device, input size, precision."""
    where = str(device)
    if device.type == "cuda":
        where += f" ({torch.cuda.get_device_name(device)})"
    size = int(model.image_encoder.img_size)
    weights = " (random weights)" if random_weights else ""
    precision = "bf16 autocast" if amp is not None else "float32"
    return (f"{PROG}: model {label}{weights}, device {where}, input {size}x{size} (longest side resized), "
            f"{precision}, {_plural(n_images, 'image')}")


def _autocast(args: argparse.Namespace, device: torch.device) -> Optional[torch.dtype]:
    """bf16 with ``--half`` on CUDA; None otherwise (a one-line note when ``--half`` is ignored on the CPU)."""
    if not args.half:
        return None
    if device.type != "cuda":
        print(f"{PROG}: note: --half is ignored on {device} (bf16 autocast is for CUDA); running in float32",
              file=sys.stderr)
        return None
    return torch.bfloat16


def _segment(model: torch.nn.Module, image: np.ndarray, args: argparse.Namespace, multimask: bool,
             output_size: Tuple[int, int], amp: Optional[torch.dtype] = None,
             ) -> Tuple[List[Dict[str, Any]], Dict[str, Any], float]:
    """SegEvery on one image with the CLI's options, masks at ``output_size``: ``(COCO-RLE records, its
    stats["filters"] entry, ms)``."""
    from .segevery import segment_everything

    stats: Dict[str, Any] = {}
    t0 = time.perf_counter()
    records = segment_everything(
        model, image, prompts=args.prompts, top_n=args.top_n, score_threshold=args.score_threshold,
        points_per_side=args.points_per_side, prompt_type=args.prompt_type, multimask_output=multimask,
        pred_iou_thresh=args.pred_iou_thresh, stability_score_thresh=args.stability_score_thresh,
        box_nms_thresh=args.box_nms_thresh, max_masks=args.max_masks, output_mode="coco_rle", stats=stats,
        output_sizes=[output_size], autocast_dtype=amp,
    )
    return records, stats["filters"][0], (time.perf_counter() - t0) * 1e3


def _sizes(path: Path, full: np.ndarray, args: argparse.Namespace) -> Tuple[np.ndarray, np.ndarray]:
    """``(model input, picture at the output size)`` of a loaded image: the input is downscaled to ``--max-side``
    (noted on stderr), the output keeps the original size unless ``--max-output-side`` is given."""
    from tqdm import tqdm

    orig = full.shape[:2]
    work = limit_side(full, args.max_side)
    out_size = fit_side(orig, args.max_output_side)
    view = full if out_size == orig else (work if work.shape[:2] == out_size else limit_side(full,
                                                                                             args.max_output_side))
    if work.shape[:2] != orig:
        tqdm.write(f"{path}: {orig[1]}x{orig[0]} downscaled to {work.shape[1]}x{work.shape[0]} for the model "
                   f"(--max-side); masks at {view.shape[1]}x{view.shape[0]}", file=sys.stderr)
    return work, view


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from tqdm import tqdm

    device, why = _resolve_device(args.device)
    if device is None:
        _error(why)
        return 2
    paths, input_errors = _check_paths(args)
    if paths is None:
        return 2
    model, label, random_weights = _load(args, argv)
    if model is None:
        return 2
    model = model.eval().to(device)
    out_dir = _make_out_dir(args.out)
    if out_dir is None:
        return 2
    amp = _autocast(args, device)
    print(_start_line(label, random_weights, model, device, amp, len(paths)), file=sys.stderr)

    multimask = args.multimask_output
    if multimask is None:  # the output the prompt form trains (grid prompts are points)
        multimask = multimask_output_for(args.prompt_type if args.prompts == "autoppn" else "point")
    failures = len(input_errors)
    names, ids = output_names(paths), image_ids(paths)
    times_ms: List[float] = []
    total_masks = 0
    coco: List[Dict[str, Any]] = []
    images: List[Dict[str, Any]] = []
    for path, name, image_id in tqdm(list(zip(paths, names, ids)), desc="segment-everything", unit="img",
                                     disable=None):
        try:
            full = load_image(path, max_pixels=args.max_pixels)
        except ImageLoadError as err:
            tqdm.write(f"{PROG}: error: {err}", file=sys.stderr)
            failures += 1
            continue
        work, view = _sizes(path, full, args)
        try:
            records, funnel, ms = _segment(model, work, args, multimask, view.shape[:2], amp)
        except ValueError as err:  # an option the model cannot do (e.g. --prompts autoppn without an AutoPPN head)
            _error(str(err))
            return 2
        times_ms.append(ms)
        total_masks += len(records)
        report = filter_report(funnel) if needs_filter_report(funnel) else None
        caption = [f"{label}: {_plural(len(records), 'mask')}, {ms:.0f} ms", _settings_line(args, funnel)]
        alerts = (["random weights (no --ckpt): the masks are meaningless"] if random_weights else []) + (
            [report] if report else [])
        files = write_outputs(path, view, records, out_dir, alpha=args.alpha, original_size=full.shape[:2],
                              caption=caption, alerts=alerts, image_id=image_id, stem=name)
        coco += coco_results(records, image_id)
        images.append({"id": image_id, "file_name": path.name, "path": str(path), "height": view.shape[0],
                       "width": view.shape[1], "masks": files["masks"].name})
        tqdm.write(f"{path}: {_plural(len(records), 'mask')}, {ms:.0f} ms -> {files['overlay'].name}, "
                   f"{files['masks'].name}")
        if report:
            tqdm.write(f"{path}: {report}")
    if times_ms:
        write_coco(out_dir, coco, images)
        print(f"{_plural(len(times_ms), 'image')}, {_plural(total_masks, 'mask')}, "
              f"{statistics.median(times_ms):.0f} ms/image median; results saved to {out_dir}")
    if failures:
        print(f"{PROG}: {failures} of {len(paths) + len(input_errors)} inputs failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
