"""benchmarks.train_step (``python -m benchmarks.train_step``) end to end at tiny sizes: one stage of a paper recipe
on synthetic shards, its row (ms per step and per phase, samples/s, saved-for-backward MB, ATen operations) and its
JSON. The operation counts against the batch size are tests/models/test_batched_decode.py's."""
from __future__ import annotations

import json

import torch

from benchmarks import train_step


def test_one_stage_one_batch_size_on_cpu(synthetic_sa1b, tmp_path, capsys):
    threads = torch.get_num_threads()
    out = tmp_path / "ts.json"
    res = train_step.main(["--shards", str(synthetic_sa1b), "--stages", "backbone", "--batch-sizes", "1",
                           "--img-size", "64", "--max-masks", "2", "--device", "cpu", "--steps", "1", "--warmup",
                           "0", "--batches", "1", "--json", str(out)])
    assert torch.get_num_threads() == threads  # no --threads: the caller's setting stays
    (row,) = res["rows"]
    assert (row["stage"], row["batch_size"], row["img_size"], row["precision"]) == ("backbone", 1, 64, "fp32")
    assert row["step_ms"] > 0 and row["samples_per_s"] > 0 and row["saved_for_backward_mb"] > 0
    assert row["step_ms"] >= row["forward_ms"] and row["aten_ops"] > 100
    assert res["ops_ratios"] == {}  # one batch size: no ratio
    saved = json.loads(out.read_text())
    assert saved["rows"][0]["stage"] == "backbone" and saved["meta"]["steps"] == 1
    assert "| backbone | 1 |" in capsys.readouterr().out
