"""data_prep.coco_to_sa1b: COCO instances -> SA-1B-format tars, on real images of the shared COCO sample."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from data_prep import sa1b
from litesam_pl.data.rle import decode_rle, rle_area, rle_to_bbox, rle_to_json
from tests.data_prep.tars import read_tar, samples_of


def _coco_pick(shared_data: Path, n_plain: int = 3):
    """A few train2017 subset image ids: one with a crowd annotation and ``n_plain`` without."""
    ann = shared_data / "coco2017_subset" / "annotations" / "instances_train2017_subset.json"
    data = json.loads(ann.read_text())
    crowd = sorted({a["image_id"] for a in data["annotations"] if a["iscrowd"]})
    plain = sorted({a["image_id"] for a in data["annotations"]} - set(crowd))
    return ann, data, [crowd[0]] + plain[:n_plain]


def test_coco_to_sa1b_real_images(shared_data, tmp_path):
    from pycocotools.coco import COCO

    from data_prep.coco_to_sa1b import coco_to_sa1b

    ann, data, ids = _coco_pick(shared_data)
    images = shared_data / "coco2017_subset" / "train2017"
    m = coco_to_sa1b(ann, images, tmp_path, images_per_tar=3, image_ids=ids, progress=False)
    assert m["samples"] == 4 and [s["samples"] for s in m["shards"]] == [3, 1]
    assert m["shards"][0]["url"] == "coco_000000.tar"
    n_crowd = sum(1 for a in data["annotations"] if a["image_id"] in ids and a["iscrowd"])
    assert m["dropped_annotations"]["crowd"] == n_crowd > 0
    coco = COCO(str(ann))
    for s in m["shards"]:
        members = dict(read_tar(tmp_path / s["url"]))
        for key, (img, rec) in samples_of(tmp_path / s["url"]).items():
            image_id = rec["image"]["image_id"]
            assert key == f"coco_{image_id}"
            info = coco.imgs[image_id]
            assert members[f"{key}.jpg"] == (images / info["file_name"]).read_bytes()  # jpg copied unchanged
            assert img.shape[:2] == (info["height"], info["width"])
            src = {a["id"]: a for a in coco.imgToAnns[image_id] if not a["iscrowd"]}
            assert {a["id"] for a in rec["annotations"]} == set(src)
            for a in rec["annotations"]:
                mask = decode_rle(a["segmentation"])
                np.testing.assert_array_equal(mask, coco.annToMask(src[a["id"]]).astype(bool))
                assert a["segmentation"]["size"] == [info["height"], info["width"]]
                assert a["segmentation"] == rle_to_json(coco.annToRLE(src[a["id"]]))  # data.rle's JSON form
                assert a["area"] == mask.sum() and a["bbox"] == rle_to_bbox(a["segmentation"])
                assert abs(a["bbox"][2] - src[a["id"]]["bbox"][2]) <= 2  # close to COCO's polygon box
                x, y = a["point_coords"][0]
                assert mask[int(y), int(x)]
                assert a["category_id"] == src[a["id"]]["category_id"]
    # the output reads through data_prep.sa1b like any SA-1B tar
    m2 = sa1b.prepare_sa1b([tmp_path / "coco_000000.tar"], tmp_path / "shards", max_side=200, progress=False)
    assert m2["samples"] == 3 and m2["skipped"] == {}


def test_coco_to_sa1b_keep_crowd_and_missing(shared_data, tmp_path):
    import shutil

    from data_prep.coco_to_sa1b import main

    ann, data, ids = _coco_pick(shared_data, n_plain=2)
    src = shared_data / "coco2017_subset" / "train2017"
    images = tmp_path / "imgs"
    images.mkdir()
    recs = {im["id"]: im for im in data["images"]}
    for i in ids[:-1]:  # the last picked image is "not downloaded"
        shutil.copy(src / recs[i]["file_name"], images)
    sub = {**data, "images": [recs[i] for i in ids], "annotations": [a for a in data["annotations"] if a["image_id"] in ids]}
    (tmp_path / "sub.json").write_text(json.dumps(sub))
    rc = main(["--ann", str(tmp_path / "sub.json"), "--images", str(images), "--out", str(tmp_path / "out"),
               "--keep-crowd", "--no-progress", "--prefix", "cocotrain"])
    assert rc == 0
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["samples"] == 2 and m["skipped"] == {"missing_image": 1}
    assert "crowd" not in m["dropped_annotations"]
    crowd_recs = [a for _, (_, r) in samples_of(tmp_path / "out" / "cocotrain_000000.tar").items()
                  for a in r["annotations"] if a.get("iscrowd")]
    assert len(crowd_recs) >= 1 and all(rle_area(a["segmentation"]) == a["area"] > 0 for a in crowd_recs)
    assert main(["--ann", str(tmp_path / "nope.json"), "--images", str(images), "--out", str(tmp_path / "o")]) == 2
