"""benchmarks.demo_report: the demo's closing report says what its model is and how to get one for photographs."""
from __future__ import annotations

import json

from benchmarks.demo_report import main, report


def test_report_names_model_and_next_steps(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"val/miou_1box": 0.72, "global_step": 960}))
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"rows": [{"method": "autoppn", "prompts": 64, "median_ms": 50.0, "p90_ms": 60.0}],
                                 "speedup_grid_over_autoppn": 4.0}))
    text = report(run, tmp_path / "segevery", bench)
    assert "synthetic shapes" in text and "make real-smoke" in text and "SA-1B" in text
    assert "val/miou_1box" in text and "0.7200" in text and "4.00x" in text
    assert "(missing)" in text  # no last.ckpt in the run folder
    assert main(["--run", str(run), "--segevery", str(tmp_path / "s"), "--bench", str(tmp_path / "none.json")]) == 0
    assert f"(no {tmp_path / 'none.json'})" in capsys.readouterr().out
