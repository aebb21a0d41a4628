"""benchmarks.segevery (``python -m benchmarks.segevery``): its JSON rows end to end at a toy resolution; robustness:
a failing row is recorded and the run goes on; AMG rows under bf16 autocast."""
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


def test_onnxruntime_row_agrees_with_pytorch(tmp_path):
    """litesam_autoppn_ort (exported graphs under onnxruntime, the pipeline's own pre/post-processing) and
    litesam_onnx_example (examples/onnx_segment_everything.py) beside litesam_autoppn on the same image and threads:
    same prompts and masks, per-phase times, the check in the JSON."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    path = tmp_path / "ort.json"
    code = seg.cli(["--resolution", "64", "--images", "1", "--threads", "1", "--top-n", "16",
                    "--pred-iou-thresh", "0", "--stability-score-thresh", "0",  # random weights: keep masks to compare
                    "--methods", "litesam_autoppn", "litesam_autoppn_ort", "litesam_onnx_example", "--json", str(path)])
    assert code == 0
    out = json.loads(path.read_text())
    rows = {r["method"]: r for r in out["rows"]}
    pt, ort = rows["litesam_autoppn"], rows["litesam_autoppn_ort"]
    assert "error" not in ort and ort["images"] == 1 and ort["median_ms"] > 0
    assert set(ort["phases"]) == {"preprocess", "encoder", "prompts", "decoder", "postprocess"}
    assert ort["prompts"] == pt["prompts"] == 16 and ort["masks"] == pt["masks"] > 0
    assert ort["threads"] == pt["threads"] == 1 and ort["ort_intra_op_threads"] == 1
    assert ort["export_s"] > 0 and ort["providers"] == ["CPUExecutionProvider"]
    check = ort["check_vs_pytorch"]
    assert check["agrees"] is True and check["prompts_ort"] == check["prompts_pytorch"] == 16
    diffs = check["max_abs_diff"]
    assert diffs["decoder_low_res_logits"] < 1e-3 and diffs["image_embeddings"] < 1e-3 and diffs["points"] < 1e-3
    for key in ("row_thresholds", "filters_off"):
        c = check[key]
        assert c["masks_ort"] == c["masks_pytorch"] > 0 and c["mask_iou_min"] > 0.99
    assert "cpu/r64/autoppn_pytorch_over_ort" in out["speedups"]
    assert "cpu/r64/autoppn_pytorch_over_ort_paired_median" in out["speedups"]
    ex = rows["litesam_onnx_example"]  # the torch-free example on the same sessions
    assert "error" not in ex and ex["prompts"] == 16 and ex["masks"] == pt["masks"]
    assert set(ex["phases"]) == {"preprocess", "encoder", "prompts", "decoder", "postprocess"}
    assert ex["check_vs_pytorch"]["agrees"] is True
    assert "litesam_autoppn_ort" not in seg.DEFAULT_METHODS  # opt-in: an optional extra, CPU only


def test_onnxruntime_row_fails_cleanly_without_onnxruntime(tmp_path, monkeypatch):
    """Without onnx / onnxruntime the ORT row records a one-line error (what to install); PyTorch's row runs."""
    import litesam_pl.inference.export as export

    monkeypatch.setattr(export, "_missing_onnx_packages", lambda check=True: ["onnxruntime"])
    path = tmp_path / "ort.json"
    code = seg.cli(["--resolution", "64", "--images", "1", "--threads", "1", "--top-n", "8",
                    "--methods", "litesam_autoppn", "litesam_autoppn_ort", "--json", str(path)])
    assert code == 1
    out = json.loads(path.read_text())
    rows = {r["method"]: r for r in out["rows"]}
    err = rows["litesam_autoppn_ort"]["error"]
    assert err.startswith("ImportError: ") and "litesam-pl[onnx]" in err and "\n" not in err
    assert rows["litesam_autoppn_ort"]["failed_at"] == "warm-up"
    assert "error" not in rows["litesam_autoppn"] and rows["litesam_autoppn"]["images"] == 1
    assert out["failed"] == ["cpu/r64/litesam_autoppn_ort"]


def test_benchmark_json_schema(tmp_path):
    """benchmarks.segevery end to end at a toy resolution: the JSON rows the issue specifies."""
    from benchmarks.segevery import main as bench_main

    out = bench_main(["--resolution", "64", "--images", "1", "--threads", "1", "--json", str(tmp_path / "b.json"), "--top-n", "16",
                      "--methods", "litesam_autoppn", "litesam_grid32", "decoder_stock", "decoder_ours"])
    rows = {r["method"]: r for r in out["rows"]}
    assert set(rows) == {"litesam_autoppn", "litesam_grid32", "decoder_stock", "decoder_ours"}
    for r in rows.values():
        assert {"method", "resolution", "device", "median_ms", "p90_ms", "prompts", "masks", "phases"} <= set(r)
        assert r["resolution"] == 64 and r["device"] == "cpu" and r["median_ms"] > 0
    assert rows["litesam_autoppn"]["prompts"] == 16 and rows["litesam_grid32"]["prompts"] == 1024
    assert {"encoder", "prompts", "decoder", "postprocess"} <= set(rows["litesam_autoppn"]["phases"])
    assert rows["decoder_ours"]["max_abs_diff_vs_stock"] < 1e-4
    assert "cpu/r64/decoder_stock_over_ours" in out["speedups"]
