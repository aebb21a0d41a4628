"""Tiny COCO / LVIS instance sets written on the fly: the benchmarks' fast tests run on them without ../shared."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def tiny_instances(root: Path, lvis: bool = False) -> tuple[Path, Path]:
    """5 images 120 x 160 (an odd count: uneven shares) with polygon, RLE, crowd and large instances."""
    import cv2
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    img_dir = root / "images"
    img_dir.mkdir(parents=True)
    images, anns = [], []
    h, w = 120, 160
    for i in range(5):
        image_id = 11 + 7 * i
        img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
        shapes = [(5 + 3 * i, 8, 30, 25), (60, 40 + 2 * i, 12, 10)]
        if i % 2 == 0:
            shapes.append((50, 20, 100, 95))  # > 96^2: a large instance
        for k, (x, y, bw, bh) in enumerate(shapes):
            img[y:y + bh, x:x + bw] = rng.integers(120, 255, 3, dtype=np.uint8)
            seg = [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]
            if k == 1:  # an RLE instance
                m = np.zeros((h, w), np.uint8, order="F")
                m[y:y + bh, x:x + bw] = 1
                rle = mask_utils.encode(m)
                seg = {"size": [h, w], "counts": rle["counts"].decode("ascii")}
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": 1 + k % 2,
                         "bbox": [x, y, bw, bh], "area": float(bw * bh), "segmentation": seg, "iscrowd": 0})
        if i == 1 and not lvis:  # a crowd region: not prompted, counted
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": 1, "bbox": [100, 5, 20, 20],
                         "area": 400.0, "segmentation": [[100, 5, 120, 5, 120, 25, 100, 25]], "iscrowd": 1})
        name = f"{image_id:012d}.png"
        cv2.imwrite(str(img_dir / name), img[:, :, ::-1])
        rec = {"id": image_id, "file_name": name, "height": h, "width": w}
        if lvis:
            rec.update(coco_url=f"http://images.cocodataset.org/val2017/{name}", neg_category_ids=[],
                       not_exhaustive_category_ids=[])
        images.append(rec)
    cats = [{"id": 1, "name": "a", "supercategory": "x"}, {"id": 2, "name": "b", "supercategory": "x"}]
    if lvis:
        for a in anns:
            a.pop("iscrowd")
        cats = [{**cats[0], "frequency": "f"}, {**cats[1], "frequency": "c"}]
    ann = root / ("lvis.json" if lvis else "instances.json")
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return ann, img_dir
