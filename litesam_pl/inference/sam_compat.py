"""Helpers that wrap a ``Sam``-like model (LiteSAM, SAM-B with AutoPPN, stock ``Sam``) for SegEvery / SegAny.

- ``check_sam_like``: clear error when a model lacks SAM's attributes.
- ``preprocess_images``: list of ``HxWx3`` arrays or a tensor batch -> normalised, padded ``[B, 3, S, S]`` plus
  original and resized sizes (resize-longest-side with the same antialiased bilinear resize as
  ``ResizeLongestSide.apply_image_torch``; normalisation and padding by ``Sam.preprocess``).
- ``grid_points``: SAM's ``points_per_side`` grid in input-frame pixels, as ``SamAutomaticMaskGenerator`` uses it.
- ``automatic_mask_generator`` / ``predictor``: ``SamAutomaticMaskGenerator`` / ``SamPredictor`` on our models.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segment_anything import SamAutomaticMaskGenerator, SamPredictor
from segment_anything.utils.amg import build_point_grid
from segment_anything.utils.transforms import ResizeLongestSide

__all__ = [
    "PreparedImages",
    "check_sam_like",
    "model_device",
    "as_image_list",
    "preprocess_images",
    "grid_points",
    "automatic_mask_generator",
    "predictor",
]

ImagesLike = Union[np.ndarray, Tensor, Sequence[Union[np.ndarray, Tensor]]]


def check_sam_like(model: nn.Module) -> None:
    """Raise ``TypeError`` unless ``model`` has SAM's ``image_encoder`` (with ``img_size``), ``prompt_encoder``,
    ``mask_decoder``, ``preprocess``."""
    missing = [a for a in ("image_encoder", "prompt_encoder", "mask_decoder", "preprocess") if not hasattr(model, a)]
    if missing or not hasattr(getattr(model, "image_encoder", None), "img_size"):
        raise TypeError(
            f"{type(model).__name__} is not a SAM-like model (missing {missing or ['image_encoder.img_size']}); "
            "use litesam_pl.create_model(...) or a segment_anything Sam"
        )


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (CPU for a parameterless model)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def as_image_list(images: ImagesLike) -> Tuple[List[Tensor], bool]:
    """Normalise the accepted inputs to a list of ``[3, H, W]`` float tensors in 0..255.

    Accepts one ``HxWx3`` uint8 array, a list of them, a ``[3, H, W]`` / ``[B, 3, H, W]`` tensor (uint8 or float
    in 0..255) or a list of ``[3, H, W]`` tensors. Returns ``(images, single)`` where ``single`` says that one
    image (not a batch) was given."""
    single = False
    if isinstance(images, (np.ndarray, Tensor)):
        if images.ndim not in (3, 4):
            expected = "an HxWx3 image or a BxHxWx3 batch" if isinstance(images, np.ndarray) else "a [3, H, W] or [B, 3, H, W] tensor"
            raise ValueError(f"expected {expected}, got shape {tuple(images.shape)}")
        single = images.ndim == 3
        images = [images] if single else list(images)
    elif not isinstance(images, (list, tuple)):
        raise TypeError(f"images must be an array, a tensor or a list of them, got {type(images).__name__}")
    out: List[Tensor] = []
    for i, im in enumerate(images):
        if isinstance(im, np.ndarray):
            if im.ndim != 3 or im.shape[2] != 3:
                raise ValueError(
                    f"image {i}: expected HxWx3 RGB, got shape {im.shape} "
                    "(load files with litesam_pl.inference.images.load_image)"
                )
            if im.dtype != np.uint8:
                raise ValueError(f"image {i}: expected uint8 pixels, got {im.dtype} (see images.to_rgb_uint8)")
            t = torch.from_numpy(np.ascontiguousarray(im) if im.flags.writeable else np.array(im, order="C")).permute(2, 0, 1)
        elif isinstance(im, Tensor):
            if im.ndim != 3 or im.shape[0] != 3:
                raise ValueError(f"image {i}: expected a [3, H, W] tensor, got shape {tuple(im.shape)}")
            t = im
        else:
            raise TypeError(f"image {i}: expected a numpy array or a tensor, got {type(im).__name__}")
        if t.shape[1] == 0 or t.shape[2] == 0:
            raise ValueError(f"image {i}: empty image of shape {tuple(t.shape)}")
        out.append(t)
    return out, single


@dataclass
class PreparedImages:
    """``pixels [B, 3, S, S]`` (normalised, padded), ``original_sizes`` / ``input_sizes`` lists of ``(h, w)``."""

    pixels: Tensor
    original_sizes: List[Tuple[int, int]]
    input_sizes: List[Tuple[int, int]]


def preprocess_images(model: nn.Module, images: List[Tensor], device: torch.device = None) -> PreparedImages:
    """Resize-longest-side to ``model.image_encoder.img_size``, normalise and pad (``Sam.preprocess``)."""
    check_sam_like(model)
    size = int(model.image_encoder.img_size)
    device = device or model_device(model)
    batch, orig, inp = [], [], []
    for im in images:
        h, w = int(im.shape[1]), int(im.shape[2])
        nh, nw = ResizeLongestSide.get_preprocess_shape(h, w, size)
        x = im.to(device=device, dtype=torch.float32)[None]
        if (nh, nw) != (h, w):
            x = F.interpolate(x, (nh, nw), mode="bilinear", align_corners=False, antialias=True)
        batch.append(model.preprocess(x)[0])
        orig.append((h, w))
        inp.append((nh, nw))
    return PreparedImages(torch.stack(batch), orig, inp)


def grid_points(points_per_side: int, input_size: Tuple[int, int], device: torch.device = None) -> Tensor:
    """SAM's ``build_point_grid(points_per_side)`` scaled to the resized image: ``[n * n, 2]`` xy input pixels.

    Equals ``SamAutomaticMaskGenerator``'s grid (image-pixel grid mapped by ``ResizeLongestSide.apply_coords``)."""
    if points_per_side < 1:
        raise ValueError(f"points_per_side must be >= 1, got {points_per_side}")
    grid = torch.as_tensor(build_point_grid(points_per_side), dtype=torch.float32, device=device)
    h, w = input_size
    return grid * torch.tensor([float(w), float(h)], device=device)


def automatic_mask_generator(model: nn.Module, **kwargs: Any) -> SamAutomaticMaskGenerator:
    """``SamAutomaticMaskGenerator`` (its defaults: 32x32 grid, 64 points per batch) driving ``model``."""
    check_sam_like(model)
    return SamAutomaticMaskGenerator(model, **kwargs)


def predictor(model: nn.Module) -> SamPredictor:
    """``SamPredictor`` for SegAny point/box prompting on ``model`` (LiteSAM is a ``Sam`` subclass)."""
    check_sam_like(model)
    return SamPredictor(model)
