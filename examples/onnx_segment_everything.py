#!/usr/bin/env python
"""Segment everything in one image with Lite-SAM's ONNX graphs, using only numpy, OpenCV and onnxruntime.

    litesam export --ckpt litesam.pt --onnx onnx/          # writes onnx/encoder.onnx and onnx/decoder.onnx
    python examples/onnx_segment_everything.py photo.jpg --onnx onnx/ --out photo_overlay.png

writes ``photo_overlay.png`` (every mask filled and outlined over the photo) and ``photo_overlay.json`` (one
record per mask: ``bbox`` XYWH, ``area``, ``predicted_iou``, ``stability_score``, ``point_coords``,
``ppn_score`` and the mask as an uncompressed COCO RLE, ``segmentation``). This file imports neither torch nor
litesam_pl: copy it to a deployment. It does what ``litesam_pl.segment_everything`` does with its defaults:

1. pre-processing (``Sam.preprocess``): resize the longest side to S (the encoder's input side) with the
   antialiased bilinear filter PyTorch's ``F.interpolate(..., antialias=True)`` uses, normalise with SAM's pixel
   mean / std, pad bottom-right with zeros to ``[1, 3, S, S]``;
2. ``encoder.onnx(image, input_size=(h, w) of the resized image)`` -> ``image_embeddings`` and AutoPPN's prompts
   after Point-NMS: ``points [1, N, 2]``, ``boxes [1, N, 4]`` (xyxy), ``scores [1, N]``, ``valid [1, N]``; the
   graph decodes at score 0, so the AutoPPN score threshold (0.05, ``--score-thresh``) is applied here;
3. ``decoder.onnx`` once for all prompts, in SegEvery's default prompt form ``point+box``: ``point_coords
   [N, 3, 2]`` = point, box top-left, box bottom-right with ``point_labels [N, 3]`` = ``[1, 2, 3]``; it returns
   ``low_res_masks [N, 4, S/4, S/4]`` logits of all four mask tokens and ``iou_predictions [N, 4]``. A point and a
   box is a single-mask prompt: token 0 (``--prompt-form point`` gives ``[point, pad]`` / ``[1, -1]`` and the three
   multimask tokens 1..3; ``box`` gives ``[tl, br]`` / ``[2, 3]`` and token 0);
4. filters as SAM's automatic mask generator on the low-res logits inside the image (the cells whose centre is):
   predicted IoU (``> --pred-iou-thresh``, 0.88), stability score (``>= --stability-score-thresh``, 0.95; offset
   1.0), non-empty;
5. greedy NMS by predicted IoU: mask IoU on the low-res masks (``--nms mask``, SegEvery's default) or box IoU
   (``--nms box``, SAM's AMG), threshold ``--nms-thresh`` 0.7;
6. only the survivors go to the image resolution (``Sam.postprocess_masks``): bilinear to SxS, crop the
   valid ``h x w`` region, bilinear to the original size, threshold at 0.

``segment_everything_onnx(image, encoder, decoder, ...)`` is the function form (it returns arrays).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import onnxruntime as ort

# SAM's pixel normalisation (Sam.pixel_mean / pixel_std, RGB in 0..255)
PIXEL_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
PIXEL_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)
# point_labels of decoder.onnx
LABEL_PAD, LABEL_NEG, LABEL_POS, LABEL_BOX_TL, LABEL_BOX_BR = -1, 0, 1, 2, 3
# prompt form -> mask tokens read from low_res_masks / iou_predictions (token 0: single mask; 1..3: multimask)
MASK_TOKENS = {"point+box": [0], "box": [0], "point": [1, 2, 3]}
MASK_THRESHOLD = 0.0


# ----------------------------------------------------------------------------------------------- pre-processing
def preprocess_shape(h: int, w: int, size: int) -> Tuple[int, int]:
    """``ResizeLongestSide.get_preprocess_shape``: ``(h, w)`` with the longest side scaled to ``size``."""
    scale = size / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def _aa_taps(in_size: int, out_size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Source indices and weights ``[out, K]`` of PyTorch's antialiased bilinear resize along one axis
    (``F.interpolate(..., antialias=True)``, PIL's filter): a triangle widened by the scale when shrinking."""
    scale = in_size / out_size
    support = scale if scale >= 1.0 else 1.0
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    taps = int(math.ceil(support)) * 2 + 1
    idx = np.zeros((out_size, taps), dtype=np.int64)
    weights = np.zeros((out_size, taps), dtype=np.float64)
    for i in range(out_size):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        j = np.arange(lo, hi)
        w = np.clip(1.0 - np.abs((j - center + 0.5) * inv), 0.0, None)
        idx[i, : len(j)] = j
        weights[i, : len(j)] = w / w.sum() if w.sum() > 0 else w
    return idx, weights.astype(np.float32)


