"""benchmarks.ppn_diagnostics (``python -m benchmarks.ppn_diagnostics``): its read-outs on known arrays, and the
command with a tiny random model on synthetic shards."""
from __future__ import annotations

import json

import numpy as np
import pytest


def test_probe_recovers_a_linear_target_and_ignores_noise():
    from benchmarks.ppn_diagnostics import probe_corr

    rng = np.random.default_rng(0)
    feat = [rng.normal(size=(8, 50)) for _ in range(6)]
    w = rng.normal(size=8)
    linear = [np.stack([w @ f, rng.normal(size=50)]) for f in feat]  # group 0 linear in the features, group 1 noise
    corr = probe_corr(feat, linear, ridge=1e-3)
    assert corr[0] > 0.99
    assert abs(corr[1]) < 0.3


def test_top_on_target_ranks_cells():
    from benchmarks.ppn_diagnostics import top_on_target

    target = np.array([0.0, 0.0, 0.5, 1.0, 0.0])
    assert top_on_target(np.array([0.1, 0.2, 0.8, 0.9, 0.0]), target, 2) == 1.0
    assert top_on_target(np.array([0.9, 0.8, 0.1, 0.2, 0.0]), target, 2) == 0.0
    assert top_on_target(np.array([0.9, 0.8, 0.1, 0.2, 0.0]), target, 5) == pytest.approx(0.4)


def test_ppn_diagnostics_command(synthetic_sa1b, tmp_path, capsys):
    from benchmarks import ppn_diagnostics

    out = tmp_path / "p.json"
    res = ppn_diagnostics.main(["--shards", str(synthetic_sa1b), "--img-size", "64", "--limit", "4", "--top-k", "3",
                                "--json", str(out), "--plot", str(tmp_path / "p.png"), "--plot-images", "2"])
    assert json.loads(out.read_text()) == res
    assert res["images"] == 4 and res["img_size"] == 64 and res["ckpt"] is None
    assert list(res["groups"]) == ["large", "medium", "small"]
    for g in res["groups"].values():
        for k in ("target_mean", "positive_share", "pred_mean", "top_on_target", "chance_on_target"):
            assert 0.0 <= g[k] <= 1.0, k
        assert g["pred_spatial_std"] >= 0.0
    assert res["groups"]["large"]["positive_share"] > 0  # synthetic shapes include large ones
    assert capsys.readouterr().out.startswith("large target_mean=")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_shards_are_a_one_line_error(tmp_path, capsys):
    from benchmarks import ppn_diagnostics

    with pytest.raises(SystemExit) as e:
        ppn_diagnostics.main(["--shards", str(tmp_path / "missing"), "--img-size", "64"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "shard not found" in err and "missing" in err
