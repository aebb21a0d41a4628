"""The ``litesam`` command: dispatch, recipe parsing, a tiny fit through LightningCLI and an exact resume.

Recipes are paper bases plus overlays: an overlay (``# base: recipes/<base>.yaml`` header line) is parsed on its base,
``--config <base> --config <overlay>``, the way a user runs it (``recipe_configs`` from tests/helpers.py).
"""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch

from litesam_pl import cli
from tests.helpers import LOCAL, REPO, recipe_configs

RECIPES = sorted((REPO / "recipes").rglob("*.yaml"))


def test_help_and_dispatch(monkeypatch, capsys):
    cli.main(["--help"])
    assert "segment-everything" in capsys.readouterr().out
    calls = []
    for name, mod in (("segment-everything", "litesam_pl.inference.app"), ("export", "litesam_pl.inference.export")):
        fake = types.ModuleType(mod)
        fake.main = lambda argv, _n=name: calls.append((_n, list(argv))) or 0
        monkeypatch.setitem(sys.modules, mod, fake)
        cli.main([name, "--x", "1"])
    assert calls == [("segment-everything", ["--x", "1"]), ("export", ["--x", "1"])]
    fake = types.ModuleType("litesam_pl.inference.export")
    fake.main = lambda argv: 3
    monkeypatch.setitem(sys.modules, "litesam_pl.inference.export", fake)
    with pytest.raises(SystemExit) as e:
        cli.main(["export"])
    assert e.value.code == 3


def test_recipes_exist():
    names = {p.relative_to(REPO / "recipes").as_posix() for p in RECIPES}
    for need in ("backbone_1box.yaml", "autoppn.yaml", "litesam.yaml", "litesam_r1024.yaml", "litesam_2x.yaml",
                 "litesam_3x.yaml", "smoke/backbone_1box.yaml", "smoke/autoppn.yaml", "smoke/litesam.yaml"):
        assert need in names, need
    assert len([n for n in names if n.startswith("ablations/table1/")]) == 5
    assert len([n for n in names if n.startswith("ablations/table2/")]) == 8


@pytest.mark.parametrize("recipe", [p.relative_to(REPO).as_posix() for p in RECIPES], ids=lambda p: p.split("recipes/")[-1])
def test_recipe_instantiates(recipe, monkeypatch):
    """Each recipe (an overlay on its base) parses and builds its module, data module and trainer (hardware
    overridden for this machine)."""
    monkeypatch.chdir(REPO)
    c = cli.run_lightning_cli([*recipe_configs(recipe), *LOCAL, "--model.init_args.init_from", "null"], run=False)
    hp = c.model.hparams
    assert hp.model["name"].startswith(("litesam", "sam_vit_b"))
    S = c.model.img_size
    assert c.datamodule.img_size == S, "data img_size must match the model's"
    if c.model.has_ppn:
        assert c.model.model.autoppn.num_groups == c.datamodule.num_groups
    full = Path(recipe).parent.name == "recipes" or "ablations" in recipe
    cfg = c.config
    if full:  # the paper's set-up: Adam 4e-5 (constant), global batch 256 on 128 GPUs, 4 epochs
        assert hp.optimizer["class_path"] == "torch.optim.Adam"
        assert hp.optimizer["init_args"]["lr"] == pytest.approx(4e-5)
        assert c.model.lr_scheduler_factory is None  # WarmupCosine, constant without warm-up: no schedule
        assert cfg.trainer.max_epochs == 4


