"""COCO / LVIS instance readers for zero-shot evaluation: images + instances from the official annotation files.

COCO files are read with ``pycocotools.coco.COCO``, LVIS files (images carry ``neg_category_ids``) with
``lvis.LVIS``. LVIS v0.5 names its images ``COCO_val2014_%012d.jpg`` while the pixels live in COCO's ``val2017/``
as ``%012d.jpg``: LVIS images are therefore found through ``coco_url`` (its last path part), then the image id.
Images whose file is absent are listed in ``missing`` and skipped by ``iter_samples`` (counted, never silently).

A sample is an ``InstanceSample``: ``image`` uint8 RGB ``[H, W, 3]`` at original resolution plus the image's
annotation records (``segmentation``, ``bbox`` xywh, ``area``, ``category_id``, ``iscrowd``).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from .rle import to_coco_rle
from .transforms import pil_decode

__all__ = ["InstanceSample", "CocoInstances", "ann_to_rle", "ann_to_mask", "ann_masks", "detect_format", "read_rgb"]

log = logging.getLogger(__name__)


def ann_to_rle(ann: Mapping[str, Any], height: int, width: int) -> dict:
    """The annotation's ``segmentation`` (polygons, uncompressed or compressed RLE) as a compressed RLE (``bytes``
    counts, what ``pycocotools`` takes: RLEs through ``data.rle.to_coco_rle``)."""
    segm = ann.get("segmentation")
    if segm is None:
        raise ValueError(f"annotation {ann.get('id')} has no 'segmentation'")
    if isinstance(segm, list):  # polygons
        polys = [p for p in segm if len(p) >= 6]
        if not polys:
            return mask_utils.encode(np.zeros((height, width), dtype=np.uint8, order="F"))
        return mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    if isinstance(segm, Mapping) and "counts" in segm:  # compressed, or uncompressed (iscrowd) RLE
        return to_coco_rle(segm, check=False)
    raise ValueError(f"annotation {ann.get('id')}: unsupported segmentation type {type(segm).__name__}")


def ann_to_mask(ann: Mapping[str, Any], height: int, width: int) -> np.ndarray:
    """The annotation's mask as bool ``[H, W]``."""
    m = mask_utils.decode(ann_to_rle(ann, height, width))
    if m.shape != (height, width):
        raise ValueError(f"annotation {ann.get('id')}: mask shape {m.shape} != image size {(height, width)}")
    return m.astype(bool)


def ann_masks(anns: Sequence[Mapping[str, Any]], height: int, width: int) -> np.ndarray:
    """The annotations' masks as bool ``[N, H, W]`` (``[0, H, W]`` for none)."""
    if not anns:
        return np.zeros((0, height, width), dtype=bool)
    return np.stack([ann_to_mask(a, height, width) for a in anns])


#: the PIL modes ``read_rgb`` accepts
READ_RGB_MODES = ("RGB", "L", "1", "P", "RGBA", "CMYK", "LA", "I;16", "I", "YCbCr")


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read a COCO / LVIS image file as uint8 RGB ``[H, W, 3]``, writable: ``data.transforms.pil_decode`` (PIL, no
    EXIF orientation: the annotations refer to the stored pixel grid; grey, palette, CMYK, RGBA converted; 16-bit
    keeps its top 8 bits) of the ``READ_RGB_MODES``. ``data.transforms.decode_image`` is the SA-1B loader's
    (OpenCV, from bytes), ``inference.images.load_image`` SegEvery's (EXIF orientation for user photos)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        rgb = pil_decode(path, str(path), modes=READ_RGB_MODES)
    except (OSError, SyntaxError) as e:
        raise ValueError(f"cannot read image {path} (corrupted or not an image): {e}") from e
    return np.array(rgb, dtype=np.uint8)  # writable (torch.from_numpy warns on read-only arrays)


def detect_format(dataset: Mapping[str, Any]) -> str:
    """``"lvis"`` when images carry LVIS' federated fields, else ``"coco"``."""
    imgs = dataset.get("images") or []
    if imgs and ("neg_category_ids" in imgs[0] or "not_exhaustive_category_ids" in imgs[0]):
        return "lvis"
    cats = dataset.get("categories") or []
    if cats and "frequency" in cats[0]:
        return "lvis"
    return "coco"


@dataclass
class InstanceSample:
    """One image and its instances."""

    image_id: int
    file: Path
    image: np.ndarray  # uint8 [H, W, 3] RGB
    annotations: list[dict] = field(default_factory=list)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