def resize_antialiased(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """``HxWxC`` -> ``out_h x out_w x C`` float32, as ``F.interpolate(bilinear, align_corners=False,
    antialias=True)`` (what litesam_pl and SAM's ``ResizeLongestSide.apply_image_torch`` use), width then height.
    OpenCV's ``INTER_AREA`` / ``INTER_LINEAR`` differ by up to tens of grey levels, enough to move prompts."""
    x = image.astype(np.float32)
    idx, w = _aa_taps(x.shape[1], out_w)
    x = sum(x[:, idx[:, k]] * w[None, :, k, None] for k in range(idx.shape[1]))
    idx, w = _aa_taps(x.shape[0], out_h)
    return sum(x[idx[:, k]] * w[:, k, None, None] for k in range(idx.shape[1]))


def preprocess(image: np.ndarray, size: int) -> Tuple[np.ndarray, Tuple[int, int]]:
    """RGB uint8 ``HxWx3`` -> normalised, zero-padded ``[1, 3, size, size]`` float32 and the resized ``(h, w)``."""
    h, w = image.shape[:2]
    nh, nw = preprocess_shape(h, w, size)
    x = image.astype(np.float32) if (nh, nw) == (h, w) else resize_antialiased(image, nh, nw)
    x = (x - PIXEL_MEAN) / PIXEL_STD
    out = np.zeros((1, 3, size, size), dtype=np.float32)
    out[0, :, :nh, :nw] = x.transpose(2, 0, 1)
    return out, (nh, nw)


# ------------------------------------------------------------------------------------------------------ prompts
def prompt_tensors(points: np.ndarray, boxes: np.ndarray, form: str) -> Tuple[np.ndarray, np.ndarray]:
    """Points ``[N, 2]`` and boxes ``[N, 4]`` (xyxy, input pixels) -> ``point_coords [N, P, 2]`` and
    ``point_labels [N, P]`` float32 for decoder.onnx (``litesam_pl.inference.segevery_prompts.prompt_tensors``)."""
    n = points.shape[0]
    if form == "point":
        coords = np.stack([points, np.zeros_like(points)], axis=1)
        labels = np.tile(np.array([LABEL_POS, LABEL_PAD], np.float32), (n, 1))
    elif form == "box":
        coords = boxes.reshape(n, 2, 2)
        labels = np.tile(np.array([LABEL_BOX_TL, LABEL_BOX_BR], np.float32), (n, 1))
    elif form == "point+box":
        coords = np.concatenate([points[:, None], boxes.reshape(n, 2, 2)], axis=1)
        labels = np.tile(np.array([LABEL_POS, LABEL_BOX_TL, LABEL_BOX_BR], np.float32), (n, 1))
    else:
        raise ValueError(f"unknown prompt form {form!r}; use one of {tuple(MASK_TOKENS)}")
    return coords.astype(np.float32), labels


# ---------------------------------------------------------------------------------------------- post-processing
def inside_cells(extent: int, frame: int, cells: int) -> int:
    """How many of ``cells`` cells tiling ``frame`` input pixels have their centre ``(i + 0.5) * frame / cells``
    inside an image ``extent`` pixels long: the image part of the low-res frame (a copy of
    ``litesam_pl.data.geometry.inside_cells``, the one padding-cell rule; this file imports no litesam_pl)."""
    if cells <= 0:
        return 0
    return int(min(cells, max(0, -((frame - 2 * extent * cells) // (2 * frame)))))


def stability_score(logits: np.ndarray, threshold: float = MASK_THRESHOLD, offset: float = 1.0) -> np.ndarray:
    """SAM's stability score of ``[K, h, w]`` logits: IoU of the masks at ``threshold +- offset`` (0 if empty)."""
    inter = (logits > threshold + offset).reshape(len(logits), -1).sum(1).astype(np.float64)
    union = (logits > threshold - offset).reshape(len(logits), -1).sum(1).astype(np.float64)
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0).astype(np.float32)


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """bool ``[K, H, W]`` -> ``[K, 4]`` xyxy with inclusive max indices (SAM's ``batched_mask_to_box``; 0 if empty)."""
    out = np.zeros((len(masks), 4), dtype=np.float32)
    for k, m in enumerate(masks):
        ys, xs = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
        if len(xs):
            out[k] = [xs[0], ys[0], xs[-1], ys[-1]]
    return out


def _greedy_nms(iou: np.ndarray, threshold: float) -> np.ndarray:
    """Items sorted by descending score; keep ``i`` unless a kept ``j < i`` has ``iou[i, j] > threshold``."""
    keep: List[int] = []
    for i in range(len(iou)):
        if not keep or not (iou[i, keep] > threshold).any():
            keep.append(i)
    return np.array(keep, dtype=np.int64)


def mask_nms(masks: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy NMS on mask IoU (bool ``[K, h, w]``) -> kept indices by descending score."""
    order = np.argsort(-scores, kind="stable")
    flat = masks[order].reshape(len(order), -1).astype(np.float32)
    inter = flat @ flat.T
    area = flat.sum(1)
    union = area[:, None] + area[None, :] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1e-6), 0.0)
    return order[_greedy_nms(iou, threshold)]


def box_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy NMS on box IoU (xyxy, area ``(x1 - x0) * (y1 - y0)`` as torchvision) -> kept indices by score."""
    order = np.argsort(-scores, kind="stable")
    b = boxes[order].astype(np.float64)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(b[:, None, :2], b[None, :, :2])
    rb = np.minimum(b[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    union = area[:, None] + area[None, :] - inter
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return order[_greedy_nms(iou, threshold)]


def upsample_logits(low: np.ndarray, size: int, input_hw: Tuple[int, int], original_hw: Tuple[int, int]) -> np.ndarray:
    """``Sam.postprocess_masks`` on one ``[S/4, S/4]`` logit map: bilinear to ``SxS``, crop the resized image,
    bilinear to the original ``(H, W)`` (``INTER_LINEAR`` = ``F.interpolate(bilinear, align_corners=False)``)."""
    x = cv2.resize(low.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    x = np.ascontiguousarray(x[: input_hw[0], : input_hw[1]])
    if x.shape != tuple(original_hw):
        x = cv2.resize(x, (original_hw[1], original_hw[0]), interpolation=cv2.INTER_LINEAR)
    return x


def rle_encode(mask: np.ndarray) -> Dict[str, Any]:
    """bool ``[H, W]`` -> uncompressed COCO RLE ``{"size": [H, W], "counts": [...]}`` (column-major runs, the
    first run counts zeros; ``pycocotools.mask.frPyObjects`` reads it, as SAM's ``uncompressed_rle`` output)."""
    flat = mask.T.reshape(-1).astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(edges).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


# ------------------------------------------------------------------------------------------------------ pipeline
class _PhaseClock:
    """Adds the seconds since the previous mark to ``timings[name]`` (``cv2.getTickCount``; no-op without a dict)."""

    def __init__(self, timings: Optional[Dict[str, float]]) -> None:
        self.timings = timings
        self.last = cv2.getTickCount()

    def __call__(self, name: str) -> None:
        if self.timings is None:
            return
        now = cv2.getTickCount()
        self.timings[name] = self.timings.get(name, 0.0) + (now - self.last) / cv2.getTickFrequency()
        self.last = now


def load_sessions(onnx_dir: str | Path, providers: Optional[Sequence[str]] = None, threads: Optional[int] = None):
    """``(encoder, decoder)`` onnxruntime sessions of ``DIR/encoder.onnx`` and ``DIR/decoder.onnx``; ``threads``:
    onnxruntime's intra-op threads (None: its default, one per core)."""
    onnx_dir = Path(onnx_dir)
    paths = [onnx_dir / "encoder.onnx", onnx_dir / "decoder.onnx"]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no {' / '.join(missing)}: write them with litesam export --ckpt X --onnx {onnx_dir}")
    providers = list(providers or ["CPUExecutionProvider"])
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    return tuple(ort.InferenceSession(str(p), sess_options=options, providers=providers) for p in paths)


def segment_everything_onnx(
    image: np.ndarray,
    encoder: ort.InferenceSession,
    decoder: ort.InferenceSession,
    *,
    prompt_form: str = "point+box",
    score_thresh: float = 0.05,
    pred_iou_thresh: float = 0.88,
    stability_score_thresh: float = 0.95,
    stability_score_offset: float = 1.0,
    nms: str = "mask",
    nms_thresh: float = 0.7,
    nms_resolution: int = 64,
    max_masks: Optional[int] = None,
    timings: Optional[Dict[str, float]] = None,
) -> Dict[str, Any]:
    """Masks of an RGB uint8 ``HxWx3`` image (one long function on purpose: the module's steps 1-6 in order, to
    be read top to bottom next to ``docs/onnx.md``). Returns a dict of arrays: ``masks`` bool ``[K, H, W]`` sorted by
    predicted IoU, ``iou_preds``, ``stability_scores``, ``boxes`` (xyxy, inclusive), ``areas``, ``points [K, 2]``
    and ``ppn_scores`` (the AutoPPN score of each mask's prompt), in image pixels; plus ``prompts`` (the count
    given to the decoder), ``input_size`` and the decoder's ``point_coords`` / ``point_labels``. A threshold
    of 0 switches that filter off (as SAM's automatic mask generator); ``nms="none"`` skips the NMS.
    ``timings`` (a dict) receives the seconds of each phase, summed over calls: ``preprocess``, ``encoder``
    (encoder + AutoPPN), ``prompts``, ``decoder`` and ``postprocess`` (``benchmarks.segevery`` reads them)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 HxWx3 image, got {image.dtype} {image.shape}")
    if prompt_form not in MASK_TOKENS:
        raise ValueError(f"unknown prompt form {prompt_form!r}; use one of {tuple(MASK_TOKENS)}")
    enc_inputs = [i.name for i in encoder.get_inputs()]
    if "input_size" not in enc_inputs:
        raise ValueError("this encoder.onnx has no AutoPPN head (its only output is image_embeddings): export a "
                         "model with AutoPPN (litesam), or prompt decoder.onnx with your own points")
    size = int(encoder.get_inputs()[0].shape[-1])
    h0, w0 = image.shape[:2]
    clock = _PhaseClock(timings)

    # 1-2. pre-processing and encoder (+ AutoPPN prompts)
    pixels, (nh, nw) = preprocess(image, size)
    clock("preprocess")
    names = [o.name for o in encoder.get_outputs()]
    enc = dict(zip(names, encoder.run(None, {"image": pixels, "input_size": np.array([nh, nw], np.int64)})))
    clock("encoder")
    keep = enc["valid"][0] & (enc["scores"][0] >= score_thresh)
    points, boxes, ppn = enc["points"][0][keep], enc["boxes"][0][keep], enc["scores"][0][keep]

    # 3. decoder: all prompts in one call, then the mask token(s) of the prompt form
    coords, labels = prompt_tensors(points, boxes, prompt_form)
    tokens = MASK_TOKENS[prompt_form]
    lh = lw = size // 4
    clock("prompts")
    if len(points):
        low, iou = decoder.run(None, {"image_embeddings": enc["image_embeddings"], "point_coords": coords,
                                      "point_labels": labels})
        lh, lw = low.shape[-2:]
        low, iou = low[:, tokens].reshape(-1, lh, lw), iou[:, tokens].reshape(-1)
    else:
        low, iou = np.zeros((0, lh, lw), np.float32), np.zeros(0, np.float32)
    clock("decoder")
    src = np.repeat(np.arange(len(points)), len(tokens))  # the prompt of each mask

    # 4. filters on the low-res logits of the image region (the padding is cropped away)
    vh, vw = inside_cells(nh, size, lh), inside_cells(nw, size, lw)
    crop = low[:, :vh, :vw]
    ok = iou > pred_iou_thresh if pred_iou_thresh > 0 else np.ones(len(iou), bool)
    stab = stability_score(crop, MASK_THRESHOLD, stability_score_offset)
    if stability_score_thresh > 0:
        ok &= stab >= stability_score_thresh
    binary = crop > MASK_THRESHOLD
    ok &= binary.reshape(len(binary), -1).any(1)
    idx = np.flatnonzero(ok)

    # 5. NMS ranked by predicted IoU
    if len(idx) == 0:
        order = idx
    elif nms == "mask":
        step = max(1, math.ceil(max(vh, vw) / nms_resolution)) if nms_resolution > 0 else 1
        order = idx[mask_nms(binary[idx][:, ::step, ::step], iou[idx], nms_thresh)]
    elif nms == "box":
        order = idx[box_nms(masks_to_boxes(binary[idx]), iou[idx], nms_thresh)]
    elif nms == "none":
        order = idx[np.argsort(-iou[idx], kind="stable")]
    else:
        raise ValueError(f"nms must be 'mask', 'box' or 'none', got {nms!r}")
    if max_masks is not None:
        order = order[: int(max_masks)]

    # 6. survivors only: to the original resolution, threshold at 0
    masks = np.zeros((len(order), h0, w0), dtype=bool)
    for k, i in enumerate(order):
        masks[k] = upsample_logits(low[i], size, (nh, nw), (h0, w0)) > MASK_THRESHOLD
    scale = np.array([w0 / nw, h0 / nh], np.float32)
    boxes_out = masks_to_boxes(masks)
    clock("postprocess")
    return {
        "masks": masks,
        "iou_preds": iou[order],
        "stability_scores": stab[order],
        "boxes": boxes_out,
        "areas": masks.sum((1, 2)),
        "points": points[src[order]] * scale if len(order) else np.zeros((0, 2), np.float32),
        "ppn_scores": ppn[src[order]],
        "prompts": int(len(points)),
        "input_size": (nh, nw),
        "point_coords": coords,
        "point_labels": labels,
    }


def records(result: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The JSON records (SAM's automatic-mask-generator fields, + ``ppn_score``; ``bbox`` is XYWH)."""
    out = []
    for k, m in enumerate(result["masks"]):
        x0, y0, x1, y1 = (float(v) for v in result["boxes"][k])
        out.append({
            "segmentation": rle_encode(m),
            "area": int(result["areas"][k]),
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "predicted_iou": float(result["iou_preds"][k]),
            "stability_score": float(result["stability_scores"][k]),
            "point_coords": [[float(v) for v in result["points"][k]]],
            "ppn_score": float(result["ppn_scores"][k]),
        })
    return out


def overlay(image: np.ndarray, masks: np.ndarray, alpha: float = 0.5, seed: int = 0) -> np.ndarray:
    """RGB uint8 image with each mask filled in a random colour and outlined; large masks drawn first."""
    out = image.astype(np.float32)
    rng = np.random.default_rng(seed)
    colours = rng.integers(40, 256, (len(masks), 3)).astype(np.float32)
    areas = masks.sum((1, 2))
    for k in np.argsort(-areas, kind="stable"):
        m = masks[k]
        out[m] = (1 - alpha) * out[m] + alpha * colours[k]
    out = out.clip(0, 255).astype(np.uint8)
    for k in range(len(masks)):
        contours, _ = cv2.findContours(masks[k].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, tuple(int(c) for c in colours[k] * 0.6), 1)
    return out


def load_image(path: str | Path) -> np.ndarray:
    """RGB uint8 ``HxWx3`` (OpenCV applies the EXIF orientation; grey and alpha images become RGB)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read an image from {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description="Segment everything in IMAGE with Lite-SAM's ONNX graphs (litesam export --onnx DIR); "
        "numpy + OpenCV + onnxruntime only. Writes an overlay PNG and a JSON of the masks.",
    )
    parser.add_argument("image", help="an image file (jpg, png, ...)")
    parser.add_argument("--onnx", required=True, metavar="DIR", help="folder with encoder.onnx and decoder.onnx")
    parser.add_argument("--out", help="overlay PNG (default: IMAGE's name + _overlay.png in the current folder)")
    parser.add_argument("--json", help="masks JSON (default: --out with .json)")
    parser.add_argument("--prompt-form", default="point+box", choices=tuple(MASK_TOKENS),
                        help="what the decoder is given per AutoPPN proposal (default: point+box, SegEvery's)")
    parser.add_argument("--score-thresh", type=float, default=0.05, help="AutoPPN point score threshold (default 0.05; 0: every proposal)")
    parser.add_argument("--pred-iou-thresh", type=float, default=0.88, help="predicted-IoU filter (default 0.88; 0: off)")
    parser.add_argument("--stability-score-thresh", type=float, default=0.95, help="stability-score filter (default 0.95; 0: off)")
    parser.add_argument("--nms", default="mask", choices=("mask", "box", "none"), help="mask IoU on the low-res masks (default, as SegEvery), box IoU (SAM's AMG) or none")
    parser.add_argument("--nms-thresh", type=float, default=0.7, help="NMS IoU threshold (default 0.7)")
    parser.add_argument("--max-masks", type=int, default=None, help="keep at most this many masks (default: all)")
    parser.add_argument("--providers", nargs="+", default=["CPUExecutionProvider"],
                        help="onnxruntime execution providers, in order of preference (default: CPUExecutionProvider)")
    parser.add_argument("--threads", type=int, default=None,
                        help="onnxruntime intra-op threads (default: onnxruntime's, one per core)")
    args = parser.parse_args(argv)
    try:
        image = load_image(args.image)
        encoder, decoder = load_sessions(args.onnx, args.providers, args.threads)
        res = segment_everything_onnx(
            image, encoder, decoder, prompt_form=args.prompt_form, score_thresh=args.score_thresh,
            pred_iou_thresh=args.pred_iou_thresh, stability_score_thresh=args.stability_score_thresh,
            nms=args.nms, nms_thresh=args.nms_thresh, max_masks=args.max_masks,
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"onnx_segment_everything: error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(Path(args.image).stem + "_overlay.png")
    js = Path(args.json) if args.json else out.with_suffix(".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    js.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), cv2.cvtColor(overlay(image, res["masks"]), cv2.COLOR_RGB2BGR)):
        print(f"onnx_segment_everything: error: cannot write {out}", file=sys.stderr)
        return 2
    h, w = image.shape[:2]
    js.write_text(json.dumps({"image": str(args.image), "size": [h, w], "prompts": res["prompts"],
                              "masks": records(res)}))
    print(f"{args.image}: {len(res['masks'])} masks from {res['prompts']} prompts -> {out}, {js}")
    if not len(res["masks"]) and res["prompts"]:
        print("  no mask passed the filters; to keep more, try --pred-iou-thresh 0.5 --stability-score-thresh 0.8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
