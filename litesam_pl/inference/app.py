"""``litesam segment-everything IMAGE... --ckpt PATH --out DIR``: SegEvery on image files.

Per image ``<stem>`` it writes ``<stem>_overlay.png`` (coloured masks over the image) and ``<stem>_masks.json``
(SA-1B layout: ``{"image": {...}, "annotations": [{"segmentation": COCO RLE, "bbox", "area", "predicted_iou",
"stability_score", "point_coords", "crop_box"}]}``). Any image mode loads (grey, RGBA, palette, 16-bit, float
TIFF); missing files, non-images and over-large images are reported by name and skipped (exit status 1).
Without ``--ckpt`` the model has random weights and a loud warning says so.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from litesam_pl.models.prompt_forms import PROMPT_FORMS, SEGEVERY_PROMPT_FORM, multimask_output_for

from .images import DEFAULT_MAX_PIXELS, ImageLoadError, load_image

__all__ = ["main", "overlay", "write_outputs", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm"}


def overlay(image: np.ndarray, masks: Sequence[np.ndarray], alpha: float = 0.5, seed: int = 0) -> np.ndarray:
    """Blend a random colour per mask over ``image`` (largest masks first, so small ones stay visible)."""
    out = image.astype(np.float32).copy()
    rng = np.random.default_rng(seed)
    order = sorted(range(len(masks)), key=lambda i: -int(masks[i].sum()))
    colours = rng.integers(40, 256, size=(len(masks), 3)).astype(np.float32)
    for rank, i in enumerate(order):
        m = masks[i].astype(bool)
        out[m] = (1 - alpha) * out[m] + alpha * colours[rank]
    return np.clip(out, 0, 255).round().astype(np.uint8)


def write_outputs(path: Path, image: np.ndarray, records: List[Dict[str, Any]], out_dir: Path,
                  alpha: float = 0.5, original_size: Optional[Sequence[int]] = None) -> Dict[str, Path]:
    """Write ``<stem>_overlay.png`` and ``<stem>_masks.json`` for one image; returns their paths."""
    from PIL import Image

    from .postprocess import decode_rle

    out_dir.mkdir(parents=True, exist_ok=True)
    masks = [decode_rle(r["segmentation"]) for r in records]
    over = overlay(image, masks, alpha=alpha)
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
    paths: List[Path] = []
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            paths.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES))
        else:
            paths.append(p)
    return paths


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


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from tqdm import tqdm

    import litesam_pl

    from .segevery import segment_everything

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("litesam segment-everything: error: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    if args.ckpt:
        try:
            model = litesam_pl.load_model(args.ckpt)
        except (FileNotFoundError, ValueError) as err:
            print(f"litesam segment-everything: error: {err}", file=sys.stderr)
            return 2
    else:
        banner = (
            "!" * 78 + "\n"
            "!! WARNING: no --ckpt given: the model has RANDOM WEIGHTS; the masks are meaningless.\n"
            "!! Train one (litesam fit ...) or pass --ckpt PATH.\n" + "!" * 78
        )
        print(banner, file=sys.stderr)
        warnings.warn("segment-everything without --ckpt: random weights", stacklevel=1)
        torch.manual_seed(args.seed)
        model = litesam_pl.create_model(args.model, img_size=args.img_size)
    model = model.eval().to(device)

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = _expand(args.images)
    multimask = args.multimask_output
    if multimask is None:  # the output the prompt form trains (grid prompts are points)
        multimask = multimask_output_for(args.prompt_type if args.prompts == "autoppn" else "point")
    failures = 0
    stems: Dict[str, int] = {}
    for path in tqdm(paths, desc="segment-everything", unit="img", disable=None):
        try:
            image = load_image(path, max_pixels=args.max_pixels)
        except ImageLoadError as err:
            tqdm.write(f"litesam segment-everything: error: {err}", file=sys.stderr)
            failures += 1
            continue
        orig = image.shape[:2]
        image = _limit_side(image, args.max_side)
        if image.shape[:2] != orig:
            tqdm.write(f"{path}: {orig[1]}x{orig[0]} downscaled to {image.shape[1]}x{image.shape[0]} (--max-side)",
                       file=sys.stderr)
        records = segment_everything(
            model, image, prompts=args.prompts, top_n=args.top_n, score_threshold=args.score_threshold,
            points_per_side=args.points_per_side, prompt_type=args.prompt_type, multimask_output=multimask,
            pred_iou_thresh=args.pred_iou_thresh, stability_score_thresh=args.stability_score_thresh,
            box_nms_thresh=args.box_nms_thresh, max_masks=args.max_masks, output_mode="coco_rle",
        )
        n = stems.get(path.stem, 0)
        stems[path.stem] = n + 1
        name = path if n == 0 else path.with_name(f"{path.stem}_{n}{path.suffix}")  # same stem twice
        files = write_outputs(name, image, records, out_dir, alpha=args.alpha, original_size=orig)
        tqdm.write(f"{path}: {len(records)} masks -> {files['overlay'].name}, {files['masks'].name}")
    if not paths:
        print("litesam segment-everything: error: no images given", file=sys.stderr)
        return 2
    if failures:
        print(f"litesam segment-everything: {failures} of {len(paths)} inputs failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
