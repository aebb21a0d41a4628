"""Point and box prompts of ``litesam app``'s Prompt tab (no Gradio here): the prompt texts the clicks fill,
``SamPredictor`` on them (``sam_compat.predictor``, the path users call from Python, three multimask outputs), the
pictures and the records of the downloads."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .handlers import PageError, Photo, Slot, dot, marker_radius

__all__ = ["CLICK_KINDS", "PromptResult", "parse_points", "parse_box", "add_click", "run_prompt", "draw_prompts",
           "prompt_records"]

CLICK_KINDS = ("positive point", "negative point", "box corner")
POINT_COLOURS = {1: (40, 220, 60), 0: (230, 40, 40)}  # positive green, negative red


def parse_points(text: Optional[str]) -> Tuple[np.ndarray, np.ndarray]:
    """``[[x, y, label], ...]`` (label 1 positive, 0 negative; JSON) -> ``(coords [K, 2] float32, labels [K] int)``."""
    if text is None or not str(text).strip():
        return np.zeros((0, 2), np.float32), np.zeros(0, np.int64)
    try:
        items = json.loads(text)
        arr = np.asarray(items, dtype=np.float64).reshape(-1, 3) if items else np.zeros((0, 3))
    except (ValueError, TypeError):
        raise PageError(f"points must be a JSON list of [x, y, label] (label 1 positive, 0 negative), got "
                        f"{str(text)[:80]!r}") from None
    if not np.isfinite(arr).all() or not np.isin(arr[:, 2], (0, 1)).all():
        raise PageError("points: every point is [x, y, label] with finite x, y and label 1 (positive) or 0 "
                        "(negative)")
    return arr[:, :2].astype(np.float32), arr[:, 2].astype(np.int64)


def parse_box(text: Optional[str]) -> Optional[np.ndarray]:
    """``"x0, y0, x1, y1"`` -> xyxy float32 ``[4]`` (corners in any order); empty -> None."""
    if text is None or not str(text).strip():
        return None
    try:
        vals = [float(v) for v in str(text).replace("[", " ").replace("]", " ").replace(",", " ").split()]
    except ValueError:
        vals = []
    if len(vals) == 2:
        raise PageError("box: only one corner so far; click the opposite corner (or clear the box)")
    if len(vals) != 4 or not np.isfinite(vals).all():
        raise PageError(f"box must be 'x0, y0, x1, y1' in pixels, got {str(text)[:80]!r}")
    x0, y0, x1, y1 = vals
    box = np.array([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], np.float32)
    if box[2] - box[0] < 1 or box[3] - box[1] < 1:
        raise PageError("box: the two corners must differ in x and in y")
    return box


def add_click(points_text: Optional[str], box_text: Optional[str], x: float, y: float,
              kind: str) -> Tuple[str, str]:
    """A click at ``(x, y)``: a positive/negative point appended to the points, or a box corner (the first
    click of a box starts it, the second completes it, a third starts a new one). Returns the new texts."""
    if kind not in CLICK_KINDS:
        raise PageError(f"unknown click mode {kind!r}; use one of {', '.join(CLICK_KINDS)}")
    x, y = round(float(x)), round(float(y))
    if kind == "box corner":
        corner = [v for v in (box_text or "").replace(",", " ").split()]
        if len(corner) == 2:
            return points_text or "", f"{corner[0]}, {corner[1]}, {x}, {y}"
        return points_text or "", f"{x}, {y}"
    coords, labels = parse_points(points_text)
    items = [[int(round(a)), int(round(b)), int(lab)] for (a, b), lab in zip(coords.tolist(), labels.tolist())]
    items.append([x, y, 1 if kind == "positive point" else 0])
    return json.dumps(items), box_text or ""


@dataclass
class PromptResult:
    """``SamPredictor.predict(multimask_output=True)``: three masks ``[3, H, W]``, their predicted IoU and
    low-resolution logits, and the encoder (0.0: the photo was already embedded) and decoder milliseconds."""

    masks: np.ndarray
    ious: np.ndarray
    low_res: np.ndarray
    encoder_ms: float
    decoder_ms: float
    label: str


def run_prompt(slot: Slot, photo: Photo, coords: np.ndarray, labels: np.ndarray,
               box: Optional[np.ndarray]) -> PromptResult:
    """Points and/or a box through ``SamPredictor`` (``sam_compat.predictor``), as a user calls it from Python."""
    h, w = photo.image.shape[:2]
    if len(coords) == 0 and box is None:
        raise PageError("no prompt: click the photo to add a point, or two box corners")
    if len(coords) and ((coords < 0).any() or (coords[:, 0] > w).any() or (coords[:, 1] > h).any()):
        raise PageError(f"a point lies outside the {w}x{h} photo; clear the prompts after changing photos")
    if box is not None and (box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h):
        raise PageError(f"the box lies outside the {w}x{h} photo; clear the prompts after changing photos")
    with slot.lock:
        sam = slot.prompt_predictor()
        t0 = time.perf_counter()
        cached = slot.embed(photo.key, photo.image)
        t1 = time.perf_counter()
        masks, ious, low = sam.predict(
            point_coords=coords if len(coords) else None, point_labels=labels if len(coords) else None,
            box=box, multimask_output=True)
        t2 = time.perf_counter()
    return PromptResult(masks.astype(bool), ious.astype(np.float32), low, 0.0 if cached else (t1 - t0) * 1e3,
                        (t2 - t1) * 1e3, slot.label)


def draw_prompts(image: np.ndarray, coords: np.ndarray, labels: np.ndarray,
                 box: Optional[np.ndarray], corner: Optional[Sequence[float]] = None) -> np.ndarray:
    """The prompts over ``image``: green positive and red negative points, the box (and a lone first corner)."""
    import cv2

    out = np.ascontiguousarray(image, dtype=np.uint8).copy()
    r = marker_radius(out)
    if box is not None:
        p0, p1 = tuple(int(v) for v in box[:2]), tuple(int(v) for v in box[2:])
        cv2.rectangle(out, p0, p1, (0, 0, 0), max(2, r // 2) + 2)
        cv2.rectangle(out, p0, p1, (60, 160, 255), max(2, r // 2))
    if corner is not None:
        dot(out, corner, (60, 160, 255), r)
    for xy, lab in zip(coords, labels):
        dot(out, xy, POINT_COLOURS[int(lab)], r)
    return out


def prompt_records(result: PromptResult, coords: np.ndarray, box: Optional[np.ndarray]) -> List[Dict[str, Any]]:
    """The three masks as SA-1B-style records (COCO RLE, bbox, area, predicted IoU, stability score), best first."""
    from ..inference.postprocess import build_records, masks_to_boxes, stability_score

    order = np.argsort(-result.ious, kind="stable")
    masks = torch.from_numpy(result.masks[order])
    stab = stability_score(torch.from_numpy(np.asarray(result.low_res)[order]).float(), 0.0, 1.0)
    h, w = masks.shape[-2:]
    first = coords[0] if len(coords) else ((box[:2] + box[2:]) / 2 if box is not None else np.zeros(2))
    pts = torch.as_tensor(np.repeat(np.asarray(first, np.float32)[None], len(order), 0))
    records = build_records(masks, torch.from_numpy(result.ious[order]), stab, masks_to_boxes(masks), pts,
                            (int(h), int(w)), "coco_rle")
    for rec, i in zip(records, order.tolist()):
        rec["multimask_output"] = int(i)
        if box is not None:
            rec["box"] = [float(v) for v in box]
    return records
