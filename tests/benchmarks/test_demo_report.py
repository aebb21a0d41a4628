"""benchmarks.demo_report: the demo's closing report says what its model is and how to get one for photographs;
and make demo writes only into its own run folder (runs/demo/), never over a make smoke result."""
from __future__ import annotations

import json
import re

import pytest
import yaml

from benchmarks.demo_report import DEMO_RUN, main, report
from tests.helpers import REPO


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
    assert f"litesam export --ckpt {run / 'last.ckpt'} --out litesam.pt" in text
    assert "everything above is under" not in text  # the bench JSON is outside the run folder
    assert main(["--run", str(run), "--segevery", str(tmp_path / "s"), "--bench", str(tmp_path / "none.json")]) == 0
    assert f"(no {tmp_path / 'none.json'})" in capsys.readouterr().out


def test_report_defaults_to_the_demo_run_folder(tmp_path, capsys, monkeypatch):
    """Without arguments the report reads runs/demo/ (segevery/ and bench-ci.json inside it)."""
    monkeypatch.chdir(tmp_path)
    run = tmp_path / DEMO_RUN
    (run / "segevery").mkdir(parents=True)
    (run / "segevery" / "astronaut_overlay.png").write_bytes(b"")
    (run / "bench-ci.json").write_text(json.dumps({"rows": [], "speedup_grid_over_autoppn": 3.5}))
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "(1 images" in out and "astronaut_overlay.png" in out and "3.50x" in out
    assert f"everything above is under {DEMO_RUN}/" in out


# ------------------------------------------------------------------------------------------------------------------
# make demo's run folder (Makefile demo target, recipes/smoke/demo*.yaml)


def _makefile_var(text: str, name: str) -> str:
    m = re.search(rf"^{name}\s*\??=\s*(.+)$", text, re.M)
    assert m, f"Makefile: no {name}"
    return m.group(1).strip()


def _demo_recipe(text: str) -> str:
    """The demo target's commands, continuation lines joined."""
    block = re.search(r"^demo:.*\n((?:\t.*\n)+)", text, re.M)
    assert block, "Makefile: no demo target"
    return block.group(1).replace("\\\n", " ")


def _demo_overlays(text: str) -> list:
    return re.findall(r"recipes/smoke/\w+\.yaml", _makefile_var(text, "DEMO_OVERLAY"))


def test_makefile_demo_writes_only_into_its_run_folder():
    text = (REPO / "Makefile").read_text()
    assert _makefile_var(text, "DEMO_RUN") == DEMO_RUN.as_posix() == "runs/demo"
    recipe = _demo_recipe(text)
    # every output path of the demo's commands is in $(DEMO_RUN)
    outputs = re.findall(r"--(?:out|json|md|run|segevery|bench|ckpt|trainer\.default_root_dir)[= ](\S+)", recipe)
    assert len(outputs) >= 8, outputs
    assert all(o.startswith("$(DEMO_RUN)") for o in outputs), outputs
    assert "runs/smoke" not in recipe and "results/" not in recipe
    assert set(_demo_overlays(text)) == {"recipes/smoke/demo.yaml", "recipes/smoke/demo_from_smoke.yaml"}


@pytest.mark.parametrize("overlay", ["recipes/smoke/demo.yaml", "recipes/smoke/demo_from_smoke.yaml"])
def test_demo_overlays_log_and_checkpoint_into_the_demo_run(overlay):
    """default_root_dir does not move the loggers or ModelCheckpoint: each carries the run folder itself."""
    trainer = yaml.safe_load((REPO / overlay).read_text())["trainer"]
    run = DEMO_RUN.as_posix()
    assert trainer["default_root_dir"] == run
    assert [lg["init_args"]["save_dir"] for lg in trainer["logger"]] == [run] * len(trainer["logger"])
    ckpt = [c for c in trainer["callbacks"] if c["class_path"].endswith("ModelCheckpoint")]
    assert [c["init_args"]["dirpath"] for c in ckpt] == [run]
    assert "runs/smoke" not in json.dumps(trainer)


def test_demo_from_smoke_is_the_smoke_joint_recipe_in_the_demo_folder():
    """After make smoke, the demo trains recipes/smoke/litesam.yaml as is, only in runs/demo/ (a copy, kept equal)."""
    smoke = (REPO / "recipes/smoke/litesam.yaml").read_text()
    expected = yaml.safe_load(smoke.replace("runs/smoke/litesam", DEMO_RUN.as_posix()))
    got = yaml.safe_load((REPO / "recipes/smoke/demo_from_smoke.yaml").read_text())
    wandb = [lg for lg in got["trainer"]["logger"] if lg["class_path"].endswith("WandbLogger")]
    assert wandb and wandb[0]["init_args"]["name"] == "demo"
    for cfg in (expected, got):
        for lg in cfg["trainer"]["logger"]:
            if lg["class_path"].endswith("WandbLogger"):
                del lg["init_args"]["name"]
    assert got == expected
    assert got["model"]["init_args"]["init_from"] == "runs/smoke/autoppn/last.ckpt"  # read, not written