class CocoInstances:
    """Images and instance annotations of a COCO or LVIS instances file.

    Args:
        ann_file: ``instances_val2017.json`` (COCO) or ``lvis_v*_val.json`` (LVIS).
        image_dir: the folder of the jpgs (COCO ``val2017/``; for LVIS also ``val2017/``).
        fmt: ``"auto"`` (detect from the file), ``"coco"`` or ``"lvis"``.
        limit: keep only the first ``limit`` images (sorted by id) that have pixels on disk.
    """

    def __init__(self, ann_file: str | os.PathLike, image_dir: str | os.PathLike, fmt: str = "auto",
                 limit: int | None = None) -> None:
        self.ann_file = Path(ann_file)
        self.image_dir = Path(image_dir)
        if not self.ann_file.is_file():
            raise FileNotFoundError(f"annotation file not found: {self.ann_file}")
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.image_dir}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        try:
            with open(self.ann_file) as f:
                dataset = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{self.ann_file} is not valid JSON: {e}") from e
        if not isinstance(dataset, dict) or not {"images", "annotations", "categories"} <= set(dataset):
            raise ValueError(f"{self.ann_file} is not a COCO/LVIS instances file "
                             "(needs 'images', 'annotations', 'categories')")
        self.format = detect_format(dataset) if fmt == "auto" else fmt
        if self.format not in ("coco", "lvis"):
            raise ValueError(f"fmt must be 'auto', 'coco' or 'lvis', got {fmt!r}")
        self.api = self._make_api(dataset)
        self.dataset: dict = dataset
        self.imgs: dict[int, dict] = {int(i["id"]): i for i in dataset["images"]}
        self._anns: dict[int, list[dict]] = {i: [] for i in self.imgs}
        for a in dataset["annotations"]:
            self._anns.setdefault(int(a["image_id"]), []).append(a)
        self.categories: dict[int, dict] = {int(c["id"]): c for c in dataset["categories"]}

        self.files: dict[int, Path] = {}
        self.missing: list[int] = []
        for image_id in sorted(self.imgs):
            path = self._resolve(self.imgs[image_id])
            if path is None:
                self.missing.append(image_id)
            else:
                self.files[image_id] = path
        self.image_ids: list[int] = sorted(self.files)
        if limit is not None:
            self.image_ids = self.image_ids[:limit]
        if self.missing:
            log.warning("%d of %d images of %s have no file under %s (skipped)", len(self.missing), len(self.imgs),
                        self.ann_file.name, self.image_dir)

    def _make_api(self, dataset: dict) -> Any:
        """The official API object (``pycocotools.coco.COCO`` or ``lvis.LVIS``) over the same records."""
        if self.format == "lvis":
            from ..compat import lvis_from_dict

            return lvis_from_dict(dataset)
        import contextlib
        import io

        from pycocotools.coco import COCO

        api = COCO()
        api.dataset = dataset
        with contextlib.redirect_stdout(io.StringIO()):
            api.createIndex()
        return api

    def _resolve(self, img: Mapping[str, Any]) -> Path | None:
        """The image file: ``file_name``, then ``coco_url``'s name, then ``%012d.jpg`` (val2017 naming)."""
        names = []
        if self.format == "lvis" and img.get("coco_url"):
            names.append(str(img["coco_url"]).rstrip("/").split("/")[-1])
        if img.get("file_name"):
            names.append(Path(str(img["file_name"])).name)
        if img.get("coco_url"):
            names.append(str(img["coco_url"]).rstrip("/").split("/")[-1])
        names.append(f"{int(img['id']):012d}.jpg")
        for name in dict.fromkeys(names):
            p = self.image_dir / name
            if p.is_file():
                return p
        return None

    # ------------------------------------------------------------------------------------------------ access

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def num_missing(self) -> int:
        return len(self.missing)

    def annotations(self, image_id: int) -> list[dict]:
        """The image's annotation records (as in the file; LVIS ones get ``iscrowd=0``)."""
        anns = self._anns.get(int(image_id), [])
        return [a if "iscrowd" in a else {**a, "iscrowd": 0} for a in anns]

    def load(self, image_id: int) -> InstanceSample:
        """Read the image (RGB) and check its size against the annotation file."""
        image_id = int(image_id)
        if image_id not in self.files:
            raise KeyError(f"image {image_id} has no file under {self.image_dir}")
        image = read_rgb(self.files[image_id])
        rec = self.imgs[image_id]
        h, w = int(rec.get("height", image.shape[0])), int(rec.get("width", image.shape[1]))
        if image.shape[:2] != (h, w):
            raise ValueError(f"{self.files[image_id]}: image is {image.shape[1]}x{image.shape[0]} but the "
                             f"annotation file says {w}x{h}")
        return InstanceSample(image_id=image_id, file=self.files[image_id], image=image,
                              annotations=self.annotations(image_id))

    def __getitem__(self, idx: int) -> InstanceSample:
        return self.load(self.image_ids[idx])

    def __iter__(self) -> Iterator[InstanceSample]:
        for image_id in self.image_ids:
            yield self.load(image_id)

    def masks(self, sample: InstanceSample, anns: Sequence[Mapping[str, Any]] | None = None) -> np.ndarray:
        """GT masks bool ``[N, H, W]`` of ``anns`` (default: all the sample's annotations)."""
        return ann_masks(sample.annotations if anns is None else anns, sample.height, sample.width)
