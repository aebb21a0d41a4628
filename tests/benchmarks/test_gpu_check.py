"""The one-shot GPU check (benchmarks.gpu_check) in its CPU mode, so that it cannot rot without a GPU, and
benchmarks.train_step's figures."""
from __future__ import annotations

import io
import json
import sys
import time

import pytest
import torch

from benchmarks import gpu_check


def test_a_step_over_its_limit_is_killed_and_a_failing_one_recorded(tmp_path):
    log = io.StringIO()
    with open(tmp_path / "log", "w") as f:
        t0 = time.perf_counter()
        # a child that ignores SIGTERM (as Lightning does) still goes: the whole process group gets SIGKILL
        status, rc = gpu_check._run([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                                     "signal.SIG_IGN); time.sleep(60)"], 1.0, f)
        assert (status, rc) == ("timeout", -9) and time.perf_counter() - t0 < 20
        assert gpu_check._run([sys.executable, "-c", "raise SystemExit(3)"], 30, f) == ("failed", 3)
        assert gpu_check._run([sys.executable, "-c", "print('hi')"], 30, f) == ("ok", 0)
    assert "hi" in (tmp_path / "log").read_text() and not log.getvalue()


def test_plan_orders_the_wanted_figures_first_and_uses_each_recipes_strategy(tmp_path):
    names = [s["name"] for s in gpu_check.plan("cuda", tmp_path)]
    assert names[:4] == ["env", "data", "segevery_bf16", "train_step"] and names[-1] == "train_step_compile"
    import yaml
    for stage in ("backbone", "autoppn", "litesam"):
        ov = yaml.safe_load((tmp_path / f"overlay_{stage}.yaml").read_text())
        assert ov["trainer"]["strategy"] == "ddp" and ov["trainer"]["logger"] is False
    assert yaml.safe_load((tmp_path / "overlay_litesam_find_unused.yaml").read_text())["trainer"]["strategy"] == \
        "ddp_find_unused_parameters_true"


@pytest.mark.slow
def test_cpu_mode_runs_every_step(tmp_path):
    """The CPU mode end to end (~1 min on 2 cores): every step ok and its figures present."""
    rep = gpu_check.main(["--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--device", "cpu"])
    saved = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert saved["failed_steps"] == [] == rep["failed_steps"], {n: s for n, s in saved["steps"].items()
                                                                 if s["status"] != "ok"}
    steps = saved["steps"]
    assert set(steps) == {"env", "data", "segevery", "train_step", "fit_backbone", "fit_autoppn", "fit_litesam",
                          "loader_sa1b"}
    assert steps["env"]["result"]["opencv_threads_in_worker"] == [1]
    seg = {r["method"]: r for r in steps["segevery"]["result"]["rows"]}
    assert set(seg) == {"litesam_autoppn", "litesam_grid32", "litesam_amg32"}
    assert all(r["median_ms"] > 0 for r in seg.values())
    rows = steps["train_step"]["result"]["rows"]
    assert [r["stage"] for r in rows] == ["backbone", "autoppn", "litesam"]
    for r in rows:
        assert r["step_ms"] > 0 and r["samples_per_s"] > 0 and r["aten_ops"] > 100
        assert r["step_ms"] >= r["forward_ms"] and r["step_ms"] >= r["backward_ms"]
    for stage in ("backbone", "autoppn", "litesam"):
        probe = steps[f"fit_{stage}"]["result"]
        assert probe["steps_timed"] >= 1 and probe["samples_per_s"] > 0
    assert steps["loader_sa1b"]["result"]["rows"][0]["samples_per_s"] > 0
    assert "===== train_step" in (tmp_path / "out" / "gpu_check.log").read_text()


def test_main_runs_the_env_step_and_records_it(tmp_path, capsys):
    """``python -m benchmarks.gpu_check`` itself, fast: only the in-process ``env`` step, then its JSON and log."""
    rep = gpu_check.main(["--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--device", "cpu",
                          "--only", "env", "--skip", "data"])
    saved = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert saved == json.loads(json.dumps(rep)) and saved["mode"] == "cpu" and saved["failed_steps"] == []
    assert list(saved["steps"]) == ["env"] and saved["steps"]["env"]["status"] == "ok"
    env = saved["steps"]["env"]["result"]
    assert env["cuda_available"] is torch.cuda.is_available() and env["opencv_threads_in_worker"] == [1]
    assert saved["sizes"] == json.loads(json.dumps(gpu_check.SIZES["cpu"]))
    assert saved["total_s"] >= saved["steps"]["env"]["seconds"]
    assert "1/1 steps ok" in capsys.readouterr().out
    assert (tmp_path / "out" / "gpu_check.log").exists()


def test_main_skips_every_step_once_the_budget_is_spent(tmp_path):
    rep = gpu_check.main(["--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--device", "cpu",
                          "--budget-s", "0"])
    names = [s["name"] for s in gpu_check.plan("cpu", tmp_path / "plan")]
    assert list(rep["steps"]) == names and rep["failed_steps"] == names
    assert all(s == {"status": "skipped", "reason": "budget spent"} for s in rep["steps"].values())
    assert json.loads((tmp_path / "out" / "gpu_check.json").read_text())["failed_steps"] == names
