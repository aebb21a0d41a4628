"""The best 1-box mIoU any model can reach on COCO-format instances at a given input size.

SAM's decoder predicts low-resolution logits (a quarter of the padded input side) that are upsampled bilinearly to
the image and thresholded at 0. This decodes each GT mask itself through that grid (area-downsample to the
low-res size of the image's resized frame, bilinear upsample to the original size, threshold 0.5) and scores it
against the GT: a ceiling from resolution alone, per COCO size group, for each ``--sizes``.

    python -m benchmarks.resolution_ceiling --ann instances_val2017.json --sizes 256 384 512 640 \\
        --json results/resolution_ceiling.json
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmarks.toolkit.results import write_json


def ceiling_ious(mask: np.ndarray, size: int) -> float:
    """IoU of ``mask`` [H, W] with itself after the round trip through the low-res grid of input side ``size``."""
    import cv2

    h, w = mask.shape
    s = size / max(h, w)
    lh, lw = max(1, round(h * s / 4)), max(1, round(w * s / 4))
    low = cv2.resize(mask.astype(np.float32), (lw, lh), interpolation=cv2.INTER_AREA)
    up = cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR) >= 0.5
    g = mask.astype(bool)
    union = (up | g).sum()
    return float((up & g).sum() / union) if union else 0.0


def measure_ceiling(ann: str, sizes: Sequence[int], limit: int | None = None) -> dict:
    from pycocotools.coco import COCO
    from tqdm import tqdm

    from benchmarks._eval_score import miou_row

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(ann)
    ids = sorted(coco.imgs)[:limit]
    ious: dict[int, list[float]] = {s: [] for s in sizes}
    areas: list[float] = []
    for iid in tqdm(ids, unit="img", file=sys.stderr):
        for a in coco.imgToAnns.get(iid, []):
            if a.get("iscrowd", 0):
                continue
            m = coco.annToMask(a)
            if not m.any():
                continue
            areas.append(float(a["area"]))
            for s in sizes:
                ious[s].append(ceiling_ious(m, s))
    out = {"ann": ann, "images": len(ids), "sizes": {}}
    for s in sizes:  # the size groups and key names of benchmarks.coco
        out["sizes"][str(s)] = {**miou_row(ious[s], areas), "instances": len(areas)}
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.resolution_ceiling", description=__doc__.splitlines()[0])
    p.add_argument("--ann", required=True, help="COCO-format instances json")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 384, 512, 640, 1024], help="input sides")
    p.add_argument("--limit", type=int, default=None, help="first N images only")
    p.add_argument("--json", default=None, help="write the result here")
    a = p.parse_args(argv)
    if not Path(a.ann).is_file():
        p.error(f"--ann not found: {a.ann}")
    res = measure_ceiling(a.ann, a.sizes, a.limit)
    print(f"1-box mIoU ceiling from the low-res mask grid (%), {res['images']} images")
    print(f"{'input':>6} {'all':>6} {'small':>6} {'medium':>7} {'large':>6}")
    for s, r in res["sizes"].items():
        f = [r["miou_1box"], r["miou_1box_small"], r["miou_1box_medium"], r["miou_1box_large"]]
        print(f"{s:>6} " + " ".join("     -" if v is None else f"{v:6.1f}" for v in f))
    if a.json:
        write_json(a.json, res)
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
