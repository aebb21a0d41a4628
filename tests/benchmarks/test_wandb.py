"""Benchmarks publish their tables to W&B (offline here) only when a run is configured."""
from __future__ import annotations

from pathlib import Path

from benchmarks._wandb import publish


def test_publish_is_a_no_op_without_a_project(monkeypatch):
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    assert publish("segevery", {"rows": [{"method": "a", "median_ms": 1.0}]}) is False


def test_publish_writes_an_offline_run_with_table_and_summary(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_PROJECT", "litesam-test")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    result = {"rows": [{"method": "litesam_autoppn", "median_ms": 12.5, "phases": {"decoder": 3.0}},
                       {"method": "litesam_grid32", "median_ms": 50.0, "phases": {"decoder": 40.0}}],
              "speedups": {"grid_over_autoppn": 4.0}, "args": {"device": "cpu"}}
    assert publish("segevery", result) is True
    runs = list(Path(tmp_path).glob("wandb/offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
