"""data_prep: synthetic SA-1B tars, SA-1B -> shards, COCO -> SA-1B, download checks."""
from __future__ import annotations

import hashlib
import json
import tarfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_prep._common import sample_members, tar_bytes
from data_prep.synthetic import size_group, write_synthetic_sa1b
from litesam_pl.data.rle import decode_rle, encode_mask, rle_area, rle_to_bbox


def read_tar(path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def samples_of(path: Path) -> dict[str, tuple[np.ndarray, dict]]:
    """key -> (RGB image, json record) of one tar."""
    members = read_tar(path)
    out: dict[str, dict] = {}
    for name, data in members:
        key, ext = name.split(".", 1)
        out.setdefault(key, {})[ext] = data
    res = {}
    for key, d in out.items():
        img = cv2.imdecode(np.frombuffer(d["jpg"], np.uint8), cv2.IMREAD_COLOR)
        res[key] = (img, json.loads(d["json"]))
    return res


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------------- synthetic
def test_synthetic_layout_and_schema(synthetic_sa1b):
    tars = sorted(synthetic_sa1b.glob("*.tar"))
    assert [t.name for t in tars] == ["sa_000000.tar", "sa_000001.tar", "sa_000002.tar"]
    groups = Counter()
    n_images = 0
    for t in tars:
        names = [n for n, _ in read_tar(t)]
        # jpg before json per key, keys contiguous
        assert len(names) == 8
        for i in range(0, len(names), 2):
            assert names[i].endswith(".jpg") and names[i + 1] == names[i][:-4] + ".json"
        with tarfile.open(t) as tar:
            for m in tar.getmembers():
                assert m.mtime == tar.getmembers()[0].mtime and m.uid == 0 and m.gid == 0
        for key, (img, rec) in samples_of(t).items():
            n_images += 1
            assert img.shape == (192, 256, 3)
            im = rec["image"]
            assert im["width"] == 256 and im["height"] == 192 and im["file_name"] == f"{key}.jpg"
            assert isinstance(im["image_id"], int)
            assert key == f"sa_{im['image_id']}"
            union = np.zeros((192, 256), bool)
            anns = rec["annotations"]
            assert len(anns) > 0
            assert len({a["id"] for a in anns}) == len(anns)
            for a in anns:
                assert set(a) == {"id", "segmentation", "bbox", "area", "predicted_iou", "stability_score",
                                  "point_coords", "crop_box"}
                seg = a["segmentation"]
                assert seg["size"] == [192, 256] and isinstance(seg["counts"], str)
                m = decode_rle(seg)
                assert a["area"] == int(m.sum()) > 0
                assert a["bbox"] == rle_to_bbox(seg)
                assert a["crop_box"] == [0, 0, 256, 192]
                x, y = a["point_coords"][0]
                assert m[int(y), int(x)], "point prompt must lie inside its mask"
                assert 0 <= a["predicted_iou"] <= 1 and 0 <= a["stability_score"] <= 1
                groups[size_group((a["bbox"][3], a["bbox"][2]), (192, 256))] += 1
                union |= m
            assert 0.02 < (~union).mean() < 0.98, "some background must stay unlabeled"
    assert n_images == 12
    assert groups[0] > 0 and groups[1] > 0 and groups[2] > 0, groups


def test_synthetic_deterministic(tmp_path, synthetic_sa1b):
    a = write_synthetic_sa1b(tmp_path / "a", num_images=12, seed=0, images_per_tar=4, size=(192, 256))
    assert [sha(p) for p in a] == [sha(synthetic_sa1b / p.name) for p in a]
    b = write_synthetic_sa1b(tmp_path / "b", num_images=4, seed=1, images_per_tar=4, size=(192, 256))
    assert sha(b[0]) != sha(a[0])
    # the image content depends on (seed, index), not on how images are grouped into tars
    c = write_synthetic_sa1b(tmp_path / "c", num_images=4, seed=0, images_per_tar=2, size=(192, 256))
    assert read_tar(c[1]) == read_tar(a[0])[4:8]


def test_synthetic_parts_and_occlusion(synthetic_sa1b):
    """Masks are visible regions: any two are disjoint (occlusion removed the hidden pixels) or nested (a part
    inside its whole, the whole's mask including the part); some nesting exists."""
    nested = 0
    for t in sorted(synthetic_sa1b.glob("*.tar")):
        for key, (img, rec) in samples_of(t).items():
            masks = [decode_rle(a["segmentation"]) for a in rec["annotations"]]
            for i in range(len(masks)):
                for j in range(i + 1, len(masks)):
                    inter = (masks[i] & masks[j]).sum()
                    if inter == 0:
                        continue
                    small, big = sorted((masks[i], masks[j]), key=lambda m: m.sum())
                    assert inter == small.sum(), f"{key}: masks {i} and {j} overlap without nesting"
                    assert (small & ~big).sum() == 0
                    nested += 1
    assert nested > 0


def test_synthetic_cli(tmp_path):
    from data_prep.synthetic import main

    main(["--out", str(tmp_path), "--num-images", "3", "--seed", "5", "--images-per-tar", "2", "--size", "64", "80"])
    assert sorted(p.name for p in tmp_path.glob("*.tar")) == ["sa_000000.tar", "sa_000001.tar"]
    with pytest.raises(ValueError):
        write_synthetic_sa1b(tmp_path / "x", num_images=0)
    # the smallest allowed size still draws every image
    (tiny,) = write_synthetic_sa1b(tmp_path / "tiny", num_images=10, seed=3, images_per_tar=10, size=(32, 32))
    assert len(samples_of(tiny)) == 10


# ----------------------------------------------------------------------------------------------- sa1b shards
from data_prep import sa1b  # noqa: E402


def shard_shas(out: Path) -> dict[str, str]:
    return {p.name: sha(p) for p in sorted(out.glob("*.tar"))}


def test_sa1b_resize_and_manifest(synthetic_sa1b, tmp_path):
    out = tmp_path / "shards"
    m = sa1b.prepare_sa1b([synthetic_sa1b], out, max_side=128, shard_size=3, workers=1, progress=False)
    assert m["samples"] == 12 and m["skipped"] == {} and m["records"] == 12
    # 3 input tars of 4 -> per input shards of 3 + 1, named after the input
    assert [s["url"] for s in m["shards"]] == [f"sa_00000{i}-00000{k}.tar" for i in range(3) for k in range(2)]
    assert [s["samples"] for s in m["shards"]] == [3, 1] * 3
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == m and m["args"]["max_side"] == 128
    src = {}
    for t in sorted(synthetic_sa1b.glob("*.tar")):
        src.update(samples_of(t))
    for s in m["shards"]:
        p = out / s["url"]
        assert p.stat().st_size == s["bytes"] and sha(p) == s["sha256"]
        for key, (img, rec) in samples_of(p).items():
            assert img.shape == (96, 128, 3)  # 192x256 -> long side 128
            assert rec["image"]["width"] == 128 and rec["image"]["height"] == 96
            src_rec = src[key][1]
            assert len(rec["annotations"]) <= len(src_rec["annotations"])
            for a in rec["annotations"]:
                assert a["segmentation"]["size"] == [96, 128]
                mask = decode_rle(a["segmentation"])
                assert a["area"] == mask.sum() > 0 and a["bbox"] == rle_to_bbox(a["segmentation"])
                assert a["crop_box"] == [0.0, 0.0, 128.0, 96.0]
                x, y = a["point_coords"][0]
                assert 0 <= x < 128 and 0 <= y < 96
            # same ids, resized masks stay close to the source masks downsampled
            by_id = {a["id"]: a for a in src_rec["annotations"]}
            for a in rec["annotations"]:
                big = decode_rle(by_id[a["id"]]["segmentation"])
                ref = cv2.resize(big.astype(np.float32), (128, 96), interpolation=cv2.INTER_AREA) >= 0.5
                np.testing.assert_array_equal(decode_rle(a["segmentation"]), ref)
                px, py = by_id[a["id"]]["point_coords"][0]
                assert a["point_coords"][0] == [px * 0.5, py * 0.5]


def test_sa1b_never_upscales(synthetic_sa1b, tmp_path):
    m = sa1b.prepare_sa1b([synthetic_sa1b / "sa_000000.tar"], tmp_path, max_side=1024, shard_size=10, progress=False)
    src = dict(read_tar(synthetic_sa1b / "sa_000000.tar"))
    got = dict(read_tar(tmp_path / m["shards"][0]["url"]))
    assert got.keys() == src.keys()
    for name in got:
        if name.endswith(".jpg"):
            assert got[name] == src[name]  # original bytes kept
        else:
            assert json.loads(got[name]) == json.loads(src[name])


def _bad_tar(synthetic_sa1b: Path, path: Path) -> None:
    """4 good samples + one of each kind of damage."""
    good = read_tar(synthetic_sa1b / "sa_000000.tar")
    jpg, js = good[0][1], json.loads(good[1][1])
    bad_size = json.loads(json.dumps(js))
    bad_size["annotations"][0]["segmentation"] = encode_mask(np.ones((10, 10), bool))
    no_masks = {**js, "annotations": []}
    bad_counts = json.loads(json.dumps(js))
    bad_counts["annotations"][1]["segmentation"]["counts"] = bad_counts["annotations"][1]["segmentation"]["counts"][:5]
    members = good + sample_members([
        ("sa_900", jpg[: len(jpg) // 2], json.dumps(js).encode()),  # truncated jpg
        ("sa_901", jpg, b'{"image": {"width": 256, '),  # bad JSON
        ("sa_902", jpg, json.dumps(bad_size).encode()),  # RLE of the wrong size
        ("sa_903", jpg, json.dumps(no_masks).encode()),  # no masks
        ("sa_904", b"not an image at all", json.dumps(js).encode()),  # garbage image
        ("sa_906", jpg, json.dumps(bad_counts).encode()),  # RLE string cut short
    ]) + [("sa_905.json", json.dumps(js).encode())]  # json without its jpg
    path.write_bytes(tar_bytes(members))


def test_sa1b_skips_bad_samples(synthetic_sa1b, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    _bad_tar(synthetic_sa1b, tmp_path / "in" / "bad.tar")
    rc = sa1b.main(["--src", str(tmp_path / "in" / "*.tar"), "--out", str(tmp_path / "out"), "--max-side", "128",
                    "--workers", "1", "--no-progress"])
    assert rc == 0
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["samples"] == 4 and m["records"] == 11
    assert m["skipped"] == {"corrupt_image": 2, "bad_json": 1, "rle_size_mismatch": 1, "no_masks": 1,
                            "missing_image": 1, "bad_rle": 1}
    printed = capsys.readouterr().out
    for reason in m["skipped"]:
        assert reason in printed
    keys = {n.split(".")[0] for n, _ in read_tar(tmp_path / "out" / "bad-000000.tar")}
    assert keys == {"sa_1", "sa_2", "sa_3", "sa_4"}


def test_sa1b_bad_src(tmp_path, capsys):
    assert sa1b.main(["--src", str(tmp_path / "nope*.tar"), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "no SA-1B tars" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        sa1b.prepare_sa1b([tmp_path / "missing_dir"], tmp_path / "o", progress=False)


def test_sa1b_resume_is_byte_identical(synthetic_sa1b, tmp_path, monkeypatch):
    kw = dict(max_side=100, shard_size=2, progress=False)
    ref = sa1b.prepare_sa1b([synthetic_sa1b], tmp_path / "ref", workers=2, **kw)  # uninterrupted, 2 processes
    ref_shas = shard_shas(tmp_path / "ref")
    assert ref_shas == {s["url"]: s["sha256"] for s in ref["shards"]} and len(ref_shas) == 6

    # 1) interrupted in the middle of the second input
    out = tmp_path / "run"
    calls = {"n": 0, "stop_at": 7}
    real = sa1b.process_sample

    def counting(*a, **k):
        calls["n"] += 1
        if calls["n"] == calls["stop_at"]:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(sa1b, "process_sample", counting)
    with pytest.raises(KeyboardInterrupt):  # input 0 done (2 shards), input 1 has 1 of 2 shards
        sa1b.prepare_sa1b([synthetic_sa1b], out, workers=1, **kw)
    assert 0 < len(list(out.glob("*.tar"))) < 6 and not (out / "manifest.json").exists()
    # 2) plus a finished shard deleted and a stale tmp file left behind
    (out / "sa_000000-000001.tar").unlink()
    (out / "sa_000001-000001.tar.tmp").write_bytes(b"partial garbage")
    calls.update(n=0, stop_at=-1)
    m = sa1b.prepare_sa1b([synthetic_sa1b], out, workers=1, **kw)
    assert shard_shas(out) == ref_shas
    assert m["shards"] == ref["shards"] and m["samples"] == ref["samples"] == 12
    assert not list(out.glob("*.tmp"))
    # only the deleted shard of input 0, the unfinished shard of input 1 and input 2 are computed
    assert calls["n"] == 2 + 2 + 4
    # 3) a rerun of a finished directory does no work and keeps everything
    calls["n"] = 0
    m2 = sa1b.prepare_sa1b([synthetic_sa1b], out, workers=1, **kw)
    assert calls["n"] == 0 and m2["shards"] == ref["shards"]
    # different settings into the same directory are refused
    with pytest.raises(ValueError, match="different settings"):
        sa1b.prepare_sa1b([synthetic_sa1b], out, max_side=64, shard_size=2, progress=False)


def test_sa1b_fraction(synthetic_sa1b, tmp_path):
    def keys(out, src, **kw):
        m = sa1b.prepare_sa1b(src, out, max_side=64, shard_size=100, progress=False, **kw)
        return {n.split(".")[0] for s in m["shards"] for n, _ in read_tar(out / s["url"])}, m

    a, ma = keys(tmp_path / "a", [synthetic_sa1b], fraction=0.5, seed=0)
    b, _ = keys(tmp_path / "b", [synthetic_sa1b], fraction=0.5, seed=0)
    c, _ = keys(tmp_path / "c", [synthetic_sa1b], fraction=0.5, seed=1)
    assert a == b and 0 < len(a) < 12 and a != c
    assert ma["not_selected"] == 12 - len(a) and ma["samples"] == len(a)
    assert a == {f"sa_{i}" for i in range(1, 13) if sa1b.is_selected(f"sa_{i}", 0, 0.5)}
    # the decision is per image key, not per position: a different grouping of the same images agrees
    regrouped = write_synthetic_sa1b(tmp_path / "regrouped", num_images=12, seed=0, images_per_tar=5, size=(192, 256))
    d, _ = keys(tmp_path / "d", regrouped, fraction=0.5, seed=0)
    assert d == a
    # over many keys the fraction is close to the target
    share = np.mean([sa1b.is_selected(f"sa_{i}", 0, 0.18) for i in range(20000)])
    assert abs(share - 0.18) < 0.01


def test_sa1b_extracted_folder(synthetic_sa1b, tmp_path):
    folder = tmp_path / "sa_000002"
    folder.mkdir()
    with tarfile.open(synthetic_sa1b / "sa_000002.tar") as tar:
        tar.extractall(folder, filter="data")
    m_dir = sa1b.prepare_sa1b([folder], tmp_path / "o1", max_side=128, shard_size=10, progress=False)
    m_tar = sa1b.prepare_sa1b([synthetic_sa1b / "sa_000002.tar"], tmp_path / "o2", max_side=128, shard_size=10,
                              progress=False)
    assert m_dir["shards"] == m_tar["shards"]


# ----------------------------------------------------------------------------------------------- COCO -> SA-1B
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


# ----------------------------------------------------------------------------------------------- download checks
def test_check_lvis_sample_reports_64_missing(shared_data, capsys):
    from data_prep.check import check_lvis, main

    root = shared_data / "lvis_v0.5_val100"
    ann = root / "annotations" / "lvis_v0.5_val100_subset.json"
    r = check_lvis(root, ann=ann)
    assert not r.ok and r.expected == 66 and r.found == 2 and len(r.missing) == 64
    assert "000000346638.jpg" not in r.missing and all(n.endswith(".jpg") for n in r.missing)
    assert main(["lvis", "--root", str(root), "--ann", str(ann)]) == 1
    out = capsys.readouterr().out
    assert "INCOMPLETE" in out and "missing 64" in out and r.missing[0] in out


def test_check_coco(shared_data, tmp_path):
    import shutil

    from data_prep.check import check_coco, main

    root = shared_data / "coco2017_subset"
    ann = root / "annotations" / "instances_val2017_subset.json"
    r = check_coco(root, ann=ann, verify=True)
    assert r.ok and r.found == r.expected == 138
    # the standard layout, one image missing and one annotation file of the wrong length
    data = json.loads(ann.read_text())
    keep = data["images"][:3]
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val2017").mkdir()
    (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps({**data, "images": keep}))
    for im in keep[:2]:
        shutil.copy(root / "val2017" / im["file_name"], tmp_path / "val2017")
    r = check_coco(tmp_path)
    assert not r.ok and r.missing == [keep[2]["file_name"]] and r.found == 2
    assert any("official file lists 5000" in p for p in r.problems)
    assert main(["coco", "--root", str(tmp_path)]) == 1
    assert main(["coco", "--root", str(tmp_path / "nowhere")]) == 1


def test_check_bsds(shared_data, tmp_path):
    import shutil

    from data_prep.check import check_bsds

    root = shared_data / "bsds500"
    r = check_bsds(root, ["test"], ids=root / "test_ids.txt")
    assert r.ok and r.found == 135
    r = check_bsds(root, ["test"])  # against the official 200 test images
    assert not r.ok and any("135 of 200" in p for p in r.problems)
    ids = (root / "test_ids.txt").read_text().split()[:3]
    for sub, ext in (("images", "jpg"), ("groundTruth", "mat")):
        (tmp_path / sub / "test").mkdir(parents=True)
        for i in ids:
            if not (sub == "groundTruth" and i == ids[1]):
                shutil.copy(root / sub / "test" / f"{i}.{ext}", tmp_path / sub / "test")
    (tmp_path / "ids.txt").write_text("\n".join(ids))
    r = check_bsds(tmp_path, ["test"], ids=tmp_path / "ids.txt", verify=True)
    assert r.missing == [f"groundTruth/test/{ids[1]}.mat"] and r.found == 2 and not r.problems


def test_check_sa1b(synthetic_sa1b, tmp_path):
    import shutil

    from data_prep.check import check_sa1b, main

    assert check_sa1b(synthetic_sa1b, verify=True).ok
    raw = tmp_path / "raw"
    shutil.copytree(synthetic_sa1b, raw)
    (raw / "sa_000001.tar").unlink()
    data = (raw / "sa_000002.tar").read_bytes()
    (raw / "sa_000002.tar").write_bytes(data[: len(data) // 2])
    r = check_sa1b(raw)
    assert r.missing == ["sa_000001.tar"] and r.found == 1 and "sa_000002.tar: truncated" in r.problems[0]
    assert main(["sa1b", "--root", str(raw)]) == 1
    # a links file names the tars that should be there
    (raw / "sa1b_links.txt").write_text("file_name\tcdn_link\nsa_000000.tar\thttp://x\nsa_000003.tar\thttp://y\n")
    assert check_sa1b(raw).missing == ["sa_000003.tar"]
    # prepared shards: listed in manifest.json
    out = tmp_path / "shards"
    sa1b.prepare_sa1b([synthetic_sa1b], out, max_side=64, shard_size=4, progress=False)
    assert check_sa1b(out, verify=True).ok
    p = out / "sa_000001-000000.tar"
    p.write_bytes(b"x" * p.stat().st_size)  # same size, wrong content
    assert check_sa1b(out).ok and not check_sa1b(out, verify=True).ok
    (out / "sa_000000-000000.tar").unlink()
    assert check_sa1b(out).missing == ["sa_000000-000000.tar"]


def test_shards_read_by_webdataset(synthetic_sa1b, tmp_path):
    """Raw synthetic tars and prepared shards read the same way through webdataset."""
    import webdataset as wds

    sa1b.prepare_sa1b([synthetic_sa1b], tmp_path, max_side=128, shard_size=5, progress=False)
    for urls, side in ((sorted(map(str, synthetic_sa1b.glob("*.tar"))), 256), (sorted(map(str, tmp_path.glob("*.tar"))), 128)):
        ds = wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("rgb8")
        keys = []
        for s in ds:
            keys.append(s["__key__"])
            assert max(s["jpg"].shape[:2]) == side and s["json"]["image"]["width"] == side
            assert s["json"]["annotations"][0]["segmentation"]["size"] == list(s["jpg"].shape[:2])
        assert sorted(keys) == sorted(f"sa_{i}" for i in range(1, 13))


def test_sa1b_truncated_and_unreadable_inputs(synthetic_sa1b, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    data = (synthetic_sa1b / "sa_000001.tar").read_bytes()
    names = [n for n, _ in read_tar(synthetic_sa1b / "sa_000001.tar")]
    (src / "cut.tar").write_bytes(data[: len(data) * 5 // 8])  # a download that stopped part-way
    (src / "junk.tar").write_bytes(b"this is not a tar file" * 100)
    rc = sa1b.main(["--src", str(src), "--out", str(tmp_path / "out"), "--max-side", "64", "--workers", "1",
                    "--no-progress"])
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert rc == 1 and len(m["errors"]) == 1 and "junk.tar" in m["errors"][0]
    assert m["skipped"]["unreadable_input"] == 1 and m["skipped"]["truncated_input"] == 1
    assert 1 <= m["samples"] < len(names) // 2  # the complete samples before the cut are kept
    assert "unreadable_input" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------- sa1b hash ranges
@pytest.fixture(scope="module")
def tiny_sa1b(tmp_path_factory) -> Path:
    """48 synthetic 64x64 SA-1B images in 3 tars (keys sa_1 .. sa_48)."""
    out = tmp_path_factory.mktemp("tiny_sa1b")
    write_synthetic_sa1b(out, num_images=48, seed=0, images_per_tar=16, size=(64, 64))
    return out


def _run_sa1b(src: Path, out: Path, *flags: str) -> tuple[int, set[str], dict | None]:
    """``python -m data_prep.sa1b`` -> (exit code, the ``__key__``s in the output shards, manifest or None)."""
    rc = sa1b.main(["--src", str(src), "--out", str(out), "--max-side", "64", "--shard-size", "10", "--workers", "1",
                    "--no-progress", *flags])
    keys = {n.split(".")[0] for t in sorted(out.glob("*.tar")) for n, _ in read_tar(t)}
    mp = out / "manifest.json"
    return rc, keys, (json.loads(mp.read_text()) if mp.exists() else None)


def test_sa1b_hash_ranges_disjoint(tiny_sa1b, tmp_path):
    """Train and val made from the same tars with the documented ranges (train 0-0.18, val 0.18-0.20) share no
    image and together keep exactly what one run over 0-0.20 keeps; the same for other splits, one ending at HI = 1."""
    everything = {f"sa_{i}" for i in range(1, 49)}
    # seed 3 puts 1 of the 48 keys in [0.18, 0.20) (seed 0 puts none); the property does not depend on the seed
    for k, ((lo, mid, hi), seed) in enumerate((((0.0, 0.18, 0.20), 3), ((0.0, 0.5, 1.0), 0), ((0.25, 0.6, 0.9), 1))):
        runs = {}
        for name, (a, b) in (("train", (lo, mid)), ("val", (mid, hi)), ("union", (lo, hi))):
            rc, keys, m = _run_sa1b(tiny_sa1b, tmp_path / f"{k}{name}", "--hash-range", str(a), str(b),
                                    "--seed", str(seed))
            assert rc == 0 and m["hash_range"] == [a, b] and m["args"]["seed"] == seed
            assert m["skipped"] == {} and m["samples"] == len(keys) and m["not_selected"] == 48 - len(keys)
            assert keys == {key for key in everything if sa1b.in_hash_range(key, seed, a, b)}
            runs[name] = keys
        assert runs["train"] and runs["val"], (lo, mid, hi)
        assert not runs["train"] & runs["val"], (lo, mid, hi)
        assert runs["train"] | runs["val"] == runs["union"], (lo, mid, hi)
        if hi == 1.0 and lo == 0.0:  # HI = 1 keeps every u >= LO
            assert runs["union"] == everything
        # the manifests prove it without reading the shards
        sa1b.check_disjoint(tmp_path / f"{k}train", tmp_path / f"{k}val")
        with pytest.raises(ValueError, match="overlap"):
            sa1b.check_disjoint(tmp_path / f"{k}train", tmp_path / f"{k}union")
    with pytest.raises(ValueError, match="different seeds"):
        sa1b.check_disjoint(tmp_path / "0train", tmp_path / "1val")


def test_sa1b_fraction_is_hash_range_from_zero(tiny_sa1b, tmp_path, capsys):
    """``--fraction F`` selects exactly what ``--hash-range 0 F`` does (byte-identical shards and manifest) and what
    the former ``u < F`` rule did; bad ranges are refused with one line; a pre-``--hash-range`` output resumes."""
    for f in ("0.3", "0.18", "1.0"):
        rc_a, a, ma = _run_sa1b(tiny_sa1b, tmp_path / f"frac{f}", "--fraction", f)
        rc_b, b, mb = _run_sa1b(tiny_sa1b, tmp_path / f"range{f}", "--hash-range", "0", f)
        assert rc_a == rc_b == 0 and a == b and 0 < len(a)
        assert shard_shas(tmp_path / f"frac{f}") == shard_shas(tmp_path / f"range{f}")
        ma["args"].pop("src"), mb["args"].pop("src")
        assert ma == mb and ma["hash_range"] == [0.0, float(f)]
    assert len(a) == 48  # --fraction 1.0 keeps everything

    def former(key: str, seed: int, fraction: float) -> bool:  # is_selected before --hash-range existed
        if fraction >= 1.0:
            return True
        return int.from_bytes(hashlib.sha1(f"{seed}:{key}".encode()).digest()[:8], "big") / 2.0**64 < fraction

    for fraction in (0.02, 0.18, 0.5, 1.0):
        assert all(sa1b.is_selected(f"sa_{i}", 0, fraction) == former(f"sa_{i}", 0, fraction)
                   == sa1b.in_hash_range(f"sa_{i}", 0, 0.0, fraction) for i in range(3000))

    # an output directory written before --hash-range (state config with "fraction") is resumed, not refused
    out = tmp_path / "frac0.3"
    for st in (out / "_state").glob("*.json"):
        d = json.loads(st.read_text())
        c = d["config"]
        d["config"] = {"max_side": c["max_side"], "fraction": c["hash_hi"], "seed": c["seed"],
                       "shard_size": c["shard_size"], "quality": c["quality"]}
        st.write_text(json.dumps(d))
    before = shard_shas(out)
    assert _run_sa1b(tiny_sa1b, out, "--fraction", "0.3")[0] == 0 and shard_shas(out) == before

    # bad ranges: exit code 2 and a one-line error
    capsys.readouterr()
    for lo, hi in (("0.5", "0.5"), ("0.3", "0.1"), ("-0.1", "0.5"), ("0", "1.5")):
        rc, _, _ = _run_sa1b(tiny_sa1b, tmp_path / "bad", "--hash-range", lo, hi)
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("error: --hash-range LO HI") and err.count("\n") == 1, err
    with pytest.raises(SystemExit):  # argparse: not allowed with each other
        _run_sa1b(tiny_sa1b, tmp_path / "bad", "--fraction", "0.5", "--hash-range", "0", "0.5")
    assert "not allowed with" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- sa1b many jobs
@pytest.fixture(scope="module")
def five_tars(tmp_path_factory, synthetic_sa1b) -> Path:
    """5 synthetic SA-1B tars of 4 64x64 images (sa_000000..4.tar, keys sa_1 .. sa_20), plus ``bad.tar`` (4 good
    samples and one of each kind of damage) and an unreadable ``zz_junk.tar``: 7 inputs."""
    out = tmp_path_factory.mktemp("five_tars")
    write_synthetic_sa1b(out, num_images=20, seed=0, images_per_tar=4, size=(64, 64))
    _bad_tar(synthetic_sa1b, out / "bad.tar")
    (out / "zz_junk.tar").write_bytes(b"this is not a tar file" * 100)
    return out


def _prep_job(src: Path, out: Path, *flags: str) -> int:
    return sa1b.main(["--src", str(src), "--out", str(out), "--max-side", "48", "--shard-size", "3", "--workers", "1",
                      "--hash-range", "0", "0.9", "--no-progress", *flags])


def _run_jobs(src: Path, out: Path, n: int, *flags: str) -> list[int]:
    return [_prep_job(src, out, "--num-jobs", str(n), "--job-index", str(i), *flags) for i in range(n)]


def test_sa1b_jobs_merge_equals_one_job(five_tars, tmp_path, capsys):
    """7 inputs over 3 jobs (--num-jobs 3 --job-index 0/1/2, same --out) + --merge: the same shard files with the
    same sha256 as one job, and the same manifest.json apart from "jobs": 3; reruns and both merge commands agree."""
    from data_prep.merge import main as merge_main

    inputs = sa1b.find_inputs([five_tars])
    parts = [sa1b.assign_inputs(inputs, 3, i) for i in range(3)]
    assert sorted(p for part in parts for p in part) == sorted(inputs) and [len(p) for p in parts] == [3, 2, 2]

    rc_one = _prep_job(five_tars, tmp_path / "one")
    one = json.loads((tmp_path / "one" / "manifest.json").read_text())
    assert rc_one == 1 and len(one["errors"]) == 1  # zz_junk.tar; the rest is prepared
    assert one["skipped"]["unreadable_input"] == 1 and one["not_selected"] > 0 and one["samples"] > 10

    many = tmp_path / "many"
    assert _run_jobs(five_tars, many, 3) == [1, 0, 0]  # zz_junk.tar is input 6 of 7: job 0's
    assert not (many / "manifest.json").exists()
    urls = []
    for i in range(3):
        p = json.loads(sa1b.partial_path(many, i, 3).read_text())
        assert p["job"]["assigned"] == [str(q) for q in parts[i]] and p["samples"] == sum(s["samples"] for s in p["shards"])
        urls.append({s["url"] for s in p["shards"]})
    assert all(urls) and not (urls[0] & urls[1] or urls[0] & urls[2] or urls[1] & urls[2])
    capsys.readouterr()
    assert sa1b.main(["--merge", str(many)]) == rc_one
    assert "merged from 3 jobs" in capsys.readouterr().out

    assert shard_shas(many) == shard_shas(tmp_path / "one") and len(shard_shas(many)) == len(one["shards"])
    merged = json.loads((many / "manifest.json").read_text())
    assert merged.pop("jobs") == 3
    assert merged == one  # args (src, settings, workers), shards, counts, errors in input order, hash_range
    # a rerun of a finished job does no work and the merge (either command, with sha256 checks) is the same
    before = {p.name: p.stat().st_mtime_ns for p in many.glob("*.tar")}
    assert _prep_job(five_tars, many, "--num-jobs", "3", "--job-index", "1") == 0
    assert {p.name: p.stat().st_mtime_ns for p in many.glob("*.tar")} == before
    assert merge_main([str(many), "--verify"]) == rc_one
    assert json.loads((many / "manifest.json").read_text()) == {**one, "jobs": 3}


def test_sa1b_merge_refuses_bad_partials(five_tars, tmp_path, capsys):
    """Every broken set of partials is refused with a one-line error (exit code 2) and no manifest.json."""
    import shutil

    from data_prep.merge import MergeError, merge_jobs

    good = tmp_path / "good"
    good.mkdir()
    for t in sorted(five_tars.glob("sa_*.tar")):
        shutil.copy(t, good)
    out = tmp_path / "out"
    assert _run_jobs(good, out, 3) == [0, 0, 0]
    part = {i: sa1b.partial_path(out, i, 3) for i in range(3)}
    saved = {i: p.read_bytes() for i, p in part.items()}

    def refused(match: str, *flags: str) -> None:
        capsys.readouterr()
        assert sa1b.main(["--merge", str(out), *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and match in err, err
        assert not (out / "manifest.json").exists()
        for i, b in saved.items():  # restore
            part[i].write_bytes(b)

    def edit(i: int, fn) -> None:
        d = json.loads(part[i].read_text())
        fn(d)
        part[i].write_text(json.dumps(d))

    part[1].unlink()
    refused("missing the partial manifest of job 1 of 3")
    # a job run with other settings (into its own folder, its partial copied in): max side, seed, hash range, inputs
    for k, flags in enumerate((("--max-side", "32"), ("--seed", "1"), ("--hash-range", "0", "0.5"))):
        other = tmp_path / f"other{k}"
        sa1b.main(["--src", str(good), "--out", str(other), "--max-side", "48", "--shard-size", "3", "--workers", "1",
                   "--hash-range", "0", "0.9", "--no-progress", "--num-jobs", "3", "--job-index", "2", *flags])
        shutil.copy(sa1b.partial_path(other, 2, 3), part[2])
        key = {0: "args.max_side = 32 vs 48", 1: "args.seed = 1 vs 0", 2: "args.hash_hi = 0.5 vs 0.9"}[k]
        refused(f"job 2 of 3 ran with different arguments than job 0: {key}")
    # job 2 ran (same arguments) while a tar was not there yet
    (good / "sa_000004.tar").rename(tmp_path / "later.tar")
    assert _prep_job(good, out, "--num-jobs", "3", "--job-index", "2") == 0
    (tmp_path / "later.tar").rename(good / "sa_000004.tar")
    refused("job 2 of 3 saw 4 inputs, job 0 saw 5")
    # counts that do not add up, a job that did not prepare its inputs, a torn partial
    edit(0, lambda d: d.update(samples=d["samples"] + 1))
    refused("counts of job 0 of 3 do not add up: samples")
    edit(1, lambda d: d["states"].pop())
    refused("job 1 of 3 did not prepare exactly its inputs")
    part[2].write_text(part[2].read_text()[:50])
    refused("unreadable partial manifest")
    # partials of two different --num-jobs: ambiguous unless --num-jobs picks one
    assert _prep_job(good, out, "--num-jobs", "2", "--job-index", "0") == 0
    refused("partials of runs with --num-jobs [2, 3]")
    with pytest.raises(MergeError, match="missing the partial manifest of job 1 of 2"):
        merge_jobs(out, num_jobs=2)
    # a shard missing or (with --verify) changed on disk
    shard = out / "sa_000001-000000.tar"
    data = shard.read_bytes()
    shard.unlink()
    refused("sa_000001-000000.tar listed by a partial manifest is missing", "--num-jobs", "3")
    shard.write_bytes(data[:-1] + b"x")
    refused("does not have the sha256", "--num-jobs", "3", "--verify")
    shard.write_bytes(data)
    # jobs with different --workers merge; args.workers becomes the per-job list
    edit(2, lambda d: d["args"].update(workers=4))
    m = merge_jobs(out, num_jobs=3, verify=True)
    assert m["args"]["workers"] == [1, 1, 4] and m["jobs"] == 3 and m["samples"] > 0
    # bad job flags
    capsys.readouterr()
    assert _prep_job(good, tmp_path / "x", "--num-jobs", "3", "--job-index", "3") == 2
    err = capsys.readouterr().err
    assert err == "error: --job-index must be in [0, 3) for --num-jobs 3, got 3\n"
    with pytest.raises(SystemExit):
        _prep_job(good, tmp_path / "x", "--num-jobs", "3")
    assert "--num-jobs N and --job-index I go together" in capsys.readouterr().err
