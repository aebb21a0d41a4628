"""Inputs and outputs of ``litesam segment-everything`` (pure helpers of ``inference.app``).

- inputs: files, folders (``recursive``: with their subfolders), quoted globs (``'photos/*.jpg'``,
  ``'photos/**/*.png'``) and one-line errors for URLs, empty folders and patterns that match no image;
- the output folder: ``runs/segment/predict``, ``predict2``, ... (a new one per run, as ultralytics), per-image
  output names (a stem seen twice gets ``_1``, ``_2``, ...) and the files a run would overwrite;
- sizes: the longest-side guard applied before the model and the size masks are returned at;
- COCO results: ``image_id`` per image, ``results.json`` entries and the ``images.json`` skeleton that lets
  ``pycocotools.coco.COCO("images.json").loadRes("results.json")`` load them;
- messages: :func:`plural` (``"1 mask"``, ``"3 masks"``), shared with ``litesam predict``'s writer.
"""
from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..data.rle import rle_to_bbox
from ..files import write_json

__all__ = [
    "IMAGE_SUFFIXES", "DEFAULT_PROJECT", "DEFAULT_NAME", "RESULTS_FILE", "IMAGES_FILE", "collect_inputs",
    "new_run_dir", "out_dir_error", "output_names", "planned_files", "first_existing", "limit_side", "fit_side",
    "image_ids", "coco_results", "coco_images", "write_coco", "write_masks_json", "plural",
]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm"}
DEFAULT_PROJECT = Path("runs") / "segment"
DEFAULT_NAME = "predict"
RESULTS_FILE = "results.json"
IMAGES_FILE = "images.json"
CATEGORY_ID = 1
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_GLOB = re.compile(r"[*?\[]")


def plural(n: int, noun: str) -> str:
    """``"1 mask"``, ``"0 masks"``, ``"3 masks"``: ``n`` and ``noun``, with an ``s`` unless ``n == 1``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES


def _suffixes() -> str:
    return " ".join(sorted(IMAGE_SUFFIXES))


def _folder_images(folder: Path, recursive: bool) -> List[Path]:
    """The image files of ``folder`` (and of its subfolders when ``recursive``), sorted."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(q for q in found if _is_image(q))


def collect_inputs(inputs: Sequence[str], recursive: bool = False) -> Tuple[List[Path], List[str]]:
    """``(paths, errors)``: files as given; folders expanded to their image files (sorted; subfolders too when
    ``recursive``); a glob (``*``, ``?``, ``[...]``; ``**`` spans subfolders) that names no existing path expands
    to the image files it matches (sorted). URLs, folders without images and patterns matching no image are
    one-line ``errors``; missing files are left to ``load_image``, which names them."""
    paths: List[Path] = []
    errors: List[str] = []
    for s in inputs:
        if _URL.match(s):
            errors.append(f"{s}: URLs are not supported; download the image first and pass the local file")
            continue
        p = Path(s)
        if p.is_dir():
            found = _folder_images(p, recursive)
            if not found:
                where = "in this folder or its subfolders" if recursive else (
                    "in this folder (subfolders are searched with --recursive)")
                errors.append(f"{p}: no images {where}; accepted suffixes: {_suffixes()}")
            paths.extend(found)
        elif not p.exists() and _GLOB.search(s):
            found = sorted(q for q in map(Path, glob.glob(s, recursive=True)) if _is_image(q))
            if not found:
                errors.append(f"{s}: no image file matches this pattern (accepted suffixes: {_suffixes()})")
            paths.extend(found)
        else:
            paths.append(p)
    return paths, errors


def new_run_dir(project: Path = DEFAULT_PROJECT, name: str = DEFAULT_NAME) -> Path:
    """Create and return a NEW folder ``project/name``, else ``name2``, ``name3``, ... (the first that does not
    exist; created with ``exist_ok=False``, so two runs started together never share one)."""
    project.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        d = project / (name if n == 1 else f"{name}{n}")
        try:
            d.mkdir()
            return d
        except FileExistsError:
            n += 1


