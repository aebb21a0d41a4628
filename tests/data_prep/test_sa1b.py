"""data_prep.sa1b: SA-1B tars -> resized shards (manifest, resume, fractions and hash ranges, bad and truncated
inputs, read back through webdataset) and its many-jobs mode with data_prep.merge."""
from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_prep import sa1b
from data_prep._common import sample_members, tar_bytes
from data_prep.synthetic import write_synthetic_sa1b
from litesam_pl.data.rle import decode_rle, encode_mask, rle_to_bbox
from tests.data_prep.tars import read_tar, samples_of, sha, shard_shas


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
