"""benchmarks.table2 (the Table 2 ablation runner): its report from runs' ``metrics.json`` (fake runs here), missing
runs, its arguments and ``--dry-run``. That each combination's stack is the combination at smoke scale is checked
with the other recipes in tests/test_recipes.py."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional

import pytest
import yaml

from benchmarks import table2


def _fake_runs(root: Path, ours: Dict[tuple, Optional[float]], key: str = "val/ar_top1000") -> None:
    for combo, value in ours.items():
        d = root / table2.combo_name(combo)
        d.mkdir(parents=True)
        if value is not None:
            metrics = {key: value, "global_step": 2160, "epoch": 8}
            if key == "val/ar_top1000":
                metrics["val/ar100"] = value / 2  # ar1000 is preferred when present
            (d / "metrics.json").write_text(json.dumps(metrics))


def test_table2_report_from_fake_metrics(tmp_path, capsys):
    # ours: MSPM helps, new GT & loss hurts, grouping does nothing
    ours = {c: 0.30 + (0.02 if c[0] == "mspm" else 0) - (0.01 if c[1] == "distance" else 0) for c in table2.COMBOS}
    _fake_runs(tmp_path / "runs", ours)
    out_json = tmp_path / "t2.json"
    rc = table2.main(["--report-only", "--run-root", str(tmp_path / "runs"), "--json", str(out_json)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "stem conv->MSPM" in text and "new GT & loss" in text and "object grouping" in text
    for ar in table2.PAPER_AR.values():  # the paper's Table 2 (benchmarks.toolkit.paper)
        assert f"{ar:.1f}" in text
    rows = text.splitlines()
    base_row = next(r for r in rows if table2.combo_name(table2.COMBOS[0]) in r)
    assert [c.strip() for c in base_row.split("|")[:3]] == ["-", "-", "-"]
    all_row = next(r for r in rows if table2.combo_name(table2.COMBOS[-1]) in r)
    assert [c.strip() for c in all_row.split("|")[:3]] == ["x", "x", "x"]
    data = json.loads(out_json.read_text())
    assert [r["name"] for r in data["rows"]] == [table2.combo_name(c) for c in table2.COMBOS]
    assert data["rows"][0]["ours"] == pytest.approx(30.0) and data["rows"][0]["metric"] == "val/ar_top1000"
    assert data["rows"][-1]["paper"] == 53.0
    eff = data["effects"]
    assert eff["stem"]["ours_mean_delta"] == pytest.approx(2.0) and eff["stem"]["same_direction_as_paper"] is True
    assert eff["gt"]["ours_mean_delta"] == pytest.approx(-1.0) and eff["gt"]["ours_raised"] is False
    assert eff["gt"]["same_direction_as_paper"] is False
    assert eff["groups"]["ours_mean_delta"] == pytest.approx(0.0) and eff["groups"]["ours_raised"] is False
    assert all(e["pairs"] == 4 and e["paper_mean_delta"] > 0 for e in eff.values())
    assert "raised, as in the paper" in text and "did not raise, unlike the paper" in text


def test_table2_missing_runs_and_ar100_fallback(tmp_path, capsys):
    combos = table2.COMBOS
    _fake_runs(tmp_path / "runs", {combos[0]: 0.2, combos[1]: None}, key="val/ar100")
    rc = table2.main(["--report-only", "--run-root", str(tmp_path / "runs")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "n/a" in text and "not measured" in text
    rows = table2.collect_runs(tmp_path / "runs")
    assert rows[0]["metric"] == "val/ar100" and rows[0]["ours"] == pytest.approx(20.0)  # no ar1000: ar100
    assert rows[1]["ours"] is None and rows[2]["ours"] is None
    # NaN is no measurement
    (tmp_path / "runs" / table2.combo_name(combos[1]) / "metrics.json").write_text(
        json.dumps({"val/ar_top1000": float("nan"), "val/ar100": 0.4}))
    assert table2.read_metric(tmp_path / "runs" / table2.combo_name(combos[1]))["value"] == pytest.approx(40.0)


def test_table2_arguments(tmp_path, capsys):
    p = table2.build_parser()
    a = p.parse_args(["--steps", "2", "--only", "stem-conv_gt-gaussian_groups-1", "--force", "--json", "x.json",
                      "--", "--trainer.limit_val_batches", "1"])
    assert a.steps == 2 and a.force and a.only == ["stem-conv_gt-gaussian_groups-1"]
    assert a.fit_args == ["--trainer.limit_val_batches", "1"]
    with pytest.raises(ValueError, match="unknown Table 2 combination"):
        table2.parse_combo("stem-foo")
    with pytest.raises(SystemExit):
        table2.main(["--steps", "0"])
    # --dry-run prints the commands, writes each run's overlay, trains nothing
    root = tmp_path / "runs"
    assert table2.main(["--dry-run", "--run-root", str(root), "--only", "stem-mspm_gt-distance_groups-3",
                        "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "--config recipes/autoppn.yaml --config recipes/ablations/table2/stem-mspm_gt-distance_groups-3.yaml " \
           "--config recipes/smoke/autoppn.yaml" in out and "--trainer.max_steps 2" in out
    run = root / "stem-mspm_gt-distance_groups-3"
    overlay = yaml.safe_load((run / "run.yaml").read_text())
    assert "model" not in overlay  # the smoke overlay sets no model.kwargs: the combination's switches stand
    assert overlay["trainer"]["default_root_dir"] == run.as_posix()
    # a finished combination is skipped unless --force
    (run / "metrics.json").write_text(json.dumps({"val/ar_top1000": 0.5}))
    assert table2.main(["--dry-run", "--run-root", str(root), "--only", "stem-mspm_gt-distance_groups-3"]) == 0
    assert "skipped" in capsys.readouterr().out
