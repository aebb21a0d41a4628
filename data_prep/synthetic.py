"""Procedural SA-1B-format tars for tests, smoke runs and CI (no download).

Each image is a textured, desaturated background (left unlabeled, as SA-1B leaves stuff it did not segment)
with saturated, textured objects drawn on it in painter's order: 1-2 large, several medium and several small
shapes (ellipses, rotated rectangles, star-shaped polygons), sized by the paper's groups on
``max(h / H, w / W)`` (large >= 0.25, medium in (0.05, 0.25), small <= 0.05). Some large/medium objects carry
nested parts: a part is its own mask and the whole's mask still includes it (SA-1B's part/whole masks). Every
mask is what is *visible*: later objects occlude earlier ones and the occluded pixels leave the mask.

The ``dense`` preset draws another kind of scene (``dense_scene``): 50-100 overlapping irregular outlines of
log-uniform sizes over a smooth noise background, wholes with nested parts, each mask as drawn (no occlusion),
closer to SA-1B's mask count per image; ``benchmarks.dataloader`` times the loader on it.

Output: ``sa_000000.tar, sa_000001.tar, ...`` each with ``sa_<id>.jpg`` + ``sa_<id>.json`` (SA-1B schema, see
docs/contracts.md). Byte-identical for the same arguments (per-image RNG seeded by ``(seed, index)``, fixed tar
headers, members in key order).

    python -m data_prep.synthetic --out data/synthetic --num-images 64 --seed 0 --images-per-tar 16 --size 480 640
"""
from __future__ import annotations

import argparse
import colorsys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from litesam_pl.data.geometry import size_groups
from litesam_pl.data.rle import encode_mask, rle_to_bbox

from ._common import atomic_write, dump_json, sample_members, tar_bytes

__all__ = ["write_synthetic_sa1b", "make_scene", "make_sample", "dense_scene", "size_group", "PRESETS", "PRESET_NAMES",
           "DENSE_MASKS", "ScenePreset"]

# Extent ranges (max(h/H, w/W)) we draw each group at; kept clear of the 0.05 / 0.25 borders so that rotation and
# the non-square image do not move a shape into the next group (visible parts of occluded shapes still may).
_EXTENT = {"large": (0.3, 0.75), "medium": (0.08, 0.17), "small": (0.02, 0.037)}
_MIN_AREA = 4  # visible pixels below which an object gets no mask


@dataclass(frozen=True)
class ScenePreset:
    """How many objects of each group a scene gets (``[lo, hi)`` counts), their extents, parts and textures."""

    counts: dict  # group -> (lo, hi) for rng.integers
    extent: dict  # group -> (lo, hi) of max(h/H, w/W)
    part_prob: float  # chance that a large/medium whole gets nested parts
    flat_objects: bool  # objects in one flat saturated colour (no stripes/checker/gradient)
    min_area: int  # visible pixels below which an object gets no mask


# "sa1b": crowded scenes close to SA-1B's statistics (the default; tests and benchmarks rely on it).
# "smoke": few, large, flat-coloured objects and no parts, so that a CPU smoke run of minutes at 128 px can
# learn (at 128 px the "sa1b" preset's median mask is ~12 px; see docs/architecture.md).
PRESETS = {
    "sa1b": ScenePreset({"large": (2, 4), "medium": (4, 10), "small": (4, 10)}, _EXTENT, 0.6, False, _MIN_AREA),
    "smoke": ScenePreset(
        {"large": (1, 3), "medium": (2, 5), "small": (0, 2)},
        {"large": (0.3, 0.6), "medium": (0.12, 0.22), "small": (0.04, 0.048)},
        0.0, True, 12,
    ),
}
DENSE_MASKS = (50, 100)  # the "dense" preset (``dense_scene``): masks per image, both ends included
PRESET_NAMES = (*PRESETS, "dense")


def _check_preset(preset: str) -> None:
    if preset not in PRESET_NAMES:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESET_NAMES)}")


def size_group(box_hw: Sequence[float], image_hw: Sequence[int]) -> int:
    """Paper's size group of a box of size (h, w) in an image (H, W): 0 large, 1 medium, 2 small
    (:func:`litesam_pl.data.geometry.size_groups` of the one box)."""
    return int(size_groups(np.asarray([box_hw], np.float64), image_hw)[0])


@dataclass
class _Shape:
    mask: np.ndarray  # bool [H, W], as drawn (before occlusion)
    parent: int  # index of the whole this part belongs to, -1 for a whole
    box: tuple[int, int, int, int]  # y0, y1, x0, x1 of the drawn mask (parts lie inside their whole's box)


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
    return y, y + h, x, x + w


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32) * 255.0


