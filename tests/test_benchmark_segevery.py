"""benchmarks.segevery robustness: a failing row is recorded and the run goes on; AMG rows under bf16 autocast."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import benchmarks.segevery as seg


def test_failing_row_is_recorded_and_json_written_per_configuration(tmp_path, monkeypatch, capsys):
    """One method raises: its row holds the error, the others run on, the JSON exists after the first
    configuration, and the exit code is non-zero."""
    path = tmp_path / "out" / "segevery.json"
    real_segevery = seg.Bench._segevery

    def flaky(self, kind, prompts, image, warm=False):
        if prompts == "grid" and not warm:  # fails on its first timed image, after a good warm-up
            raise TypeError("Got unsupported ScalarType BFloat16\n(second line)")
        return real_segevery(self, kind, prompts, image, warm)

    monkeypatch.setattr(seg.Bench, "_segevery", flaky)
    snapshots = []
    real_run_config = seg.run_config

    def spy(args, device, res):
        snapshots.append(json.loads(path.read_text()) if path.exists() else None)
        return real_run_config(args, device, res)

    monkeypatch.setattr(seg, "run_config", spy)
    code = seg.cli(["--resolution", "64", "128", "--images", "2", "--threads", "1", "--top-n", "16",
                    "--methods", "litesam_autoppn", "litesam_grid32", "--json", str(path)])
    assert code != 0

    # before the second configuration started, the first one's rows (with the error) were on disk
    assert snapshots[0] is None and snapshots[1] is not None
    first = {r["method"]: r for r in snapshots[1]["rows"]}
    assert set(first) == {"litesam_autoppn", "litesam_grid32"} and snapshots[1]["meta"]["complete"] is False
    assert first["litesam_grid32"]["error"] == "TypeError: Got unsupported ScalarType BFloat16 (second line)"
    assert snapshots[1]["failed"] == ["cpu/r64/litesam_grid32"]

    final = json.loads(path.read_text())
    assert final["meta"]["complete"] is True
    assert final["failed"] == ["cpu/r64/litesam_grid32", "cpu/r128/litesam_grid32"]
    rows = {(r["resolution"], r["method"]): r for r in final["rows"]}
    for res in (64, 128):
        ok, bad = rows[(res, "litesam_autoppn")], rows[(res, "litesam_grid32")]
        assert "error" not in ok and ok["images"] == 2 and ok["median_ms"] > 0 and ok["autocast"] == "off (fp32)"
        assert bad["error"].startswith("TypeError: ") and "\n" not in bad["error"]
        assert bad["images"] == 0 and bad["median_ms"] is None and bad["failed_at"].startswith("skimage:")
    assert not any("grid32" in k for k in final["speedups"])
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind

    printed = capsys.readouterr()
    assert "FAILED" in printed.out and "TypeError: Got unsupported ScalarType BFloat16" in printed.out
    assert "row(s) failed" in printed.err


def test_amg_row_under_cpu_bf16_autocast(monkeypatch):
    """SAM's generator calls .numpy() on the decoder outputs: the AMG row casts them to fp32 under autocast."""
    args = seg.build_parser().parse_args(["--resolution", "64", "--pred-iou-thresh", "0",
                                          "--stability-score-thresh", "0"])
    bench = seg.Bench(args, torch.device("cpu"), 64)
    bench.dtype = torch.bfloat16  # the row's own autocast (CUDA's default), here on CPU
    image = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    run = bench.runner("litesam_amg32")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        r = run(image)
    assert r["prompts"] == 1024 and r["masks"] > 0 and r["total"] > 0
    assert {"encoder", "prompts", "decoder", "postprocess"} <= set(r["phases"])

    decoder = bench.model("litesam").mask_decoder
    assert not decoder._forward_hooks  # the fp32 cast is scoped to the AMG call: other rows see the model as is
    assert "fp32" in seg.autocast_note("litesam_amg32", torch.bfloat16)

    # without the cast the row fails as in the issue (so the test above exercises the bf16 path)
    monkeypatch.setattr(seg, "_fp32_outputs", lambda module, inputs, out: None)
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(TypeError, match="BFloat16"):
        run(image, warm=True)