def _tiny_args(tmp_path: Path, shards: Path, recipe: str, run: str, extra=()):
    return [
        "fit", *recipe_configs(recipe),
        "--trainer.default_root_dir", str(tmp_path / run),
        "--trainer.logger", "false",
        "--trainer.callbacks", json.dumps([
            {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
             "init_args": {"dirpath": str(tmp_path / run), "save_last": True}},
            {"class_path": "litesam_pl.modules.callbacks.MetricsJSON"},
            {"class_path": "litesam_pl.modules.callbacks.NaNGuard"},
        ]),
        "--trainer.max_epochs", "1", "--trainer.limit_val_batches", "1", "--trainer.check_val_every_n_epoch", "1",
        "--trainer.enable_progress_bar", "false",
        "--model.init_args.init_from", "null",
        "--data.train_shards", str(shards), "--data.val_shards", str(shards),
        "--data.img_size", "64", "--data.batch_size", "2", "--data.num_workers", "0", "--data.max_masks", "2",
        "--data.epoch_samples", "4",
        *extra,
    ]


def test_fit_and_exact_resume(tmp_path, synthetic_sa1b, monkeypatch):
    """``litesam fit`` writes last.ckpt + metrics.json; ``--ckpt_path`` resumes the step count and optimizer."""
    monkeypatch.chdir(REPO)
    cli.main(_tiny_args(tmp_path, synthetic_sa1b, "recipes/smoke/litesam.yaml", "a"))
    run = tmp_path / "a"
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"val/miou_1box", "val/ar100", "val/miou_1point"} <= set(metrics)
    assert metrics["global_step"] == 2
    ckpt = torch.load(run / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2 and ckpt["hyper_parameters"]["model"]["name"] == "litesam"
    state = ckpt["optimizer_states"][0]["state"]
    assert state and all(int(s["step"]) == 2 for s in state.values())
    # the optimizer and schedule as {class_path, init_args}, the schedule's state plain: weights_only loads it all
    plain = torch.load(run / "last.ckpt", map_location="cpu", weights_only=True)
    assert plain["hyper_parameters"]["optimizer"]["class_path"] == "torch.optim.Adam"
    assert plain["hyper_parameters"]["lr_scheduler"]["class_path"] == "litesam_pl.modules.schedules.WarmupCosine"
    assert plain["lr_schedulers"][0]["last_epoch"] == 2  # the position; the settings are the configuration's
    assert plain["hyper_parameters"]["lr_scheduler"]["init_args"]["warmup_steps"] == 20
    # resume for one more epoch: the step count and Adam's step continue from the checkpoint
    cli.main(_tiny_args(tmp_path, synthetic_sa1b, "recipes/smoke/litesam.yaml", "a",
                        ["--trainer.max_epochs", "2", "--ckpt_path", str(run / "last.ckpt")]))
    ckpt2 = torch.load(run / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt2["global_step"] == 4 and ckpt2["epoch"] == 1
    assert all(int(s["step"]) == 4 for s in ckpt2["optimizer_states"][0]["state"].values())
    assert json.loads((run / "metrics.json").read_text())["global_step"] == 4
    assert ckpt2["lr_schedulers"][0]["last_epoch"] == 4  # the schedule resumed too


def test_fit_with_adamw_from_a_recipe(tmp_path, synthetic_sa1b, monkeypatch):
    """Another optimizer is a recipe change: an overlay's ``optimizer: {class_path: torch.optim.AdamW, ...}`` trains
    with AdamW (the smoke overlay's lr kept) and the checkpoint says so."""
    monkeypatch.chdir(REPO)
    overlay = tmp_path / "adamw.yaml"
    overlay.write_text("model:\n  init_args:\n    optimizer:\n      class_path: torch.optim.AdamW\n"
                       "      init_args: {weight_decay: 0.05}\n")
    cli.main(_tiny_args(tmp_path, synthetic_sa1b, "recipes/smoke/backbone_1box.yaml", "w",
                        ["--config", str(overlay), "--trainer.max_steps", "1"]))
    ckpt = torch.load(tmp_path / "w" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 1
    opt = ckpt["hyper_parameters"]["optimizer"]
    assert opt["class_path"] == "torch.optim.AdamW"
    assert (opt["init_args"]["lr"], opt["init_args"]["weight_decay"]) == (0.001, 0.05)
    group = ckpt["optimizer_states"][0]["param_groups"][0]
    assert group["weight_decay"] == 0.05 and group["initial_lr"] == 0.001
