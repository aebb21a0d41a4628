"""BSDS500 human segmentations -> SA-1B-format tars + ``manifest.json`` (as ``coco_to_sa1b`` does for COCO).

    python -m data_prep.bsds_to_sa1b --root ../shared/data/bsds500 --splits train val --out data/real/raw/bsds

Each image of the chosen splits becomes ``bsds_<id>.jpg`` + ``.json`` in the SA-1B schema. Its masks are the
regions of every annotator's label map (``groundTruth[k].Segmentation``: 4-9 annotators, ~21 regions each), so an
image carries what several people called "the things in this picture" at several granularities, like SA-1B's
whole/part/subpart masks. Rules (recorded in the manifest's ``args``):

- A region smaller than ``--min-area`` pixels (default 16) is dropped and counted (``small_region``).
- **Near-duplicates across annotators are merged:** regions are visited from the largest down; a region whose mask
  IoU with an already kept one is at least ``--dedup-iou`` (default 0.85) is not kept again, it only adds one to the
  kept mask's ``annotators`` count (dropped and counted as ``duplicate``). The kept mask is the first (largest)
  of its group. Two annotators outlining the same object differ by a few boundary pixels (IoU typically > 0.9),
  while a part and its whole, or a coarser and a finer split, stay well below 0.85, so both granularities survive.
- A region that covers the whole image (a lazy "everything" label) is dropped (``whole_image``).
- ``predicted_iou`` = the fraction of annotators who drew the region (>= 1/K), ``stability_score`` 1.0,
  ``point_coords`` = the most interior pixel (``coco_to_sa1b.interior_point_coords``), ``crop_box`` the whole image.

The jpg bytes are copied unchanged. The result goes through ``data_prep.sa1b`` like raw SA-1B tars.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from litesam_pl.data.rle import encode_mask, rle_to_bbox

from ._common import TarSeries, dump_json, write_manifest
from .coco_to_sa1b import interior_point_coords
from .sa1b_sample import read_image_bytes_or_skip

__all__ = ["bsds_to_sa1b", "annotator_regions", "region_ious", "merge_regions", "SPLITS"]

SPLITS = ("train", "val", "test")


def annotator_regions(gt_path: Path) -> list[np.ndarray]:
    """The label maps (uint16 HxW, 1..n) of every annotator in a BSDS ``groundTruth/*.mat`` file."""
    from scipy.io import loadmat

    gt = loadmat(str(gt_path))["groundTruth"]
    return [np.asarray(gt[0, k]["Segmentation"][0, 0]) for k in range(gt.shape[1])]


def region_ious(label_maps: Sequence[np.ndarray]) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray]:
    """All regions ``(annotator, label)`` of the label maps, their areas and their pairwise mask IoU matrix.

    Intersections come from the joint label histogram of each pair of maps (one ``bincount`` over the pixels per
    pair), so the cost is ``O(K^2 HW)`` whatever the number of regions; regions of one map are disjoint.
    """
    flat = [np.asarray(m).reshape(-1).astype(np.int64) for m in label_maps]
    ids: list[tuple[int, int]] = []
    offsets, sizes = [], []
    for k, f in enumerate(flat):
        n = int(f.max()) + 1
        offsets.append(len(ids))
        sizes.append(n)
        ids += [(k, lab) for lab in range(n)]
    areas = np.concatenate([np.bincount(f, minlength=n) for f, n in zip(flat, sizes)]).astype(np.float64)
    inter = np.zeros((len(ids), len(ids)))
    for i in range(len(flat)):
        for j in range(i + 1, len(flat)):
            joint = np.bincount(flat[i] * sizes[j] + flat[j], minlength=sizes[i] * sizes[j]).reshape(sizes[i], sizes[j])
            inter[offsets[i]:offsets[i] + sizes[i], offsets[j]:offsets[j] + sizes[j]] = joint
    inter = inter + inter.T
    union = areas[:, None] + areas[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return ids, areas, iou


def merge_regions(label_maps: Sequence[np.ndarray], min_area: int = 16, dedup_iou: float = 0.85
                  ) -> tuple[list[tuple[np.ndarray, int]], Counter]:
    """Every region of every label map as a bool mask, near-duplicates merged (rules in the module docstring).

    Returns ``[(mask, annotators), ...]`` largest first (ties in annotator, label order) and a counter of dropped
    regions by reason.
    """
    dropped: Counter = Counter()
    ids, areas, iou = region_ious(label_maps)
    size = np.asarray(label_maps[0]).size if len(label_maps) else 0
    cand = []
    for r, (k, lab) in enumerate(ids):
        if lab == 0 or areas[r] == 0:  # BSDS labels start at 1; 0 would be unlabelled
            continue
        if areas[r] == size:
            dropped["whole_image"] += 1
        elif areas[r] < min_area:
            dropped["small_region"] += 1
        else:
            cand.append(r)
    cand.sort(key=lambda r: -areas[r])
    kept: list[int] = []
    votes: list[int] = []
    for r in cand:
        if kept:
            j = int(np.argmax(iou[r, kept]))
            if iou[r, kept[j]] >= dedup_iou:
                votes[j] += 1
                dropped["duplicate"] += 1
                continue
        kept.append(r)
        votes.append(1)
    masks = [np.asarray(label_maps[ids[r][0]]) == ids[r][1] for r in kept]
    return list(zip(masks, votes)), dropped


def _list_images(root: Path, splits: Sequence[str]) -> list[tuple[str, Path, Path]]:
    """``(split, image, ground-truth .mat)`` of every image of ``splits`` under ``root``, split by split."""
    items: list[tuple[str, Path, Path]] = []
    for s in splits:
        img_dir, gt_dir = root / "images" / s, root / "groundTruth" / s
        if not img_dir.is_dir() or not gt_dir.is_dir():
            raise FileNotFoundError(f"no BSDS500 split {s!r} under {root} (want images/{s} and groundTruth/{s})")
        items += [(s, p, gt_dir / f"{p.stem}.mat") for p in sorted(img_dir.glob("*.jpg"))]
    return items


def _sa1b_annotations(regions: list[tuple[np.ndarray, int]], n_maps: int, w: int, h: int) -> list[dict]:
    """SA-1B annotations of the merged ``(mask, votes)`` ``regions`` of an image (``w`` x ``h``) that ``n_maps``
    annotators segmented; ``predicted_iou`` is the share of them that drew the region."""
    anns = []
    for i, (m, votes) in enumerate(regions):
        rle = encode_mask(m)
        anns.append({
            "id": i, "segmentation": rle, "bbox": rle_to_bbox(rle), "area": int(m.sum()),
            "predicted_iou": round(votes / n_maps, 4), "stability_score": 1.0,
            "point_coords": [interior_point_coords(m)], "crop_box": [0.0, 0.0, float(w), float(h)],
            "annotators": votes,
        })
    return anns


def _bsds_sample(split: str, img_path: Path, gt_path: Path, min_area: int, dedup_iou: float, skipped: Counter,
                 dropped: Counter) -> tuple[str, bytes, dict] | None:
    """``(key, jpg, record)`` of the SA-1B sample of one BSDS500 image, or None when it is skipped (counted in
    ``skipped``; the regions ``merge_regions`` drops in ``dropped``)."""
    if not gt_path.is_file():
        skipped["missing_ground_truth"] += 1
        return None
    photo = read_image_bytes_or_skip(img_path, skipped)
    if photo is None:
        return None
    data, img = photo
    h, w = img.shape[:2]
    try:
        maps = annotator_regions(gt_path)
    except Exception:
        skipped["bad_ground_truth"] += 1
        return None
    if any(m.shape != (h, w) for m in maps):
        skipped["image_size_mismatch"] += 1
        return None
    regions, d = merge_regions(maps, min_area, dedup_iou)
    dropped.update(d)
    if not regions:
        skipped["no_masks"] += 1
        return None
    anns = _sa1b_annotations(regions, len(maps), w, h)
    key = f"bsds_{img_path.stem}"
    record = {"image": {"image_id": int(img_path.stem) if img_path.stem.isdigit() else img_path.stem,
                        "width": w, "height": h, "file_name": f"{key}.jpg", "split": split},
              "annotations": anns}
    return key, data, record


def bsds_to_sa1b(
    root: str | Path,
    out: str | Path,
    splits: Sequence[str] = ("train", "val"),
    images_per_tar: int = 1000,
    min_area: int = 16,
    dedup_iou: float = 0.85,
    limit: int | None = None,
    progress: bool = True,
) -> dict:
    """Convert BSDS500 ``splits`` under ``root`` to SA-1B tars in ``out`` (one tar series per run); returns the manifest."""
    import json

    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise FileNotFoundError(f"BSDS500 folder not found: {root}")
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise ValueError(f"splits must be among {SPLITS}, got {list(splits)}")
    if not 0.0 < dedup_iou <= 1.0:
        raise ValueError(f"dedup_iou must be in (0, 1], got {dedup_iou}")
    if images_per_tar < 1:
        raise ValueError(f"images_per_tar must be >= 1, got {images_per_tar}")
    items = _list_images(root, splits)
    if limit is not None:
        items = items[:limit]
    out.mkdir(parents=True, exist_ok=True)

    skipped: Counter = Counter()
    dropped: Counter = Counter()
    tars = TarSeries(out, "bsds", images_per_tar)
    masks_kept = 0


    it = items
    if progress:
        from tqdm import tqdm

        it = tqdm(items, unit="img", desc="bsds->sa1b", file=sys.stderr)
    for split, img_path, gt_path in it:
        sample = _bsds_sample(split, img_path, gt_path, min_area, dedup_iou, skipped, dropped)
        if sample is not None:
            key, data, record = sample
            masks_kept += len(record["annotations"])
            tars.add(key, data, dump_json(record))
    shards = tars.close()
    args = {"root": str(root), "splits": list(splits), "images_per_tar": images_per_tar, "min_area": min_area,
            "dedup_iou": dedup_iou, "limit": limit, "masks": masks_kept}
    write_manifest(out, shards, skipped, args, records=len(items),
                   dropped_annotations={k: int(v) for k, v in sorted(dropped.items())})
    return json.loads((out / "manifest.json").read_text())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m data_prep.bsds_to_sa1b",
                                description="BSDS500 human segmentations -> SA-1B-format tars + manifest.json",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--root", required=True, help="BSDS500 folder (images/<split>/*.jpg, groundTruth/<split>/*.mat)")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--splits", nargs="+", default=["train", "val"], choices=SPLITS,
                   help="splits to convert (keep test held out for evaluation)")
    p.add_argument("--images-per-tar", type=int, default=1000, help="images per output tar")
    p.add_argument("--min-area", type=int, default=16, help="drop regions smaller than this many pixels")
    p.add_argument("--dedup-iou", type=float, default=0.85,
                   help="merge regions of different annotators whose mask IoU is at least this")
    p.add_argument("--limit", type=int, default=None, help="convert only the first N images (tests)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    try:
        m = bsds_to_sa1b(a.root, a.out, a.splits, a.images_per_tar, a.min_area, a.dedup_iou, a.limit,
                         progress=not a.no_progress)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sk = ", ".join(f"{k}={v}" for k, v in m["skipped"].items()) or "none"
    dr = ", ".join(f"{k}={v}" for k, v in m["dropped_annotations"].items()) or "none"
    print(f"{m['samples']} images, {m['args']['masks']} masks in {len(m['shards'])} tars; skipped images: {sk}; "
          f"dropped regions: {dr}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
