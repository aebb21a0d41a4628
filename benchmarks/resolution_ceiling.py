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
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

GROUPS = (("small", 0, 32 ** 2), ("medium", 32 ** 2, 96 ** 2), ("large", 96 ** 2, float("inf")))


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


def run(ann: str, sizes: Sequence[int], limit: int | None = None) -> dict:
    from pycocotools.coco import COCO
    from tqdm import tqdm

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(ann)
    ids = sorted(coco.imgs)[:limit]
    ious: dict[int, dict[str, list[float]]] = {s: {g: [] for g, _, _ in GROUPS} for s in sizes}
    for iid in tqdm(ids, unit="img", file=sys.stderr):
        for a in coco.imgToAnns.get(iid, []):
            if a.get("iscrowd", 0):
                continue
            m = coco.annToMask(a)
            if not m.any():
                continue
            g = next(name for name, lo, hi in GROUPS if lo <= a["area"] < hi)
            for s in sizes:
                ious[s][g].append(ceiling_ious(m, s))
    out = {"ann": ann, "images": len(ids), "sizes": {}}
    for s in sizes:
        allv = [v for vs in ious[s].values() for v in vs]
        out["sizes"][str(s)] = {"miou_1box": 100 * float(np.mean(allv)) if allv else None, "instances": len(allv),
                                **{f"miou_1box_{g}": 100 * float(np.mean(v)) if v else None
                                   for g, v in ious[s].items()}}
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
    res = run(a.ann, a.sizes, a.limit)
    print(f"1-box mIoU ceiling from the low-res mask grid (%), {res['images']} images")
    print(f"{'input':>6} {'all':>6} {'small':>6} {'medium':>7} {'large':>6}")
    for s, r in res["sizes"].items():
        f = [r["miou_1box"], r["miou_1box_small"], r["miou_1box_medium"], r["miou_1box_large"]]
        print(f"{s:>6} " + " ".join("     -" if v is None else f"{v:6.1f}" for v in f))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
