"""benchmarks.dataloader (``python -m benchmarks.dataloader``) end to end at tiny sizes: it writes its dense synthetic
shards, times the loader with 0 workers and its per-phase CPU split, and writes the JSON the docs quote."""
from __future__ import annotations

import json

from benchmarks import dataloader


def test_synthetic_run_with_phases_writes_its_json(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WANDB_PROJECT", raising=False)  # no W&B publishing
    out = tmp_path / "dl.json"
    res = dataloader.main(["--synthetic", str(tmp_path / "syn"), "--num-images", "12", "--image-hw", "64", "96",
                           "--img-size", "64", "--batch-size", "2", "--max-masks", "2", "--batches", "1",
                           "--workers", "0", "--repeats", "1", "--phases", "--json", str(out)])
    assert sorted(p.name for p in (tmp_path / "syn").glob("*.tar")) == ["sa_000000.tar"]  # 16 images per tar
    assert json.loads(out.read_text()) == res
    (row,) = res["rows"]
    assert row["workers"] == 0 and row["samples_per_s"] > 0 and row["cpu_ms_per_sample"] > 0
    assert len(row["runs"]) == 1 and {"decode", "other"} <= set(row["phase_cpu_ms_per_sample"])
    assert res["config"]["img_size"] == 64 and res["config"]["batch_size"] == 2 and "dense synthetic" in \
        res["config"]["data"]
    assert "| workers | samples/s | CPU ms/sample |" in capsys.readouterr().out


def test_synthetic_shards_are_data_preps_dense_preset(tmp_path):
    """``--synthetic`` writes through ``data_prep.synthetic`` (no second writer): the ``dense`` preset's tars, with
    real interior ``point_coords`` (not a placeholder) and 50-100 masks per image."""
    from data_prep.synthetic import DENSE_MASKS, write_synthetic_sa1b
    from litesam_pl.data.rle import decode_rle
    from tests.data_prep.tars import samples_of

    (path,) = dataloader.write_dense_synthetic(tmp_path / "a", 3, (64, 96))
    (ref,) = write_synthetic_sa1b(tmp_path / "b", 3, seed=0, images_per_tar=16, size=(64, 96), preset="dense",
                                  quality=90)
    assert open(path, "rb").read() == ref.read_bytes()
    for _, rec in samples_of(ref).values():
        assert DENSE_MASKS[0] <= len(rec["annotations"]) <= DENSE_MASKS[1]
        for ann in rec["annotations"]:
            x, y = ann["point_coords"][0]
            assert decode_rle(ann["segmentation"])[int(y), int(x)]


def test_worker_pids_through_compat():
    """The loader's worker processes come from ``litesam_pl.compat.dataloader_worker_pids`` (one wrapped private):
    none without workers, one live child process per worker."""
    import os

    import torch

    from litesam_pl.compat import dataloader_worker_pids

    assert dataloader_worker_pids(iter(torch.utils.data.DataLoader(list(range(4)), num_workers=0))) == []
    it = iter(torch.utils.data.DataLoader(list(range(4)), num_workers=1))
    try:
        (pid,) = dataloader_worker_pids(it)
        assert isinstance(pid, int) and pid != os.getpid()
        assert [int(x) for x in it] == [0, 1, 2, 3]
    finally:
        del it
