"""One raw SA-1B record -> one training sample (the per-sample half of the batch contract, ``docs/contracts.md``).

:class:`SampleProcessor`: decode, resize-longest-side + flip, K target masks with prompts, AutoPPN targets, the image
as uint8 ``[3, S, S]`` zero-padded (normalised later, on the device: ``transforms.normalize_images``).
"""
from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .prompts import choose_masks, interior_points, noisy_boxes, random_points
from .rle_sample import RunLengths
from .targets import BACKGROUND_MODES, TARGET_MODES, grid_valid, ppn_targets, size_groups
from .transforms import Geometry, decode_image, pad_image, reduce_factor

__all__ = ["SampleProcessor", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png")


class _PhaseClock:
    """Adds the process CPU time since the previous call to ``acc[name]`` (``SampleProcessor.phase_times``)."""

    __slots__ = ("acc", "t")

    def __init__(self, acc: dict):
        self.acc, self.t = acc, time.process_time()

    def __call__(self, name: str) -> None:
        t = time.process_time()
        self.acc[name] = self.acc.get(name, 0.0) + (t - self.t)
        self.t = t


def _no_tick(name: str) -> None:
    return None


@dataclass
class SampleProcessor:
    """Raw SA-1B record -> training sample (see ``docs/contracts.md``, "Samples").

    Args:
        img_size: padded input side ``S``.
        max_masks: ``K`` target masks (and prompts) per image.
        ppn_stride: AutoPPN grid stride ``s``; ``P = S // s``.
        train: random mask choice, noisy boxes, uniform points, flips and scale jitter; else deterministic
            (masks chosen by a hash of the key, exact boxes, most interior points, no augmentation).
        box_noise, box_noise_max: SAM box noise: std as a fraction of the box side, clip in input pixels.
        hflip_prob: probability of a horizontal flip (train only).
        scale_jitter: (min, max) factor on the resized longest side, ``0 < min <= max <= 1`` (train only; the
            shrunk image is padded, nothing is cropped).
        target_mode: ``"distance"`` (paper) or ``"gaussian"`` (CenterNet baseline).
        ppn_background: ``"negative"`` (cells outside every mask are negatives of the point maps: the paper
            recipes) or ``"ignore"`` (SA-1B's unlabeled "stuff" excluded; see ``litesam_pl.data.targets``).
        num_groups: 3 size groups or 1 (grouping off).
        seed: mixed into the deterministic (validation) choices.
        phase_times: a dict to accumulate process CPU seconds per phase into (``parse``, ``decode``, ``resize``,
            ``rle``, ``grid``, ``targets``, ``masks``, ``prompts``, ``pad``: the image into its uint8 slot;
            ``benchmarks.dataloader --phases``), or None (default: no timing). Only the process running the processor sees it (the
            main process when ``num_workers=0``).
    """

    img_size: int = 640
    max_masks: int = 16
    ppn_stride: int = 8
    train: bool = True
    box_noise: float = 0.1
    box_noise_max: float = 20.0
    hflip_prob: float = 0.5
    scale_jitter: tuple[float, float] = (1.0, 1.0)
    target_mode: str = "distance"
    ppn_background: str = "negative"
    num_groups: int = 3
    seed: int = 0
    phase_times: dict | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.img_size % self.ppn_stride:
            raise ValueError(f"img_size {self.img_size} must be a multiple of ppn_stride {self.ppn_stride}")
        if self.max_masks < 1:
            raise ValueError(f"max_masks must be >= 1, got {self.max_masks}")
        lo, hi = (float(v) for v in self.scale_jitter)
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"scale_jitter must satisfy 0 < min <= max <= 1, got {self.scale_jitter}")
        self.scale_jitter = (lo, hi)
        if self.target_mode not in TARGET_MODES:
            raise ValueError(f"target_mode must be one of {TARGET_MODES}, got {self.target_mode!r}")
        if self.ppn_background not in BACKGROUND_MODES:
            raise ValueError(f"ppn_background must be one of {BACKGROUND_MODES}, got {self.ppn_background!r}")
        if self.num_groups not in (1, 3):
            raise ValueError(f"num_groups must be 1 or 3, got {self.num_groups}")

    def __call__(self, raw: dict[str, Any], rng: np.random.Generator,
                 out: dict[str, torch.Tensor] | None = None, out_zeroed: bool = False) -> dict[str, Any]:
        """Process one record: parse it, draw the geometry, decode and resize the image, read every mask's run
        lengths, sample them on the AutoPPN grid for its targets, write the K target masks and their prompts, pad
        the image (each step one phase of ``phase_times``). ``out`` may hold preallocated ``image`` uint8
        ``[3, S, S]`` and ``masks`` bool ``[K, S, S]`` tensors (slots of a batch) to write those two into instead of
        allocating them; ``out_zeroed`` says they are all zeros already (fresh, lazily zeroed memory: then only the
        pixels that need a value are touched)."""
        tick = _PhaseClock(self.phase_times) if self.phase_times is not None else _no_tick
        key, img_bytes, segs, (H, W) = _parse(raw)
        if not self.train:
            rng = np.random.default_rng([self.seed, zlib.crc32(key.encode())])
        tick("parse")
        geom = self._draw_geometry((H, W), rng)
        img = _decode_sized(img_bytes, (H, W), geom, key)
        tick("decode")
        img = geom.image(img)
        tick("resize")
        anns = _Annotations.read(segs, (H, W), geom, self.num_groups, key)
        tick("rle")
        grid = self._grid(anns, geom)
        tick("grid")
        tg = ppn_targets(grid, anns.boxes_in, anns.areas, anns.groups, geom.input_hw, self.img_size, self.ppn_stride,
                         self.num_groups, self.target_mode, self.ppn_background)
        tick("targets")
        masks_t, chosen = self._target_masks(anns, geom, rng, out, out_zeroed)
        tick("masks")
        gt_boxes, boxes, points, valid = self._prompts(masks_t.numpy(), anns.boxes_in[chosen], geom.input_hw, rng)
        tick("prompts")
        image = pad_image(img, self.img_size, out=None if out is None else out.get("image"), out_zeroed=out_zeroed)
        tick("pad")
        return {
            "image": image,
            "masks": masks_t,
            "boxes": torch.from_numpy(boxes),
            "gt_boxes": torch.from_numpy(gt_boxes),
            "points": torch.from_numpy(points),
            "point_labels": torch.ones(self.max_masks, 1, dtype=torch.int64),
            "valid": torch.from_numpy(valid),
            "ppn_heatmap": torch.from_numpy(tg["heatmap"]),
            "ppn_boxes": torch.from_numpy(tg["boxes"]),
            "ppn_box_weight": torch.from_numpy(tg["box_weight"]),
            "ppn_ignore": torch.from_numpy(tg["ignore"]),
            "all_boxes": torch.from_numpy(anns.boxes_in),
            "original_size": torch.tensor([H, W], dtype=torch.int64),
            "input_size": torch.tensor(geom.input_hw, dtype=torch.int64),
            "key": key,
        }

    def _draw_geometry(self, hw: tuple[int, int], rng: np.random.Generator) -> Geometry:
        """The resize (with the scale jitter) and the flip; in training, draws the scale, then the flip, each only
        when it can differ from the identity."""
        if self.train:
            scale = float(rng.uniform(*self.scale_jitter)) if self.scale_jitter[0] < 1.0 else 1.0
            hflip = bool(rng.random() < self.hflip_prob) if self.hflip_prob > 0 else False
        else:
            scale, hflip = 1.0, False
        return Geometry.make(hw, self.img_size, scale, hflip)

    def _grid(self, anns: _Annotations, geom: Geometry) -> np.ndarray:
        """Every kept mask at the AutoPPN cell centres: bool ``[N, P, P]``, False on padding cells."""
        s, S = self.ppn_stride, self.img_size
        p = S // s
        rv, cv = grid_valid(geom.input_hw, S, s)
        grid = np.zeros((len(anns.idx_keep), p, p), bool)
        if rv and cv:
            grid[:, :rv, :cv] = anns.rl.sample(geom.src_rows((np.arange(rv) + 0.5) * s),
                                               geom.src_cols((np.arange(cv) + 0.5) * s), anns.idx_keep,
                                               boxes=anns.xywh_all)
        return grid

    def _target_masks(self, anns: _Annotations, geom: Geometry, rng: np.random.Generator,
                      out: dict[str, torch.Tensor] | None, out_zeroed: bool) -> tuple[torch.Tensor, list[int]]:
        """The K target masks at input resolution, bool ``[K, S, S]`` (``out["masks"]`` when given), and the kept
        indices of the masks written, in slot order: the first K of ``choose_masks``' order that keep a pixel."""
        K, S = self.max_masks, self.img_size
        if out is not None and "masks" in out:
            masks_t = out["masks"]
            if not out_zeroed:
                masks_t.numpy().fill(False)  # numpy: no torch thread pool in the loader
        else:
            masks_t = torch.from_numpy(np.zeros((K, S, S), bool))
        masks = masks_t.numpy()
        chosen: list[int] = []
        src = _SourcePixels.of(geom)
        for j in choose_masks(len(anns.idx_keep), len(anns.idx_keep), rng):
            if len(chosen) == K:
                break
            window = src.box_crop(anns.rl, int(anns.idx_keep[j]), anns.xywh[j])
            if window is None:
                continue
            (r0, r1, c0, c1), crop = window
            if not crop.any():
                continue
            masks[len(chosen), r0:r1, c0:c1] = crop.view(bool)
            chosen.append(int(j))
        return masks_t, chosen

    def _prompts(self, masks: np.ndarray, chosen_boxes: np.ndarray, input_hw: tuple[int, int],
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``gt_boxes``, box prompts, point prompts and ``valid`` of the K slots, the first ``n = len(chosen_boxes)``
        filled: in training noisy boxes then uniform points (drawn in that order), else exact boxes and the most
        interior points."""
        K, n = self.max_masks, len(chosen_boxes)
        gt_boxes = np.zeros((K, 4), np.float32)
        boxes = np.zeros((K, 4), np.float32)
        points = np.zeros((K, 1, 2), np.float32)
        if n:
            gt_boxes[:n] = chosen_boxes
            if self.train:
                boxes[:n] = noisy_boxes(gt_boxes[:n], input_hw, rng, self.box_noise, self.box_noise_max)
                points[:n] = random_points(masks[:n], gt_boxes[:n], rng)
            else:
                boxes[:n] = noisy_boxes(gt_boxes[:n], input_hw, None)
                points[:n] = interior_points(masks[:n], gt_boxes[:n])
        valid = np.zeros(K, bool)
        valid[:n] = True
        return gt_boxes, boxes, points, valid


def _parse(raw: dict[str, Any]) -> tuple[str, bytes, list, tuple[int, int]]:
    """The record's key, image bytes, segmentations and original (H, W) (the json's image size, else the first
    RLE's); a missing member or a malformed json raises ``ValueError`` naming the key."""
    key = str(raw.get("__key__", "?"))
    img_bytes = next((raw[e] for e in IMAGE_EXTENSIONS if e in raw), None)
    if img_bytes is None:
        raise ValueError(f"{key}: no image member ({'/'.join(IMAGE_EXTENSIONS)})")
    if "json" not in raw:
        raise ValueError(f"{key}: no json member")
    try:
        meta = json.loads(raw["json"])
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{key}: bad json: {e}") from e
    if not isinstance(meta, dict) or not isinstance(meta.get("annotations"), list):
        raise ValueError(f"{key}: json has no 'annotations' list")
    anns = meta["annotations"]
    if not anns:
        raise ValueError(f"{key}: no annotations")
    try:
        segs = [a["segmentation"] for a in anns]
        info = meta.get("image") or {}
        if "height" in info and "width" in info:
            H, W = int(info["height"]), int(info["width"])
        else:
            H, W = (int(v) for v in segs[0]["size"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{key}: malformed annotation: {e!r}") from e
    return key, img_bytes, segs, (H, W)


def _decode_sized(img_bytes: bytes, hw: tuple[int, int], geom: Geometry, key: str) -> np.ndarray:
    """The image decoded at the largest reduction that still covers ``geom``'s input size (``reduce_factor``); an
    image whose size disagrees with the json's (by more than a pixel) raises ``ValueError``."""
    H, W = hw
    f = reduce_factor(H, W, max(geom.input_hw))
    img = decode_image(img_bytes, reduce=f)
    exp_h, exp_w = -(-H // f), -(-W // f)
    if abs(img.shape[0] - exp_h) > 1 or abs(img.shape[1] - exp_w) > 1:
        if f > 1:  # a jpg whose header disagrees with the json (or not reducible): decode fully and re-check
            img = decode_image(img_bytes)
            exp_h, exp_w = H, W
        if abs(img.shape[0] - exp_h) > 1 or abs(img.shape[1] - exp_w) > 1:
            raise ValueError(f"{key}: image is {img.shape[1]}x{img.shape[0]} but the json says {W}x{H}")
    return img


@dataclass
class _Annotations:
    """Every mask of a record as run lengths, and the kept (non-empty) ones' boxes, areas and size groups."""

    rl: RunLengths
    xywh_all: np.ndarray  # [N] source boxes of all masks (COCO x, y, w, h)
    idx_keep: np.ndarray  # [n] indices of the non-empty masks; the arrays below are theirs
    xywh: np.ndarray
    areas: np.ndarray
    boxes_in: np.ndarray  # float32 [n, 4] xyxy in input pixels
    groups: np.ndarray

    @classmethod
    def read(cls, segs: list, hw: tuple[int, int], geom: Geometry, num_groups: int, key: str) -> _Annotations:
        """Run lengths of ``segs`` at source size ``hw``; ``ValueError`` when every mask is empty."""
        rl = RunLengths(segs, *hw)
        xywh_all = rl.boxes()
        areas = rl.areas()
        keep = areas > 0
        if not keep.any():
            raise ValueError(f"{key}: all masks are empty")
        idx_keep = np.flatnonzero(keep)
        xywh, areas = xywh_all[idx_keep], areas[idx_keep]
        groups = size_groups(xywh[:, [3, 2]], hw, num_groups)
        return cls(rl, xywh_all, idx_keep, xywh, areas, geom.boxes(xywh), groups)


@dataclass
class _SourcePixels:
    """The source pixel of every output row and column (``Geometry.pixel_rows`` / ``pixel_cols``): monotone, rows
    ascending, columns descending when flipped; ``cols_up`` ascending either way; ``*_step`` from ``_unit_step``."""

    rows: np.ndarray
    cols: np.ndarray
    cols_up: np.ndarray
    rows_step: int
    cols_step: int

    @classmethod
    def of(cls, geom: Geometry) -> _SourcePixels:
        prow, pcol = geom.pixel_rows(), geom.pixel_cols()
        return cls(prow, pcol, pcol if pcol[0] <= pcol[-1] else pcol[::-1], _unit_step(prow), _unit_step(pcol))

    def box_crop(self, rl: RunLengths, index: int,
                 xywh: np.ndarray) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
        """Mask ``index`` of ``rl`` read at the output pixels whose source pixel lies in its box ``xywh``:
        ``((r0, r1, c0, c1), crop)`` with ``crop`` uint8 ``[r1 - r0, c1 - c0]`` for the output window
        ``[r0:r1, c0:c1]``, or None when the box covers no output pixel."""
        prow, pcol = self.rows, self.cols
        x, y, bw, bh = (int(round(v)) for v in xywh)
        # output rows/columns whose source pixel lies in the box: one contiguous range each
        r0, r1 = (int(v) for v in np.searchsorted(prow, (y, y + bh), "left"))
        c0, c1 = (int(v) for v in np.searchsorted(self.cols_up, (x, x + bw), "left"))
        if r0 >= r1 or c0 >= c1:
            return None
        if self.cols_up is not pcol:
            c0, c1 = pcol.size - c1, pcol.size - c0
        window = rl.decode_window(index, x, x + bw)  # [H, bw]
        rsrc = slice(int(prow[r0]), int(prow[r1 - 1]) + 1) if self.rows_step == 1 else prow[r0:r1]
        a0, a1 = int(pcol[c0]) - x, int(pcol[c1 - 1]) - x
        csrc = (slice(a0, a1 + 1) if self.cols_step == 1 else slice(a0, a1 - 1 if a1 > 0 else None, -1)
                if self.cols_step == -1 else pcol[c0:c1] - x)
        return (r0, r1, c0, c1), window[rsrc][:, csrc]


def _unit_step(ix: np.ndarray) -> int:
    """+1 / -1 when the integer array ``ix`` goes up / down by exactly one at every step (then a slice reads the
    same elements as fancy indexing with it, without the copy), else 0."""
    if ix.size < 2:
        return 1
    d = np.diff(ix)
    return 1 if (d == 1).all() else -1 if (d == -1).all() else 0
