"""benchmarks.ci (``make bench-ci``): its JSON / markdown, the pass/fail rule, that its runs are
benchmarks.segevery's ``run_config``, and that ``make demo``'s report reads what it writes (tiny sizes, random weights)."""
from __future__ import annotations

import json

import pytest
import torch

import benchmarks.segevery as seg
from benchmarks import ci
from benchmarks.demo_report import report

TINY = ["--img-size", "64", "--images", "2", "--rounds", "2", "--top-n", "8", "--points-per-side", "4"]


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """benchmarks.ci sets torch's thread count (--threads 1): give the other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_bench_ci_outputs_and_guard(tmp_path, capsys, monkeypatch):
    calls = []
    real_run_config = seg.run_config

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_run_config(*args, **kwargs)

    monkeypatch.setattr(seg, "run_config", spy)
    js, md = tmp_path / "out" / "bench-ci.json", tmp_path / "out" / "bench-ci.md"
    assert ci.main(TINY + ["--min-speedup", "0", "--json", str(js), "--md", str(md)]) == 0
    assert [(c["rounds"], c["points_per_side"], c["full_warmup"]) for c in calls] == [(2, 4, True)]

    out = json.loads(js.read_text())
    assert set(out) == {"ok", "speedup_grid_over_autoppn", "min_speedup", "rows", "images", "wall_s", "torch"}
    assert out["ok"] is True and out["min_speedup"] == 0 and len(out["images"]) == 2
    rows = {r["method"]: r for r in out["rows"]}
    assert list(rows) == ["litesam_autoppn", "litesam_grid4"]  # the grid row is named by its side
    for r in rows.values():
        assert list(r) == ["method", "resolution", "device", "threads", "runs", "median_ms", "p90_ms", "prompts",
                           "masks", "phases"]
        assert r["resolution"] == 64 and r["device"] == "cpu" and r["threads"] == 1 and r["runs"] == 4
        assert r["median_ms"] > 0 and {"encoder", "prompts", "decoder", "postprocess"} <= set(r["phases"])
    assert rows["litesam_autoppn"]["prompts"] == 8 and rows["litesam_grid4"]["prompts"] == 16
    ratio = rows["litesam_grid4"]["median_ms"] / rows["litesam_autoppn"]["median_ms"]
    assert abs(out["speedup_grid_over_autoppn"] - ratio) < 1e-9

    text = md.read_text()
    assert text.startswith("# bench-ci: AutoPPN vs grid search (same model, CPU)\n")
    assert "r64, 1 thread(s), 2 images x 2 interleaved rounds" in text and "| litesam_grid4 | 16 |" in text
    assert f"**grid / AutoPPN = {ratio:.2f}x** (guard: >= 0.0x) -> PASS" in text
    assert text in capsys.readouterr().out

    # make demo's closing report reads this JSON
    shown = report(tmp_path, tmp_path / "segevery", js)
    assert "litesam_grid4" in shown and f"grid search / AutoPPN = {ratio:.2f}x" in shown

    # the same figures under an unreachable guard: FAIL, exit status 1
    assert ci.main(TINY + ["--min-speedup", "1e9", "--json", str(js), "--md", str(md)]) == 1
    assert json.loads(js.read_text())["ok"] is False and "-> FAIL" in md.read_text()
    assert "bench-ci: FAIL: AutoPPN is only" in capsys.readouterr().err


def test_bench_ci_fails_when_a_row_fails(tmp_path, capsys, monkeypatch):
    """A run that raises makes the guard fail with its one-line error (no table, no traceback)."""
    def broken(self, kind, prompts, image, warm=False):
        raise RuntimeError("grid path broken" if prompts == "grid" else "autoppn path broken")

    monkeypatch.setattr(seg.Bench, "_segevery", broken)
    js = tmp_path / "bench-ci.json"
    assert ci.main(TINY + ["--images", "1", "--rounds", "1", "--json", str(js), "--md", ""]) == 1
    err = capsys.readouterr().err
    assert "bench-ci: FAIL: litesam_autoppn: RuntimeError: autoppn path broken" in err
    assert "litesam_grid32: RuntimeError: grid path broken" in err
    assert not js.exists()
