"""Any COCO-format instance set (COCO, LVIS, ...) -> SA-1B-format tars + ``manifest.json``.

    python -m data_prep.coco_to_sa1b --ann annotations/instances_train2017.json --images train2017 \\
        --out data/coco_sa1b --images-per-tar 1000

Each image (in id order) becomes ``<prefix>_<image_id>.jpg`` + ``.json`` in the SA-1B schema: masks from polygons
or RLE via ``pycocotools`` ``annToRLE`` (compressed RLE at the image size), boxes and areas from the masks,
``point_coords`` = the mask's most interior pixel (distance-transform maximum), ``predicted_iou`` and
``stability_score`` 1.0 (human masks), ``crop_box`` the whole image, plus the source ``category_id``.
Crowd annotations (``iscrowd=1``) are dropped and counted unless ``--keep-crowd``. Images whose file is missing,
unreadable or of another size than the json says, and images left without masks, are skipped and counted.
The jpg bytes are copied unchanged (other formats are re-encoded as JPEG).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from litesam_pl.data import geometry
from litesam_pl.data.rle import decode_rle, rle_area, rle_to_bbox, rle_to_json

from ._common import TarSeries, dump_json, is_jpeg, write_manifest
from .sa1b_sample import read_image_bytes_or_skip

__all__ = ["coco_to_sa1b", "interior_point_coords", "find_image_file"]


def interior_point_coords(mask: np.ndarray) -> list[float]:
    """The SA-1B ``point_coords`` entry of a mask: :func:`litesam_pl.data.geometry.interior_point` (the pixel
    farthest from the mask's boundary: exact Euclidean distance, the image border counting as boundary, first in
    raster order on ties) as a float ``[x, y]`` list."""
    x, y = geometry.interior_point(mask)
    return [float(x), float(y)]


def find_image_file(images: Path, record: dict) -> Path | None:
    """The file of a COCO/LVIS image record: ``file_name``, else the ``coco_url`` basename, else ``%012d.jpg``."""
    names = [record.get("file_name"), (record.get("coco_url") or "").rsplit("/", 1)[-1], f"{int(record['id']):012d}.jpg"]
    for n in names:
        if n and (images / n).is_file():
            return images / n
        if n and (images / Path(n).name).is_file():
            return images / Path(n).name
    return None


def _sa1b_annotations(coco: Any, image_id: int, w: int, h: int, keep_crowd: bool, dropped: Counter) -> list[dict]:
    """SA-1B annotations of the COCO image ``image_id`` (``w`` x ``h``); counts what it drops in ``dropped``."""
    anns = []
    for a in coco.imgToAnns.get(image_id, []):
        if a.get("iscrowd", 0) and not keep_crowd:
            dropped["crowd"] += 1
            continue
        try:
            rle = rle_to_json(coco.annToRLE(a))
            mask = decode_rle(rle)
        except Exception:
            dropped["bad_segmentation"] += 1
            continue
        area = rle_area(rle)
        if area == 0:
            dropped["empty_mask"] += 1
            continue
        b = {
            "id": int(a["id"]),
            "segmentation": rle,
            "bbox": rle_to_bbox(rle),
            "area": area,
            "predicted_iou": 1.0,
            "stability_score": 1.0,
            "point_coords": [interior_point_coords(mask)],
            "crop_box": [0.0, 0.0, float(w), float(h)],
            "category_id": int(a.get("category_id", 0)),
        }
        if a.get("iscrowd", 0):
            b["iscrowd"] = 1
        anns.append(b)
    return anns


def _coco_sample(coco: Any, image_id: int, images: Path, prefix: str, keep_crowd: bool, quality: int,
                 skipped: Counter, dropped: Counter) -> tuple[str, bytes, bytes] | None:
    """``(key, jpg, json)`` of the SA-1B sample of the COCO image ``image_id`` (``images``: its folder), or None
    when it is skipped (counted in ``skipped``; dropped annotations in ``dropped``)."""
    if image_id not in coco.imgs:
        skipped["unknown_image_id"] += 1
        return None
    rec = coco.imgs[image_id]
    h, w = int(rec["height"]), int(rec["width"])
    path = find_image_file(images, rec)
    if path is None:
        skipped["missing_image"] += 1
        return None
    photo = read_image_bytes_or_skip(path, skipped)
    if photo is None:
        return None
    data, img = photo
    if img.shape[:2] != (h, w):
        skipped["image_size_mismatch"] += 1
        return None
    anns = _sa1b_annotations(coco, image_id, w, h, keep_crowd, dropped)
    if not anns:
        skipped["no_masks"] += 1
        return None
    key = f"{prefix}_{image_id}"
    if not is_jpeg(data):
        ok, enc = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        data = enc.tobytes()
    record = {"image": {"image_id": int(image_id), "width": w, "height": h, "file_name": f"{key}.jpg"},
              "annotations": anns}
    return key, data, dump_json(record)


def coco_to_sa1b(
    ann: str | Path,
    images: str | Path,
    out: str | Path,
    images_per_tar: int = 1000,
    prefix: str = "coco",
    keep_crowd: bool = False,
    image_ids: Sequence[int] | None = None,
    quality: int = 95,
    progress: bool = True,
) -> dict:
    """Convert the instance set ``ann`` (images under ``images``) to SA-1B tars in ``out``; returns the manifest."""
    from pycocotools.coco import COCO

    ann, images, out = Path(ann), Path(images), Path(out)
    if not ann.is_file():
        raise FileNotFoundError(f"annotation file not found: {ann}")
    if not images.is_dir():
        raise FileNotFoundError(f"image directory not found: {images}")
    if images_per_tar < 1:
        raise ValueError(f"images_per_tar must be >= 1, got {images_per_tar}")
    if not re.fullmatch(r"[A-Za-z0-9]+", prefix):
        raise ValueError(f"prefix {prefix!r} must be alphanumeric (it starts every sample key)")
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            coco = COCO(str(ann))
        except Exception as e:
            raise ValueError(f"cannot read COCO annotations {ann}: {e}") from e
    ids = sorted(coco.imgs) if image_ids is None else [int(i) for i in image_ids]
    out.mkdir(parents=True, exist_ok=True)

    skipped: Counter = Counter()
    dropped: Counter = Counter()
    tars = TarSeries(out, prefix, images_per_tar)


    it = ids
    if progress:
        from tqdm import tqdm

        it = tqdm(ids, unit="img", desc="coco->sa1b", file=sys.stderr)
    for image_id in it:
        sample = _coco_sample(coco, image_id, images, prefix, keep_crowd, quality, skipped, dropped)
        if sample is not None:
            tars.add(*sample)
    shards = tars.close()
    args = {"ann": str(ann), "images": str(images), "images_per_tar": images_per_tar, "prefix": prefix,
            "keep_crowd": keep_crowd, "num_image_ids": len(ids)}
    write_manifest(out, shards, skipped, args, records=len(ids),
                   dropped_annotations={k: int(v) for k, v in sorted(dropped.items())})
    return json.loads((out / "manifest.json").read_text())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m data_prep.coco_to_sa1b", description="COCO-format instance annotations -> SA-1B-format tars + manifest.json")
    p.add_argument("--ann", required=True, help="COCO-format instances json (COCO, LVIS, ...)")
    p.add_argument("--images", required=True, help="folder of the images")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--images-per-tar", type=int, default=1000, help="images per output tar")
    p.add_argument("--prefix", default="coco", help="sample key / tar name prefix (alphanumeric)")
    p.add_argument("--keep-crowd", action="store_true", help="keep iscrowd=1 annotations (dropped by default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    try:
        m = coco_to_sa1b(a.ann, a.images, a.out, a.images_per_tar, a.prefix, a.keep_crowd, progress=not a.no_progress)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sk = ", ".join(f"{k}={v}" for k, v in m["skipped"].items()) or "none"
    dr = ", ".join(f"{k}={v}" for k, v in m["dropped_annotations"].items()) or "none"
    print(f"{m['samples']} images in {len(m['shards'])} tars; skipped images: {sk}; dropped annotations: {dr}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
