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

SegEvery's flags (``--prompts``, ``--top-n``, ``--pred-iou-thresh``, ...) are generated from the fields of
``SegEveryOptions`` (``segevery_options.add_option_flags``: names, defaults, types, help); a bad value is one error
line naming the flag (exit status 2). The filter report (``filter_report``, ``needs_filter_report``) lives in
``filter_report.py`` and is re-exported here; the file names and JSON writers in ``outputs.py``, the overlay
drawing in ``overlay.py``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .filter_report import filter_report, needs_filter_report
from .images import DEFAULT_MAX_PIXELS, ImageLoadError, load_image
from .outputs import (IMAGE_SUFFIXES, coco_results, collect_inputs, first_existing, fit_side, image_ids, limit_side,
                      new_run_dir, out_dir_error, output_names, planned_files, plural, write_coco, write_masks_json)
from .overlay import draw_masks, draw_overlay
from .segevery_options import OptionError, SegEveryOptions, add_option_flags

__all__ = ["main", "overlay", "write_outputs", "resolve_device", "filter_report", "needs_filter_report",
           "IMAGE_SUFFIXES"]

PROG = "litesam segment-everything"


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


def resolve_device(spec: str) -> Tuple[Optional[torch.device], str]:
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
            return None, f"--device {spec}: this machine has {plural(torch.cuda.device_count(), 'CUDA device')}"
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
    add_option_flags(p)  # SegEvery's options, one flag per SegEveryOptions field (--prompts, --top-n, ...)
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


def _error(message: str) -> None:
    """One ``litesam segment-everything: error: ...`` line on stderr."""
    print(f"{PROG}: error: {message}", file=sys.stderr)


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
            f"{precision}, {plural(n_images, 'image')}")


def _autocast(args: argparse.Namespace, device: torch.device) -> Optional[torch.dtype]:
    """bf16 with ``--half`` on CUDA; None otherwise (a one-line note when ``--half`` is ignored on the CPU)."""
    if not args.half:
        return None
    if device.type != "cuda":
        print(f"{PROG}: note: --half is ignored on {device} (bf16 autocast is for CUDA); running in float32",
              file=sys.stderr)
        return None
    return torch.bfloat16


def _segment(job: "_Job", image: np.ndarray, output_size: Tuple[int, int]
             ) -> Tuple[List[Dict[str, Any]], Dict[str, Any], float]:
    """SegEvery on one image with the run's options, masks at ``output_size``: ``(COCO-RLE records, its
    stats["filters"] entry, ms)``."""
    from .segevery import SegEvery

    t0 = time.perf_counter()
    result = SegEvery(job.model, job.options).run(image, [output_size], collect_timings=False)
    return result.masks, result.stats["filters"][0], (time.perf_counter() - t0) * 1e3


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


@dataclass
class _Job:
    """What every image of one run shares."""

    args: argparse.Namespace
    model: torch.nn.Module
    label: str
    random_weights: bool
    out_dir: Path
    options: SegEveryOptions  # the flags' options, output_mode "coco_rle", autocast_dtype bf16 with --half on CUDA


def _save_image(job: _Job, path: Path, name: str, image_id: int, full: np.ndarray, view: np.ndarray,
                records: List[Dict[str, Any]], funnel: Dict[str, Any], ms: float) -> Dict[str, Any]:
    """Write one image's overlay and masks JSON and print its line (+ the filter report when (almost) no mask is
    left); returns its ``images.json`` entry."""
    from tqdm import tqdm

    args = job.args
    report = filter_report(funnel) if needs_filter_report(funnel) else None
    caption = [f"{job.label}: {plural(len(records), 'mask')}, {ms:.0f} ms", _settings_line(args, funnel)]
    alerts = (["random weights (no --ckpt): the masks are meaningless"] if job.random_weights else []) + (
        [report] if report else [])
    files = write_outputs(path, view, records, job.out_dir, alpha=args.alpha, original_size=full.shape[:2],
                          caption=caption, alerts=alerts, image_id=image_id, stem=name)
    tqdm.write(f"{path}: {plural(len(records), 'mask')}, {ms:.0f} ms -> {files['overlay'].name}, "
               f"{files['masks'].name}")
    if report:
        tqdm.write(f"{path}: {report}")
    return {"id": image_id, "file_name": path.name, "path": str(path), "height": view.shape[0],
            "width": view.shape[1], "masks": files["masks"].name}


def _segment_all(job: _Job, paths: List[Path], input_errors: List[str]) -> int:
    """SegEvery on every image, its files, then ``results.json`` / ``images.json`` and the summary line; returns
    the exit status (1 when an input failed, 2 on an option the model cannot do)."""
    from tqdm import tqdm

    failures = len(input_errors)
    names, ids = output_names(paths), image_ids(paths)
    times_ms: List[float] = []
    total_masks = 0
    coco: List[Dict[str, Any]] = []
    images: List[Dict[str, Any]] = []
    for path, name, image_id in tqdm(list(zip(paths, names, ids)), desc="segment-everything", unit="img",
                                     disable=None):
        try:
            full = load_image(path, max_pixels=job.args.max_pixels)
        except ImageLoadError as err:
            tqdm.write(f"{PROG}: error: {err}", file=sys.stderr)
            failures += 1
            continue
        work, view = _sizes(path, full, job.args)
        try:
            records, funnel, ms = _segment(job, work, view.shape[:2])
        except ValueError as err:  # an option the model cannot do (e.g. --prompts autoppn without an AutoPPN head)
            _error(str(err))
            return 2
        times_ms.append(ms)
        total_masks += len(records)
        images.append(_save_image(job, path, name, image_id, full, view, records, funnel, ms))
        coco += coco_results(records, image_id)
    if times_ms:
        write_coco(job.out_dir, coco, images)
        print(f"{plural(len(times_ms), 'image')}, {plural(total_masks, 'mask')}, "
              f"{statistics.median(times_ms):.0f} ms/image median; results saved to {job.out_dir}")
    if failures:
        print(f"{PROG}: {failures} of {len(paths) + len(input_errors)} inputs failed", file=sys.stderr)
        return 1
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        options = SegEveryOptions.from_args(args, output_mode="coco_rle")
    except OptionError as err:
        _error(f"--{err.option.replace('_', '-')} must be {err.must}, got {err.value!r}")
        return 2
    device, why = resolve_device(args.device)
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
    job = _Job(args, model, label, random_weights, out_dir, options.replace(autocast_dtype=amp))
    return _segment_all(job, paths, input_errors)


if __name__ == "__main__":
    raise SystemExit(main())
