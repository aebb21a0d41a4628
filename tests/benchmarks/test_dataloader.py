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
