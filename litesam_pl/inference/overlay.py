"""Overlay pictures of SegEvery masks: translucent random-colour fills, an outline per mask and a caption band.

As SAM's ``show_anns`` / SAM 2's ``show_mask(borders=True)`` and ultralytics: each mask is filled with a random
colour (largest first, so small masks stay visible) and outlined (``cv2.findContours`` / ``drawContours``; a white
outline, or a dark one over a bright fill). ``draw_caption`` writes text lines into a dark translucent band at the
top of the picture (the picture keeps its size); ``alerts`` lines (random weights, why there are no masks) are
drawn in amber after the plain lines.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

__all__ = ["draw_masks", "draw_caption", "draw_overlay", "OUTLINE_LIGHT", "OUTLINE_DARK"]

RGB = Tuple[int, int, int]
OUTLINE_LIGHT: RGB = (255, 255, 255)
OUTLINE_DARK: RGB = (16, 16, 16)
TEXT: RGB = (255, 255, 255)
ALERT: RGB = (255, 196, 0)
_FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX


def _outline_width(shape: Sequence[int]) -> int:
    """Outline thickness in pixels: 1 up to ~750 px, then growing with the longer side."""
    return max(1, round(max(shape[:2]) / 750))


def _outline_colour(fill: np.ndarray) -> RGB:
    """White over a dark or mid fill, near-black over a bright one (``fill``: the mask's pixels, ``[K, 3]``)."""
    if fill.size == 0:
        return OUTLINE_LIGHT
    r, g, b = fill.reshape(-1, 3).mean(0)
    return OUTLINE_DARK if 0.299 * r + 0.587 * g + 0.114 * b > 170 else OUTLINE_LIGHT


def draw_masks(image: np.ndarray, masks: Sequence[np.ndarray], alpha: float = 0.5, seed: int = 0,
               outline: bool = True) -> np.ndarray:
    """Blend a random colour per mask over ``image`` (``HxWx3`` uint8; largest masks first) and outline each mask
    (after all fills, so no fill hides an outline). Returns a new ``HxWx3`` uint8 array."""
    import cv2

    out = image.astype(np.float32).copy()
    rng = np.random.default_rng(seed)
    order = sorted(range(len(masks)), key=lambda i: -int(masks[i].sum()))
    colours = rng.integers(40, 256, size=(len(masks), 3)).astype(np.float32)
    for rank, i in enumerate(order):
        m = masks[i].astype(bool)
        out[m] = (1 - alpha) * out[m] + alpha * colours[rank]
    out = np.ascontiguousarray(np.clip(out, 0, 255).round().astype(np.uint8))
    if not outline:
        return out
    width = _outline_width(out.shape)
    for i in order:
        m = np.ascontiguousarray(masks[i], dtype=np.uint8)
        if not m.any():
            continue
        contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, _outline_colour(out[m.astype(bool)]), thickness=width)
    return out


def _font_scale(width: int) -> float:
    """Text scale for a picture ``width`` px wide (~0.46 at 640 px, within 0.35..1.0)."""
    return float(min(1.0, max(0.35, width / 1400)))


def _wrap(line: str, max_px: int, scale: float, thickness: int) -> List[str]:
    """Split ``line`` at spaces into pieces at most ``max_px`` wide (a single over-long word stays whole)."""
    import cv2

    pieces: List[str] = []
    current = ""
    for word in line.split(" "):
        trial = word if not current else f"{current} {word}"
        if current and cv2.getTextSize(trial, _FONT, scale, thickness)[0][0] > max_px:
            pieces.append(current)
            current = word
        else:
            current = trial
    pieces.append(current)
    return pieces


def draw_caption(image: np.ndarray, lines: Sequence[str] = (), alerts: Sequence[str] = ()) -> np.ndarray:
    """Write ``lines`` (white) then ``alerts`` (amber) into a dark translucent band across the top of ``image``,
    wrapped to its width. Text is ASCII (cv2's Hershey font). Returns a new array of the same size."""
    import cv2

    out = np.ascontiguousarray(image, dtype=np.uint8).copy()
    h, w = out.shape[:2]
    items = [(s, TEXT) for s in lines if s] + [(s, ALERT) for s in alerts if s]
    if not items or h == 0 or w == 0:
        return out
    scale = _font_scale(w)
    thick = 1 if scale < 0.8 else 2
    pad = max(2, round(6 * scale))
    (_, text_h), base = cv2.getTextSize("Ag", _FONT, scale, thick)
    step = text_h + base + pad
    wrapped = [(piece, colour) for s, colour in items for piece in _wrap(s, w - 2 * pad, scale, thick)]
    band = min(h, pad + step * len(wrapped))
    out[:band] = (out[:band].astype(np.float32) * 0.3).round().astype(np.uint8)
    for k, (piece, colour) in enumerate(wrapped):
        y = pad + text_h + k * step
        cv2.putText(out, piece, (pad, y), _FONT, scale, colour, thick, cv2.LINE_AA)
    return out


def draw_overlay(image: np.ndarray, masks: Sequence[np.ndarray], alpha: float = 0.5, seed: int = 0,
                 lines: Sequence[str] = (), alerts: Sequence[str] = ()) -> np.ndarray:
    """``draw_masks`` then ``draw_caption``: the picture ``litesam segment-everything`` saves per image."""
    return draw_caption(draw_masks(image, masks, alpha=alpha, seed=seed), lines, alerts)
