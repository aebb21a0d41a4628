"""``litesam segment-everything IMAGE... --ckpt PATH --out DIR``: SegEvery on image files.

Per image ``<stem>`` it writes ``<stem>_overlay.png`` (coloured, outlined masks over the image under a caption
band: model, mask count, thresholds, and why there are no masks when the filters removed them all) and
``<stem>_masks.json`` (SA-1B layout: ``{"image": {...}, "annotations": [{"segmentation": COCO RLE, "bbox", "area",
"predicted_iou", "stability_score", "point_coords", "crop_box"}]}``). Any image mode loads (grey, RGBA, palette,
16-bit, float TIFF); missing files, non-images, over-large images, empty folders and URLs are reported by name in
one line each and skipped (exit status 1; 2 when nothing is left to do). Output: one line per image (mask count,
time; a second line saying which filter removed the masks when (almost) none are left, with the flag to relax),
then a summary line. Without ``--ckpt`` the model has random weights and a loud warning says so (once).
"""
from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from litesam_pl.models.prompt_forms import PROMPT_FORMS, SEGEVERY_PROMPT_FORM, multimask_output_for

from .images import DEFAULT_MAX_PIXELS, ImageLoadError, load_image
from .overlay import draw_masks, draw_overlay

__all__ = ["main", "overlay", "write_outputs", "filter_report", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm"}
PROG = "litesam segment-everything"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# below this share of the candidate masks kept, the per-image line is followed by the filter report
FEW_KEPT = 0.01


def overlay(image: np.ndarray, masks: Sequence[np.ndarray], alpha: float = 0.5, seed: int = 0) -> np.ndarray:
    """Blend a random colour per mask over ``image`` (largest masks first, so small ones stay visible) and outline
    each mask (``overlay.draw_masks``)."""
    return draw_masks(image, masks, alpha=alpha, seed=seed)


def write_outputs(path: Path, image: np.ndarray, records: List[Dict[str, Any]], out_dir: Path,
                  alpha: float = 0.5, original_size: Optional[Sequence[int]] = None,
                  caption: Sequence[str] = (), alerts: Sequence[str] = ()) -> Dict[str, Path]:
    """Write ``<stem>_overlay.png`` (masks + a caption band of ``caption`` and ``alerts`` lines, see
    ``overlay.draw_overlay``) and ``<stem>_masks.json`` for one image; returns their paths."""
    from PIL import Image

    from .postprocess import decode_rle

    out_dir.mkdir(parents=True, exist_ok=True)
    masks = [decode_rle(r["segmentation"]) for r in records]
    over = draw_overlay(image, masks, alpha=alpha, lines=caption, alerts=alerts)
    stem = path.stem
    png = out_dir / f"{stem}_overlay.png"
    Image.fromarray(over).save(png)
    h, w = image.shape[:2]
    info: Dict[str, Any] = {"image_id": 0, "width": int(w), "height": int(h), "file_name": path.name}
    if original_size is not None and tuple(original_size) != (h, w):
        info["original_height"], info["original_width"] = int(original_size[0]), int(original_size[1])
    anns = []
    for i, r in enumerate(records):
        ann = dict(r)
        ann["id"] = i
        anns.append(ann)
    js = out_dir / f"{stem}_masks.json"
    js.write_text(json.dumps({"image": info, "annotations": anns}))
    return {"overlay": png, "masks": js}


def _expand(inputs: Sequence[str]) -> List[Path]:
    """Files as given; directories expand to their image files (sorted)."""
    return _collect_inputs(inputs)[0]


def _collect_inputs(inputs: Sequence[str]) -> Tuple[List[Path], List[str]]:
    """``(paths, errors)``: files as given, directories expanded to their image files (sorted); URLs and folders
    without images are one-line ``errors`` (missing files are left to ``load_image``, which names them)."""
    paths: List[Path] = []
    errors: List[str] = []
    for s in inputs:
        if _URL.match(s):
            errors.append(f"{s}: URLs are not supported; download the image first and pass the local file")
            continue
        p = Path(s)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                errors.append(f"{p}: no images in this folder (accepted suffixes: "
                              f"{' '.join(sorted(IMAGE_SUFFIXES))}; subfolders are not searched)")
            paths.extend(found)
        else:
            paths.append(p)
    return paths, errors


def _out_dir_error(out: str) -> Optional[str]:
    """Why ``--out`` cannot be the output directory (an existing file, or a file on its path), else None."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        return f"--out {out}: is an existing file; give a directory (it is created if missing)"
    for parent in p.parents:
        if parent.exists() and not parent.is_dir():
            return f"--out {out}: {parent} is a file, not a directory"
    return None


def _limit_side(image: np.ndarray, max_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    if max_side <= 0 or max(h, w) <= max_side:
        return image
    import cv2

    s = max_side / max(h, w)
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="litesam segment-everything",
        description="Segment everything in images with Lite-SAM: writes <stem>_overlay.png and <stem>_masks.json "
        "(COCO RLE, SA-1B layout) per image into --out.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or directories of images")
    p.add_argument("--ckpt", help="export (litesam export) or Lightning checkpoint; random weights when absent")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--model", default="litesam", help="model name for random weights (default litesam)")
    p.add_argument("--img-size", type=int, default=640, help="input side for random weights (default 640)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda when available")
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
                   help="images with a longer side are downscaled to it first (0: never; default 4096)")
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


def _needs_report(f: Dict[str, Any]) -> bool:
    """(Almost) all candidate masks were removed: none kept, or under ``FEW_KEPT`` of them."""
    return f["kept"] == 0 or f["kept"] < FEW_KEPT * f["candidates"]


def _load(args: argparse.Namespace) -> Tuple[Optional[torch.nn.Module], str, bool]:
    """``(model, label, random_weights)``: the model (None after a one-line error), its caption label
    ("<name> (<ckpt file>)" or "<name>") and whether its weights are random (then the banner is printed, once)."""
    import litesam_pl

    if args.ckpt:
        try:
            model = litesam_pl.load_model(args.ckpt)
        except (FileNotFoundError, ValueError) as err:
            _error(str(err))
            return None, "", False
        name = getattr(model, "model_config", {}).get("name", type(model).__name__)
        return model, f"{name} ({Path(args.ckpt).name})", False
    banner = (
        "!" * 78 + "\n"
        "!! WARNING: no --ckpt given: the model has RANDOM WEIGHTS; the masks are meaningless.\n"
        "!! Train one (litesam fit ...) or pass --ckpt PATH.\n" + "!" * 78
    )
    print(banner, file=sys.stderr)
    torch.manual_seed(args.seed)
    return litesam_pl.create_model(args.model, img_size=args.img_size), args.model, True


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
    """``(paths, input errors)`` after one-line errors for an unusable ``--out`` and each bad input; paths is None
    when there is nothing to do (then the exit status is 2). Creates ``--out``."""
    out_problem = _out_dir_error(args.out)
    if out_problem:
        _error(out_problem)
        return None, []
    paths, input_errors = _collect_inputs(args.images)
    for message in input_errors:
        _error(message)
    if not paths:
        if not input_errors:
            _error("no images given")
        return None, input_errors
    try:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        _error(f"--out {args.out}: cannot create the directory ({err.strerror or err})")
        return None, input_errors
    return paths, input_errors


def _segment(model: torch.nn.Module, image: np.ndarray, args: argparse.Namespace,
             multimask: bool) -> Tuple[List[Dict[str, Any]], Dict[str, Any], float]:
    """SegEvery on one image with the CLI's options: ``(COCO-RLE records, its stats["filters"] entry, ms)``."""
    from .segevery import segment_everything

    stats: Dict[str, Any] = {}
    t0 = time.perf_counter()
    records = segment_everything(
        model, image, prompts=args.prompts, top_n=args.top_n, score_threshold=args.score_threshold,
        points_per_side=args.points_per_side, prompt_type=args.prompt_type, multimask_output=multimask,
        pred_iou_thresh=args.pred_iou_thresh, stability_score_thresh=args.stability_score_thresh,
        box_nms_thresh=args.box_nms_thresh, max_masks=args.max_masks, output_mode="coco_rle", stats=stats,
    )
    return records, stats["filters"][0], (time.perf_counter() - t0) * 1e3


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from tqdm import tqdm

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if device.type == "cuda" and not torch.cuda.is_available():
        _error("--device cuda but CUDA is not available")
        return 2
    paths, input_errors = _check_paths(args)
    if paths is None:
        return 2
    model, label, random_weights = _load(args)
    if model is None:
        return 2
    model = model.eval().to(device)

    out_dir = Path(args.out)
    multimask = args.multimask_output
    if multimask is None:  # the output the prompt form trains (grid prompts are points)
        multimask = multimask_output_for(args.prompt_type if args.prompts == "autoppn" else "point")
    failures = len(input_errors)
    stems: Dict[str, int] = {}
    times_ms: List[float] = []
    total_masks = 0
    for path in tqdm(paths, desc="segment-everything", unit="img", disable=None):
        try:
            image = load_image(path, max_pixels=args.max_pixels)
        except ImageLoadError as err:
            tqdm.write(f"{PROG}: error: {err}", file=sys.stderr)
            failures += 1
            continue
        orig = image.shape[:2]
        image = _limit_side(image, args.max_side)
        if image.shape[:2] != orig:
            tqdm.write(f"{path}: {orig[1]}x{orig[0]} downscaled to {image.shape[1]}x{image.shape[0]} (--max-side)",
                       file=sys.stderr)
        try:
            records, funnel, ms = _segment(model, image, args, multimask)
        except ValueError as err:  # an option the model cannot do (e.g. --prompts autoppn without an AutoPPN head)
            _error(str(err))
            return 2
        times_ms.append(ms)
        total_masks += len(records)
        report = filter_report(funnel) if _needs_report(funnel) else None
        n = stems.get(path.stem, 0)
        stems[path.stem] = n + 1
        name = path if n == 0 else path.with_name(f"{path.stem}_{n}{path.suffix}")  # same stem twice
        caption = [f"{label}: {_plural(len(records), 'mask')}, {ms:.0f} ms", _settings_line(args, funnel)]
        alerts = (["random weights (no --ckpt): the masks are meaningless"] if random_weights else []) + (
            [report] if report else [])
        files = write_outputs(name, image, records, out_dir, alpha=args.alpha, original_size=orig,
                              caption=caption, alerts=alerts)
        tqdm.write(f"{path}: {_plural(len(records), 'mask')}, {ms:.0f} ms -> {files['overlay'].name}, "
                   f"{files['masks'].name}")
        if report:
            tqdm.write(f"{path}: {report}")
    if times_ms:
        print(f"{_plural(len(times_ms), 'image')}, {_plural(total_masks, 'mask')}, "
              f"{statistics.median(times_ms):.0f} ms/image median; results saved to {out_dir}")
    if failures:
        print(f"{PROG}: {failures} of {len(paths) + len(input_errors)} inputs failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
