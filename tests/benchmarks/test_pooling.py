"""``benchmarks.pooling``: the CPU pooling kernels timed through the LiteViT encoder (a fast run on a tiny input)."""
import json

import pytest

from benchmarks import pooling
from litesam_pl.models import mixers


def test_pooling_benchmark_times_both_kernels_and_writes_json(tmp_path):
    out = pooling.main(["--resolution", "64", "--batch", "1", "--rounds", "1", "--json", str(tmp_path / "p.json")])
    (row,) = out["rows"]
    assert row["resolution"] == 64 and row["box_mean_ms"] > 0 and row["avg_pool2d_ms"] > 0
    assert row["speedup"] == pytest.approx(row["avg_pool2d_ms"] / row["box_mean_ms"])
    assert json.loads((tmp_path / "p.json").read_text())["rows"][0]["resolution"] == 64
    assert mixers._CPU_POOLING == "box_mean"  # the context manager restored the default


def test_cpu_pooling_rejects_unknown_kernels():
    with pytest.raises(ValueError, match="cpu_pooling kernel"):
        with mixers.cpu_pooling("max"):
            pass