def _texture(rng: np.random.Generator, hw: tuple[int, int], c0: np.ndarray, c1: np.ndarray, noise: float) -> np.ndarray:
    """A [h, w, 3] float texture mixing colours c0/c1: flat, linear gradient, stripes or checker, plus noise."""
    h, w = hw
    kind = rng.integers(4)
    yy, xx = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]
    if kind == 0:
        t = np.zeros((1, 1), np.float32)
    elif kind == 1:
        a = rng.uniform(0, 2 * np.pi)
        t = xx * np.cos(a) + yy * np.sin(a)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    elif kind == 2:
        a = rng.uniform(0, np.pi)
        period = rng.uniform(4, 16)
        t = (np.sin((xx * np.cos(a) + yy * np.sin(a)) * 2 * np.pi / period) > 0).astype(np.float32)
    else:
        cell = int(rng.integers(3, 10))
        t = (((yy // cell) + (xx // cell)) % 2).astype(np.float32)
    tex = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
    return tex + (rng.random((h, w, 1), dtype=np.float32) - 0.5) * (2.0 * noise)


def _shape_mask(rng: np.random.Generator, hw: tuple[int, int], center: tuple[float, float], extent: float) -> np.ndarray:
    """A random ellipse / rotated rectangle / star polygon whose box extent (of the image) is at most ``extent``."""
    H, W = hw
    canvas = np.zeros((H, W), np.uint8)
    cy, cx = center
    # half sizes: the box is at most extent*H tall and extent*W wide before rotation
    ry = max(extent * H / 2 * rng.uniform(0.55, 1.0), 1.0)
    rx = max(extent * W / 2 * rng.uniform(0.55, 1.0), 1.0)
    kind = rng.integers(3)
    angle = float(rng.uniform(0, 180))
    if kind == 0:
        cv2.ellipse(canvas, (int(round(cx)), int(round(cy))), (int(round(rx)), int(round(ry))), angle, 0, 360, 1, -1)
    elif kind == 1:
        pts = cv2.boxPoints(((cx, cy), (2 * rx * 0.8, 2 * ry * 0.8), angle))
        cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], 1)
    else:
        n = int(rng.integers(5, 10))
        th = np.sort(rng.uniform(0, 2 * np.pi, n))
        r = rng.uniform(0.5, 1.0, n)
        pts = np.stack([cx + rx * r * np.cos(th), cy + ry * r * np.sin(th)], 1)
        cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], 1)
    if not canvas.any():  # sub-pixel shape: keep one pixel so the object exists
        canvas[int(np.clip(round(cy), 0, H - 1)), int(np.clip(round(cx), 0, W - 1))] = 1
    return canvas.astype(bool)


def _visible_masks(shapes: list[_Shape], owner: np.ndarray, min_area: int) -> list[np.ndarray]:
    """The visible mask of each shape (``owner [H, W]``: index of the top-most shape per pixel, -1 = none):
    pixels whose top-most shape is it or one of its parts; masks under ``min_area`` pixels are dropped."""
    H, W = owner.shape
    visible = []
    lut = np.zeros(len(shapes) + 1, bool)
    for i, sh in enumerate(shapes):
        lut[:] = False
        lut[1 + i] = True
        for j, other in enumerate(shapes):
            if other.parent == i:
                lut[1 + j] = True
        y0, y1, x0, x1 = sh.box
        win = lut[owner[y0:y1, x0:x1] + 1]
        if win.sum() >= min_area:
            m = np.zeros((H, W), bool)
            m[y0:y1, x0:x1] = win
            visible.append(m)
    return visible


