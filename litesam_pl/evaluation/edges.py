"""Edge maps for the BSDS500 zero-shot edge benchmark (Lite-SAM Table 7).

- ``mask_edge_map``: the SAM protocol (Kirillov et al. 2023, App. D.2): a Sobel filter on each SegEvery mask's
  unthresholded probability map, kept only on the mask's outer boundary pixels, pixel-wise max over masks,
  linear normalisation to [0, 1], then edge NMS (the Structured Edge toolbox's, as used by HED/RCF/SAM; the
  bench thins the thresholded maps afterwards).
- ``sobel_edges`` / ``canny_edges``: the classical rows of Table 7 as soft maps in [0, 1].
- ``segevery_probability_maps`` / ``edge_map_from_model``: the glue from a Lite-SAM / SAM model to the above.
- ``box_probability_maps`` / ``box_fill_maps``: the same maps from given box prompts (the oracle diagnostic of
  ``benchmarks.bsds --prompts gt-boxes``) and the boxes themselves filled (its reference row).

All maps are float32 [H, W] numpy arrays in [0, 1].
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Union

import numpy as np

__all__ = [
    "sobel_magnitude",
    "outer_boundary",
    "normalize_edges",
    "edge_nms",
    "mask_edge_map",
    "sobel_edges",
    "canny_edges",
    "DETECTORS",
    "segevery_probability_maps",
    "box_probability_maps",
    "box_fill_maps",
    "edge_map_from_model",
]

ArrayLike = Union[np.ndarray, "torch.Tensor", Sequence[np.ndarray]]  # noqa: F821


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def _stack_maps(maps: ArrayLike, name: str) -> np.ndarray:
    if isinstance(maps, (list, tuple)):
        if len(maps) == 0:
            return np.zeros((0, 0, 0), dtype=np.float32)
        arr = np.stack([_to_numpy(m) for m in maps])
    else:
        arr = _to_numpy(maps)
        if arr.ndim == 2:
            arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"{name} must be [N, H, W] (or a list of [H, W]), got shape {arr.shape}")
    return arr


def _gray(image: np.ndarray) -> np.ndarray:
    """float32 [H, W] in [0, 1] from uint8/float RGB [H, W, 3] or gray [H, W]."""
    import cv2

    img = _to_numpy(image)
    if img.ndim == 3 and img.shape[2] == 3:
        src = img if img.dtype == np.uint8 else img.astype(np.float32)
        img = cv2.cvtColor(src, cv2.COLOR_RGB2GRAY)
    elif img.ndim != 2:
        raise ValueError(f"image must be RGB [H, W, 3] or gray [H, W], got shape {img.shape}")
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    img = img.astype(np.float32)
    return img / 255.0 if img.max() > 1.0 else img


def sobel_magnitude(x: np.ndarray) -> np.ndarray:
    """Gradient magnitude ``sqrt(Gx^2 + Gy^2)`` of 3x3 Sobel filters (replicated border), float32 [H, W]."""
    import cv2

    x = np.asarray(x, dtype=np.float32)
    gx = cv2.Sobel(x, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(x, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
    return np.sqrt(gx * gx + gy * gy)


def outer_boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels outside ``mask`` that touch it (8-neighbourhood): ``dilate3x3(mask) & ~mask``, bool [H, W]."""
    import cv2

    m = np.asarray(mask, dtype=bool)
    dil = cv2.dilate(m.astype(np.uint8), np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return (dil > 0) & ~m


def normalize_edges(e: np.ndarray) -> np.ndarray:
    """Linear map of ``e`` onto [0, 1] (``(e - min) / (max - min)``); all zeros for a constant map."""
    e = np.asarray(e, dtype=np.float32)
    if e.size == 0:
        return e
    lo, hi = float(e.min()), float(e.max())
    if hi <= lo:
        return np.zeros_like(e)
    return (e - lo) / (hi - lo)


def edge_nms(e: np.ndarray, r: int = 1, s: int = 5, m: float = 1.01) -> np.ndarray:
    """Edge NMS of the Structured Edge toolbox (``edgesNmsMex`` after ``convTri``), via pyEdgeEval's build.

    Orientation from second derivatives of the triangle-smoothed map; suppression radius ``r``, border
    suppression ``s`` pixels, multiplier ``m``. float32 [H, W].
    """
    from pyEdgeEval.preprocess import fast_nms

    e = np.asarray(e, dtype=np.float64)
    if e.size == 0 or not e.any():
        return e.astype(np.float32)
    return np.clip(fast_nms(e, r=r, s=s, m=m), 0.0, None).astype(np.float32)


def mask_edge_map(
    probs: ArrayLike,
    masks: Optional[ArrayLike] = None,
    mask_threshold: float = 0.5,
    nms: bool = True,
    shape: Optional[Sequence[int]] = None,
) -> np.ndarray:
    """SAM App. D.2 edge map from per-mask probability maps.

    Args:
        probs: N unthresholded mask probability maps (sigmoid of the mask logits), [N, H, W] or a list of [H, W].
        masks: the binary masks whose outer boundary keeps the Sobel response; default ``probs > mask_threshold``.
        mask_threshold: binarisation of ``probs`` when ``masks`` is not given (SAM's logit 0 = probability 0.5).
        nms: apply edge NMS (and rescale to [0, 1]) after the normalisation.
        shape: (H, W) of the output when there are no masks (an all-zero map).

    Returns:
        float32 [H, W] in [0, 1].
    """
    p = _stack_maps(probs, "probs").astype(np.float32)
    if p.shape[0] == 0:
        if shape is None:
            raise ValueError("no masks given and no output shape")
        return np.zeros(tuple(shape), dtype=np.float32)
    mk = p > mask_threshold if masks is None else _stack_maps(masks, "masks").astype(bool)
    if mk.shape != p.shape:
        raise ValueError(f"masks have shape {mk.shape}, probs {p.shape}")
    edges = np.zeros(p.shape[1:], dtype=np.float32)
    for prob, mask in zip(p, mk):
        if not mask.any():
            continue
        ob = outer_boundary(mask)
        np.maximum(edges, np.where(ob, sobel_magnitude(prob), 0.0), out=edges)
    edges = normalize_edges(edges)
    if nms:
        edges = normalize_edges(edge_nms(edges))
    return edges


def sobel_edges(image: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Classical Sobel detector: magnitude of 3x3 Sobel gradients of the (Gaussian-blurred) gray image.

    Args:
        image: RGB uint8 [H, W, 3] (or gray [H, W]).
        sigma: Gaussian pre-smoothing in pixels (0 disables it).

    Returns:
        float32 [H, W] in [0, 1] (divided by its maximum).
    """
    import cv2

    g = _gray(image)
    if sigma > 0:
        g = cv2.GaussianBlur(g, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REPLICATE)
    return normalize_edges(sobel_magnitude(g))


def _canny_nms(mag: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Canny non-maximum suppression along the gradient, neighbours sampled by bilinear interpolation."""
    from scipy.ndimage import map_coordinates

    h, w = mag.shape
    nz = mag > 0
    safe = np.where(nz, mag, 1.0)
    dx, dy = gx / safe, gy / safe
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    fwd = map_coordinates(mag, [yy + dy, xx + dx], order=1, mode="nearest")
    bwd = map_coordinates(mag, [yy - dy, xx - dx], order=1, mode="nearest")
    return np.where(nz & (mag >= fwd) & (mag > bwd), mag, 0.0).astype(np.float32)


def canny_edges(image: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Classical Canny detector as a soft map: Gaussian smoothing, Sobel gradients, non-maximum suppression.

    The hysteresis thresholds are replaced by the benchmark's threshold sweep (the usual soft-Canny setup of
    BSDS comparisons), so the output is the suppressed gradient magnitude.

    Args:
        image: RGB uint8 [H, W, 3] (or gray [H, W]).
        sigma: Gaussian scale in pixels.

    Returns:
        float32 [H, W] in [0, 1] (divided by its maximum).
    """
    import cv2

    g = _gray(image)
    if sigma > 0:
        g = cv2.GaussianBlur(g, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REPLICATE)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
    mag = np.sqrt(gx * gx + gy * gy)
    return normalize_edges(_canny_nms(mag, gx, gy))


DETECTORS = {"sobel": sobel_edges, "canny": canny_edges}


# --------------------------------------------------------------------------------------------------------------
# Model glue
# --------------------------------------------------------------------------------------------------------------


def segevery_probability_maps(
    model,
    image: np.ndarray,
    prompts: str = "auto",
    points_per_side: int = 16,
    box_nms_thresh: float = 0.7,
    nms: str = "box",
) -> Dict[str, Any]:
    """Per-mask probability maps of SegEvery at the image's size, without IoU/stability filters (SAM App. D.2).

    Runs ``segevery.segment_everything(model, ...)`` with ``output_mode="tensors", return_logits=True`` and the
    quality filters off, NMS ``nms`` at ``box_nms_thresh`` (SAM's AMG: box NMS 0.7).

    Args:
        model: a ``Sam``-like model (LiteSAM, SAM-B + AutoPPN, ``segment_anything.Sam``).
        image: uint8 RGB [H, W, 3].
        prompts: ``"autoppn"`` (Lite-SAM's SegEvery), ``"grid"`` (SAM App. D.2: ``points_per_side``^2 points,
            3 masks each) or ``"auto"`` (AutoPPN when the model has one).

    Returns:
        ``{"probs": float32 [N, H, W] in [0, 1], "masks": bool [N, H, W], "source": str}``.
    """
    if prompts not in ("auto", "autoppn", "grid"):
        raise ValueError(f"prompts must be auto, autoppn or grid, got {prompts!r}")
    if prompts == "auto":
        prompts = "autoppn" if getattr(model, "autoppn", None) is not None else "grid"
    h, w = image.shape[:2]
    from litesam_pl.inference import segevery  # torch: imported on first use, so the classical detectors need none

    out = segevery.segment_everything(
        model,
        image,
        prompts=prompts,
        points_per_side=points_per_side,
        pred_iou_thresh=float("-inf"),  # App. D.2: no predicted-IoU filter (segevery keeps iou > thresh)
        stability_score_thresh=float("-inf"),  # ... and no stability filter
        box_nms_thresh=box_nms_thresh,
        nms=nms,
        output_mode="tensors",
        return_logits=True,
    )
    if len(out["probs"]) == 0:
        return {"probs": np.zeros((0, h, w), np.float32), "masks": np.zeros((0, h, w), bool),
                "source": f"segment_everything:{prompts}"}
    probs = _stack_maps(out["probs"], "probs").astype(np.float32)
    masks = _stack_maps(out["masks"], "masks").astype(bool)
    if probs.shape[1:] != (h, w) or masks.shape != probs.shape:
        raise ValueError(f"segment_everything returned maps {probs.shape} / {masks.shape} for a {(h, w)} image")
    return {"probs": probs, "masks": masks, "source": f"segment_everything:{prompts}"}


def _check_boxes(boxes: np.ndarray) -> np.ndarray:
    """``boxes`` as float32 xyxy [K, 4]; ValueError for any other shape."""
    b = np.asarray(boxes, dtype=np.float32)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must be [K, 4] xyxy, got shape {b.shape}")
    return b


def box_probability_maps(model, image: np.ndarray, boxes: np.ndarray, max_prompts_per_call: int = 64
                         ) -> Dict[str, Any]:
    """Per-box mask probability maps at the image's size: one single-mask decoder output per box prompt.

    The 1-box protocol of ``benchmarks.coco`` (``SamPredictor``, ``multimask_output=False``) with the logits kept
    (``evaluation.prompting.PromptPredictor`` returns thresholded masks only, hence this second path); the masks
    are ``logits > model.mask_threshold``, as SegEvery's.

    Args:
        model: a ``Sam``-like model.
        image: uint8 RGB [H, W, 3].
        boxes: xyxy [K, 4] in the image's pixels.
        max_prompts_per_call: boxes per decoder call (>= 1).

    Returns:
        ``{"probs": float32 [K, H, W] in [0, 1], "masks": bool [K, H, W], "source": "boxes"}``.
    """
    import torch
    from segment_anything import SamPredictor

    b = _check_boxes(boxes)
    if max_prompts_per_call < 1:
        raise ValueError(f"max_prompts_per_call must be >= 1, got {max_prompts_per_call}")
    h, w = image.shape[:2]
    if len(b) == 0:
        return {"probs": np.zeros((0, h, w), np.float32), "masks": np.zeros((0, h, w), bool), "source": "boxes"}
    predictor = SamPredictor(model)
    predictor.set_image(image, image_format="RGB")
    threshold = float(getattr(model, "mask_threshold", 0.0))
    probs, masks = [], []
    for start in range(0, len(b), max_prompts_per_call):
        chunk = torch.as_tensor(b[start:start + max_prompts_per_call], device=predictor.device)
        logits, _, _ = predictor.predict_torch(None, None, boxes=predictor.transform.apply_boxes_torch(chunk, (h, w)),
                                               multimask_output=False, return_logits=True)
        logits = logits[:, 0].float()
        probs.append(torch.sigmoid(logits).cpu().numpy())
        masks.append((logits > threshold).cpu().numpy())
    return {"probs": np.concatenate(probs).astype(np.float32), "masks": np.concatenate(masks), "source": "boxes"}


def box_fill_maps(boxes: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Each xyxy box filled as a binary probability map, float32 [K, H, W] (box fill, as a mask source)."""
    b = _check_boxes(boxes)
    h, w = int(shape[0]), int(shape[1])
    out = np.zeros((len(b), h, w), np.float32)
    for k, (x0, y0, x1, y1) in enumerate(np.round(b).astype(int)):
        out[k, max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)] = 1.0
    return out


def edge_map_from_model(model, image: np.ndarray, apply_edge_nms: bool = True, boxes: Optional[np.ndarray] = None,
                        **segevery_kwargs) -> np.ndarray:
    """SAM App. D.2 edge map of one RGB uint8 [H, W, 3] image from a SegEvery model, float32 [H, W] in [0, 1].

    ``segevery_kwargs`` go to ``segevery_probability_maps`` (prompts, points_per_side, box_nms_thresh, nms); with
    ``boxes`` (xyxy [K, 4]) the masks come from those box prompts instead (``box_probability_maps``, no NMS).
    """
    import torch

    with torch.inference_mode():
        if boxes is None:
            out = segevery_probability_maps(model, image, **segevery_kwargs)
        else:
            out = box_probability_maps(model, image, boxes)
    return mask_edge_map(out["probs"], out["masks"], nms=apply_edge_nms, shape=image.shape[:2])