def out_dir_error(out: str) -> Optional[str]:
    """Why ``--out`` cannot be the output directory (an existing file, or a file on its path), else None."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        return f"--out {out}: is an existing file; give a directory (it is created if missing)"
    for parent in p.parents:
        if parent.exists() and not parent.is_dir():
            return f"--out {out}: {parent} is a file, not a directory"
    return None


def output_names(paths: Sequence[Path]) -> List[str]:
    """Per input its output stem: the file stem, or ``<stem>_1``, ``<stem>_2``, ... when taken by an earlier
    input (same stem in two folders, or ``a.jpg`` and ``a.png``)."""
    used: set = set()
    names: List[str] = []
    for p in paths:
        name, n = p.stem, 0
        while name in used:
            n += 1
            name = f"{p.stem}_{n}"
        used.add(name)
        names.append(name)
    return names


def planned_files(out_dir: Path, names: Iterable[str]) -> List[Path]:
    """The files a run writes into ``out_dir``: ``<name>_overlay.png``, ``<name>_masks.json`` per image, then
    ``results.json`` and ``images.json``."""
    files = [out_dir / f"{n}_{kind}" for n in names for kind in ("overlay.png", "masks.json")]
    return files + [out_dir / RESULTS_FILE, out_dir / IMAGES_FILE]


def first_existing(files: Iterable[Path]) -> Optional[Path]:
    """The first of ``files`` that exists (a run would overwrite it), else None."""
    return next((f for f in files if f.exists()), None)


def fit_side(size: Sequence[int], max_side: int) -> Tuple[int, int]:
    """``(h, w)`` scaled down so that the longer side is at most ``max_side`` (unchanged when it already is, or
    when ``max_side <= 0``)."""
    h, w = int(size[0]), int(size[1])
    if max_side <= 0 or max(h, w) <= max_side:
        return h, w
    s = max_side / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def limit_side(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` downscaled (``cv2.INTER_AREA``) to ``fit_side(image.shape, max_side)``; itself when it fits."""
    h, w = fit_side(image.shape[:2], max_side)
    if (h, w) == image.shape[:2]:
        return image
    import cv2

    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


def image_ids(paths: Sequence[Path]) -> List[int]:
    """COCO ``image_id`` per input: the number in the file stem when every stem is a distinct number (COCO names
    such as ``000000017627.jpg`` -> 17627), else the position in input order (0, 1, ...) for all, so that ids
    never collide."""
    stems = [p.stem for p in paths]
    if stems and all(s.isdigit() for s in stems):
        ids = [int(s) for s in stems]
        if len(set(ids)) == len(ids):
            return ids
    return list(range(len(paths)))


def coco_results(records: Sequence[Dict[str, Any]], image_id: int,
                 score_key: str = "predicted_iou") -> List[Dict[str, Any]]:
    """COCO results entries (``{image_id, category_id: 1, segmentation, score, bbox}``) for one image's
    ``coco_rle`` records; ``score`` is ``record[score_key]``, the score SegEvery ranked the masks by."""
    return [
        {"image_id": int(image_id), "category_id": CATEGORY_ID, "segmentation": r["segmentation"],
         "score": float(r[score_key]), "bbox": rle_to_bbox(r["segmentation"])}
        for r in records
    ]


def coco_images(images: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """A COCO dataset without annotations (``images``: ``id``, ``file_name``, ``width``, ``height`` and the input
    ``path``; one ``object`` category): the file names of the ids in ``results.json``, loadable by
    ``pycocotools.coco.COCO`` so that ``COCO(images.json).loadRes(results.json)`` works."""
    return {"info": {"description": "litesam segment-everything inputs"}, "images": list(images),
            "annotations": [], "categories": [{"id": CATEGORY_ID, "name": "object"}]}


def write_coco(out_dir: Path, results: List[Dict[str, Any]], images: List[Dict[str, Any]]) -> None:
    """Write ``results.json`` (``coco_results`` over all images) and ``images.json`` (``coco_images``): one line
    each, strict JSON, atomically (``litesam_pl.files.write_json``)."""
    write_json(out_dir / RESULTS_FILE, results, indent=None, newline=False)
    write_json(out_dir / IMAGES_FILE, coco_images(images), indent=None, newline=False)


def write_masks_json(path: Path, records: Sequence[Dict[str, Any]], image_id: int, size: Sequence[int],
                     file_name: str, original_size: Optional[Sequence[int]] = None) -> Path:
    """``<stem>_masks.json`` of one image (SA-1B layout): ``image`` (``image_id``, ``width``, ``height`` = ``size``
    (H, W) of the masks, ``file_name``, and ``original_height`` / ``original_width`` when ``original_size``
    differs) and ``annotations`` (the records, each with an ``id``), on one line (``litesam_pl.files.write_json``).
    Written by ``litesam segment-everything``, ``litesam predict`` and the web page alike."""
    h, w = int(size[0]), int(size[1])
    info: Dict[str, Any] = {"image_id": int(image_id), "width": w, "height": h, "file_name": file_name}
    if original_size is not None and tuple(original_size) != (h, w):
        info["original_height"], info["original_width"] = int(original_size[0]), int(original_size[1])
    anns = [{**r, "id": i} for i, r in enumerate(records)]
    return write_json(path, {"image": info, "annotations": anns}, indent=None, newline=False)