def make_scene(rng: np.random.Generator, hw: tuple[int, int], preset: str = "sa1b") -> tuple[np.ndarray, list[np.ndarray]]:
    """Draw one scene (``preset``: one of ``PRESET_NAMES``). Returns the RGB image ``uint8 [H, W, 3]`` and the
    visible masks (bool ``[H, W]`` each); ``"dense"``: ``dense_scene`` with ``DENSE_MASKS`` masks."""
    _check_preset(preset)
    if preset == "dense":
        return dense_scene(rng, hw, int(rng.integers(DENSE_MASKS[0], DENSE_MASKS[1] + 1)))
    P = PRESETS[preset]
    H, W = hw
    # background: low saturation, gradient/stripes/checker + noise
    bh = rng.uniform(0, 1)
    c0 = _hsv(bh, rng.uniform(0.0, 0.2), rng.uniform(0.35, 0.75))
    c1 = _hsv(bh + rng.uniform(-0.1, 0.1), rng.uniform(0.0, 0.2), rng.uniform(0.35, 0.75))
    img = _texture(rng, (H, W), c0, c1, noise=6.0)

    n_large, n_medium, n_small = (int(rng.integers(*P.counts[g])) for g in ("large", "medium", "small"))
    groups = ["large"] * n_large + ["medium"] * n_medium + ["small"] * n_small
    n_colors = len(groups) * 2
    hues = (rng.uniform(0, 1) + np.arange(n_colors) / n_colors) % 1.0
    hues = hues[rng.permutation(n_colors)]
    color_i = 0

    shapes: list[_Shape] = []
    owner = np.full((H, W), -1, np.int32)

    def draw(mask: np.ndarray, parent: int) -> None:
        nonlocal color_i
        y0, y1, x0, x1 = box = _box(mask)
        hue = hues[color_i % n_colors]
        color_i += 1
        s, v = rng.uniform(0.55, 1.0), rng.uniform(0.45, 1.0)
        if P.flat_objects:
            s, v = max(s, 0.8), max(v, 0.7)
            tex = np.broadcast_to(_hsv(hue, s, v), (y1 - y0, x1 - x0, 3)) + (rng.random((y1 - y0, x1 - x0, 1), dtype=np.float32) - 0.5) * 8.0
        else:
            tex = _texture(rng, (y1 - y0, x1 - x0), _hsv(hue, s, v), _hsv(hue + 0.04, s * 0.7, v * 0.75), noise=4.0)
        win = mask[y0:y1, x0:x1]
        img[y0:y1, x0:x1][win] = tex[win]
        owner[y0:y1, x0:x1][win] = len(shapes)
        shapes.append(_Shape(mask, parent, box))

    for g in groups:
        lo, hi = P.extent[g]
        extent = rng.uniform(lo, hi)
        center = (rng.uniform(0.05, 0.95) * H, rng.uniform(0.05, 0.95) * W)
        mask = _shape_mask(rng, hw, center, extent)
        whole = len(shapes)
        draw(mask, -1)
        if g != "small" and P.part_prob > 0 and rng.random() < P.part_prob:  # nested parts, inside the whole as drawn
            dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
            for _ in range(int(rng.integers(1, 3))):
                ys, xs = np.nonzero(dist >= dist.max() * 0.5)  # the inner half of the whole
                k = int(rng.integers(len(ys)))
                part = _shape_mask(rng, hw, (float(ys[k]), float(xs[k])), extent * rng.uniform(0.25, 0.5)) & mask
                if part.sum() >= P.min_area:
                    draw(part, whole)

    img = np.clip(img + (rng.random(img.shape, dtype=np.float32) - 0.5) * 6.0, 0, 255).astype(np.uint8)

    return img, _visible_masks(shapes, owner, P.min_area)


