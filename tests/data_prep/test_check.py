"""data_prep.check: the download checks (LVIS, COCO, BSDS500 on the shared samples; SA-1B shards)."""
from __future__ import annotations

import json

from data_prep import sa1b


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