def dense_scene(rng: np.random.Generator, hw: tuple[int, int], n_masks: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """An SA-1B-like dense scene (the ``dense`` preset): ``n_masks`` irregular outlines of log-uniform extents
    (1%-60% of the long side) over a smooth noise background, each blended into the image in its own colour; about
    half the wholes above 5% get a nested part (a disc inside the whole). Masks overlap and are kept as drawn.
    Returns the RGB image ``uint8 [H, W, 3]`` and the masks (bool ``[H, W]``, at least 16 pixels each)."""
    H, W = hw
    img = rng.normal(128, 30, (H // 8, W // 8, 3)).clip(0, 255).astype(np.uint8)
    img = cv2.resize(img, (W, H), interpolation=cv2.INTER_CUBIC)
    masks: list[np.ndarray] = []
    while len(masks) < n_masks:
        extent = float(np.exp(rng.uniform(np.log(0.01), np.log(0.6))))
        cy, cx = rng.uniform(0, H), rng.uniform(0, W)
        k = int(rng.integers(8, 40))
        th = np.sort(rng.uniform(0, 2 * np.pi, k))
        r = extent * max(H, W) / 2 * rng.uniform(0.4, 1.0, k)
        pts = np.stack([cx + r * np.cos(th), cy + r * np.sin(th)], 1).round().astype(np.int32)
        m = np.zeros((H, W), np.uint8)
        cv2.fillPoly(m, [pts], 1)
        if m.sum() < 16:
            continue
        colour = rng.integers(0, 256, 3).tolist()
        mb = m.astype(bool)
        img[mb] = (0.5 * img[mb] + 0.5 * np.array(colour)).astype(np.uint8)
        masks.append(mb)
        if extent > 0.05 and rng.random() < 0.5 and len(masks) < n_masks:  # a part inside the whole
            ys, xs = np.nonzero(m)
            c = int(rng.integers(len(ys)))
            disc = np.zeros((H, W), np.uint8)
            cv2.circle(disc, (int(xs[c]), int(ys[c])), max(int(r.mean() * 0.4), 2), 1, -1)
            part = (m & disc).astype(bool)
            if part.sum() >= 16:
                masks.append(part)
    return img, masks


def make_sample(
    index: int, seed: int, size: tuple[int, int] = (480, 640), quality: int = 92, preset: str = "sa1b"
) -> tuple[str, bytes, bytes]:
    """Synthetic image ``index`` for ``seed``: returns ``(key, jpg bytes, json bytes)`` in the SA-1B layout."""
    H, W = int(size[0]), int(size[1])
    rng = np.random.default_rng([int(seed), int(index)])
    img, masks = make_scene(rng, (H, W), preset)
    image_id = index + 1
    key = f"sa_{image_id}"
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("cv2.imencode failed")
    anns = []
    for j, m in enumerate(masks):
        rle = encode_mask(m)
        bbox = rle_to_bbox(rle)
        x0, y0 = int(bbox[0]), int(bbox[1])
        ys, xs = np.nonzero(m[y0:y0 + int(bbox[3]), x0:x0 + int(bbox[2])])
        k = int(rng.integers(len(ys)))
        anns.append({
            "id": image_id * 1000 + j,
            "segmentation": rle,
            "bbox": bbox,
            "area": int(m.sum()),
            "predicted_iou": round(float(rng.uniform(0.85, 1.0)), 6),
            "stability_score": round(float(rng.uniform(0.9, 1.0)), 6),
            "point_coords": [[float(x0 + xs[k]), float(y0 + ys[k])]],
            "crop_box": [0.0, 0.0, float(W), float(H)],
        })
    record = {"image": {"image_id": image_id, "width": W, "height": H, "file_name": f"{key}.jpg"}, "annotations": anns}
    return key, jpg.tobytes(), dump_json(record)


def write_synthetic_sa1b(
    out: Path | str,
    num_images: int,
    seed: int = 0,
    images_per_tar: int = 100,
    size: tuple[int, int] = (480, 640),
    progress: bool = False,
    preset: str = "sa1b",
    quality: int = 92,
) -> list[Path]:
    """Write ``num_images`` synthetic images as SA-1B tars ``out/sa_000000.tar, ...`` (``quality``: of the jpgs);
    returns the tar paths."""
    if num_images < 1 or images_per_tar < 1:
        raise ValueError(f"num_images ({num_images}) and images_per_tar ({images_per_tar}) must be >= 1")
    if len(size) != 2 or min(size) < 32:
        raise ValueError(f"size must be (H, W) with both >= 32, got {size!r}")
    _check_preset(preset)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    n_tars = (num_images + images_per_tar - 1) // images_per_tar
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=num_images, unit="img", desc="synthetic")
    for t in range(n_tars):
        samples = []
        for i in range(t * images_per_tar, min(num_images, (t + 1) * images_per_tar)):
            samples.append(make_sample(i, seed, (int(size[0]), int(size[1])), quality, preset))
            if bar is not None:
                bar.update(1)
        path = out / f"sa_{t:06d}.tar"
        atomic_write(path, tar_bytes(sample_members(samples)))
        paths.append(path)
    if bar is not None:
        bar.close()
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m data_prep.synthetic", description="Write procedurally drawn images + masks as SA-1B-format tars.")
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--num-images", type=int, required=True, help="number of images")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed -> byte-identical tars)")
    p.add_argument("--images-per-tar", type=int, default=100, help="images per tar")
    p.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"), help="image size")
    p.add_argument("--preset", choices=sorted(PRESET_NAMES), default="sa1b",
                   help="scene statistics: 'sa1b' crowded SA-1B-like scenes (default), 'smoke' few large flat objects for "
                        "CPU smoke runs, 'dense' 50-100 overlapping masks per image (the data-loading benchmark)")
    p.add_argument("--quality", type=int, default=92, help="JPEG quality")
    a = p.parse_args(argv)
    paths = write_synthetic_sa1b(a.out, a.num_images, a.seed, a.images_per_tar, tuple(a.size), progress=True,
                                 preset=a.preset, quality=a.quality)
    print(f"wrote {a.num_images} images in {len(paths)} tars to {a.out}")


if __name__ == "__main__":
    main()
