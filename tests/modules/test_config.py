"""The modules' typed configuration (issue 14): the parts check their values, the CLI links what data and model
share (set once: on the data side, the AutoPPN grid stride on the model side) and a contradictory configuration
stops at start-up with one line naming both options; old checkpoints (flat hyper-parameters) still load."""
from __future__ import annotations

import math

import pytest
import torch

from litesam_pl import cli
from litesam_pl.cli.config import DATA_LINKS, MODEL_LINKS, ppn_stride_of, suggest_option, upgrade_ckpt_hparams
from litesam_pl.modules import AutoPPNModule, LiteSAMModule
from litesam_pl.modules.config import (ConfigError, MaskLossConfig, ModelSpec, OptimizerConfig, PPNLossConfig,
                                       PromptConfig, ValidationConfig, upgrade_flat_hparams)
from tests.helpers import LOCAL, REPO, TINY, batch_loader, cpu_trainer, recipe_configs


@pytest.mark.parametrize("build, option", [
    (lambda: MaskLossConfig(resolution="pointz"), "mask_loss.resolution"),
    (lambda: MaskLossConfig(points=0), "mask_loss.points"),
    (lambda: PPNLossConfig(point_loss="l2"), "ppn_loss.point_loss"),
    (lambda: PPNLossConfig(box_unit="px"), "ppn_loss.box_unit"),
    (lambda: PPNLossConfig(box_weighting="area"), "ppn_loss.box_weighting"),
    (lambda: OptimizerConfig(schedule="step"), "optimizer.schedule"),
    (lambda: OptimizerConfig(betas=(0.9,)), "optimizer.betas"),
    (lambda: PromptConfig(max_per_image=0), "prompts.max_per_image"),
    (lambda: ValidationConfig(top_n=0), "validation.top_n"),
    (lambda: ModelSpec(kwargs={"img_size": 64}, img_size=128), "model.kwargs.img_size"),
    (lambda: ModelSpec(kwargs={"ppn_groups": 1}, ppn_groups=3), "model.kwargs.ppn_groups"),
])
def test_parts_refuse_bad_values_in_one_line(build, option):
    with pytest.raises(ConfigError) as e:
        build()
    assert str(e.value).startswith(option) and "\n" not in str(e.value)


def test_parts_as_dicts_and_plain_hyper_parameters(tmp_path):
    m = LiteSAMModule(model={"kwargs": TINY}, mask_loss={"focal_alpha": -1.0}, optimizer={"lr": 1e-3},
                      prompts={"max_per_image": 4}, validation={"top_n": 200})
    assert m.cfg.mask_loss == MaskLossConfig(focal_alpha=-1.0) and m.cfg.optimizer.lr == 1e-3
    assert m.img_size == 64 and m.cfg.prompts.max_per_image == 4 and m.cfg.validation.top_n == 200
    # hyper-parameters are plain dicts (YAML, weights_only checkpoints), and rebuild the module
    assert m.hparams["mask_loss"]["focal_alpha"] == -1.0 and m.hparams["model"]["kwargs"] == TINY
    with pytest.raises(ConfigError, match=r"mask_loss: unknown field\(s\) \['focal_weigth'\]"):
        LiteSAMModule(model={"kwargs": TINY}, mask_loss={"focal_weigth": 1.0})
    ckpt = tmp_path / "m.ckpt"
    torch.save({"hyper_parameters": dict(m.hparams), "state_dict": m.state_dict(),
                "pytorch-lightning_version": "2.6.0"}, ckpt)
    assert torch.load(ckpt, weights_only=True)["hyper_parameters"]["optimizer"]["betas"] == (0.9, 0.999)
    again = LiteSAMModule.load_from_checkpoint(ckpt, weights_only=True)
    assert again.cfg.mask_loss == m.cfg.mask_loss and again.cfg.optimizer == m.cfg.optimizer


def _old_factor(step, warmup, schedule, min_ratio, total_steps):
    """The schedule as LiteSAMTaskBase.configure_optimizers wrote it before the parts (the reference)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    total = max(int(total_steps), warmup + 1)
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


@pytest.mark.parametrize("warmup, schedule, total", [(0, "cosine", 100), (20, "cosine", 100), (5, "constant", 50),
                                                      (30, "cosine", 10)])
def test_lr_factor_is_the_old_schedule(warmup, schedule, total):
    cfg = OptimizerConfig(lr=1e-3, schedule=schedule, warmup_steps=warmup, min_lr_ratio=0.05)
    for step in range(0, total + 5):
        assert cfg.lr_factor(step, lambda: total) == _old_factor(step, warmup, schedule, 0.05, total), step


def test_old_flat_hyper_parameters_upgrade():
    old = {"_class_path": "litesam_pl.modules.LiteSAMModule", "model_name": "litesam", "model_kwargs": {"img_size": 64},
           "lr": 1e-3, "lr_schedule": "cosine", "focal_alpha": -1.0, "mask_loss_resolution": "points",
           "ppn_box_unit": "box", "ppn_point_loss": "hard_mse", "ppn_loss_weight": 2.0, "max_train_prompts": 6,
           "val_top_n": 100, "init_from": None, "prompt_split": True}
    new = upgrade_flat_hparams(old)
    assert new["model"] == {"name": "litesam", "kwargs": {"img_size": 64}}
    assert new["optimizer"] == {"lr": 1e-3, "schedule": "cosine"}
    assert new["mask_loss"] == {"focal_alpha": -1.0, "resolution": "points"}
    assert new["ppn_loss"] == {"box_unit": "box", "point_loss": "hard_mse", "weight": 2.0}
    assert new["prompts"] == {"max_per_image": 6} and new["validation"] == {"top_n": 100}
    assert {k: new[k] for k in ("_class_path", "init_from", "prompt_split")} == {
        "_class_path": "litesam_pl.modules.LiteSAMModule", "init_from": None, "prompt_split": True}
    m = LiteSAMModule(**{k: v for k, v in new.items() if not k.startswith("_")})
    assert m.img_size == 64 and m.cfg.ppn_loss.weight == 2.0
    # for --ckpt_path the data's linked values win: the checkpoint's are left out
    ckpt = upgrade_ckpt_hparams(old)
    assert ckpt["model"] == {"name": "litesam", "kwargs": {}} and "point_loss" not in ckpt["ppn_loss"]
    assert {target for _, target, _ in DATA_LINKS} == {"model.init_args.model.img_size",
                                                       "model.init_args.model.ppn_groups",
                                                       "model.init_args.ppn_loss.point_loss"}
    assert [(source, target) for source, target, *_ in MODEL_LINKS] == [("model.init_args.model.kwargs",
                                                                        "data.ppn_stride")]
    assert ppn_stride_of({}) == ppn_stride_of(None) == 8 and ppn_stride_of({"ppn_kwargs": {"stride": 16}}) == 16


def test_suggestions_know_the_parts():
    options = ["optimizer", "optimizer.lr", "mask_loss", "mask_loss.focal_weight", "validation.top_n"]
    assert suggest_option("lrr", options) == "did you mean 'optimizer.lr'?"
    assert suggest_option("val_top_n", options) == "now 'validation.top_n'"
    assert suggest_option("mask_loss_resolution", options) == "now 'mask_loss.resolution'"


def test_links_set_the_model_from_the_data(monkeypatch):
    """One setting per switch: data.img_size, data.num_groups and data.target_mode decide the model's input size,
    its AutoPPN groups and the point loss."""
    monkeypatch.chdir(REPO)
    c = cli.run_lightning_cli([*recipe_configs("recipes/smoke/autoppn.yaml"), *LOCAL,
                               "--model.init_args.init_from", "null",
                               "--model.init_args.embedding_cache_mb", "0", "--model.init_args.freeze_encoder", "false",
                               "--data.img_size", "128", "--data.num_groups", "1", "--data.target_mode", "gaussian"],
                              run=False)
    assert isinstance(c.model, AutoPPNModule)
    assert c.model.img_size == 128 and c.model.model.autoppn.num_groups == 1
    assert c.model.cfg.ppn_loss.point_loss == "focal" and c.model.cfg.model.img_size == 128
    assert c.model.hparams["model"]["ppn_groups"] == 1  # the linked values are in the saved hyper-parameters
    assert c.datamodule.ppn_stride == c.model.model.autoppn.stride == 8  # the model's stride, into the data
    c.model.check_datamodule(c.datamodule)  # agrees


def test_the_grid_stride_is_linked_from_the_model_into_the_data(monkeypatch):
    """The AutoPPN grid stride is the head's (``model.kwargs.ppn_kwargs.stride``): the data's targets follow it."""
    monkeypatch.chdir(REPO)
    c = cli.run_lightning_cli([*recipe_configs("recipes/smoke/autoppn.yaml"), *LOCAL,
                               "--model.init_args.init_from", "null", "--model.init_args.embedding_cache_mb", "0",
                               "--model.init_args.freeze_encoder", "false",
                               "--model.init_args.model.kwargs", '{"ppn_kwargs": {"stride": 16}}'], run=False)
    assert c.model.model.autoppn.stride == c.datamodule.ppn_stride == 16
    c.model.check_datamodule(c.datamodule)  # agrees


def _fails(argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = [ln for ln in err.splitlines() if ln.startswith("litesam fit: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("extra, message", [
    (["--model.init_args.model.kwargs", '{"img_size": 256}'],
     "model.kwargs.img_size=256 contradicts model.img_size=192 (linked from data.img_size): set it once, as "
     "data.img_size"),
    (["--model.init_args.model.img_size", "256"],
     "--model.init_args.model.img_size is linked from data.img_size: set --data.img_size instead"),
    (["--model.init_args.ppn_loss.point_loss", "focal"],
     "--model.init_args.ppn_loss.point_loss is linked from data.target_mode: set --data.target_mode instead"),
    (["--data.ppn_stride", "16"], "--data.ppn_stride is linked from model.init_args.model.kwargs.ppn_kwargs.stride: "
                                  "set model.init_args.model.kwargs.ppn_kwargs.stride instead"),
    (["--model.init_args.optimizer.schedule", "step"],
     "optimizer.schedule must be one of 'constant', 'cosine', got 'step'"),
    (["--model.init_args.optimizer.lrr", "3"],
     "unrecognized option --model.init_args.optimizer.lrr: LiteSAMModule's optimizer has no field 'lrr' "
     "(did you mean 'optimizer.lr'?)"),
    (["--model.init_args.focal_weight", "3"],
     "unrecognized option --model.init_args.focal_weight: LiteSAMModule has no argument 'focal_weight' "
     "(now 'mask_loss.focal_weight')"),
], ids=["kwargs-img_size", "link-target", "link-target-loss", "stride", "bad-value", "unknown-field", "old-name"])
def test_contradictions_stop_at_start_up_in_one_line(extra, message, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(REPO)
    err = _fails(["fit", *recipe_configs("recipes/smoke/litesam.yaml"), *LOCAL, "--model.init_args.init_from", "null",
                  "--trainer.default_root_dir", str(tmp_path), *extra], capsys)
    assert err == f"litesam fit: error: {message}"


def test_a_recipe_that_sets_a_linked_value_is_refused(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(REPO)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  init_args:\n    model: {img_size: 256}\n")
    err = _fails(["fit", *recipe_configs("recipes/smoke/litesam.yaml"), "--config", str(bad), *LOCAL,
                  "--model.init_args.init_from", "null"], capsys)
    assert err == (f"litesam fit: error: {bad} sets model.init_args.model.img_size, which is linked from data.img_size:"
                   " set data.img_size instead")
    bad.write_text("data: {ppn_stride: 16}\n")  # the link the other way: the model's grid stride into the data
    err = _fails(["fit", *recipe_configs("recipes/smoke/litesam.yaml"), "--config", str(bad), *LOCAL,
                  "--model.init_args.init_from", "null"], capsys)
    assert err == (f"litesam fit: error: {bad} sets data.ppn_stride, which is linked from "
                   "model.init_args.model.kwargs.ppn_kwargs.stride: set model.init_args.model.kwargs.ppn_kwargs.stride"
                   " instead")
    bad.write_text("data: {ppn_stride: 8}\n")  # the linked value itself (a config.yaml saved before the link): kept
    c = cli.run_lightning_cli([*recipe_configs("recipes/smoke/litesam.yaml"), "--config", str(bad), *LOCAL,
                               "--model.init_args.init_from", "null"], run=False)
    assert c.datamodule.ppn_stride == 8


def test_validate_an_old_flat_checkpoint(synthetic_sa1b, tmp_path, monkeypatch):
    """``litesam validate --ckpt_path`` on a checkpoint written before the parts (flat hyper-parameters)."""
    monkeypatch.chdir(REPO)
    torch.manual_seed(0)
    m = LiteSAMModule(model=ModelSpec(kwargs=TINY), validation=ValidationConfig(compute_map=False))
    trainer = cpu_trainer(tmp_path, limit_val_batches=1)
    trainer.validate(m, dataloaders=batch_loader(1), verbose=False)
    ckpt = tmp_path / "old.ckpt"
    trainer.save_checkpoint(ckpt)
    blob = torch.load(ckpt, map_location="cpu", weights_only=False)
    blob["hyper_parameters"] = {  # what the modules saved before the parts: flat arguments
        "_class_path": "litesam_pl.modules.LiteSAMModule", "model_name": "litesam", "model_kwargs": TINY,
        "lr": 4e-5, "focal_alpha": -1.0, "ppn_point_loss": "hard_mse", "val_top_n": 100, "compute_map": False,
        "init_from": None, "prompt_forms": ["box"], "prompt_split": True}
    torch.save(blob, ckpt)
    shards = sorted(str(p) for p in synthetic_sa1b.glob("*.tar"))[0]
    c = cli.run_lightning_cli(["validate", *recipe_configs("recipes/smoke/litesam.yaml"), *LOCAL,
                               "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.callbacks", "[]",
                               "--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "1",
                               "--data.img_size", "64", "--data.batch_size", "2", "--data.num_workers", "0",
                               "--data.val_shards", shards, "--ckpt_path", str(ckpt)])
    assert c.model.cfg.validation == ValidationConfig(compute_map=False, top_n=100)  # the checkpoint's
    assert c.model.cfg.mask_loss.focal_alpha == -1.0 and c.model.prompt_forms == ("box",)
    assert "val/ar100" in c.trainer.callback_metrics and "val/ap_1box" not in c.trainer.callback_metrics


def test_load_model_reads_the_model_part_of_a_checkpoint_without_its_own_key(tmp_path):
    """``litesam_pl.load_model`` reads ``checkpoint["litesam_model"]`` first; without it, the ``model`` part of the
    hyper-parameters (its linked ``img_size`` / ``ppn_groups`` included), as the flat ``model_name`` of older ones."""
    from litesam_pl.models import load_model, model_config

    torch.manual_seed(1)
    m = LiteSAMModule(model=ModelSpec(kwargs={"ppn_stem": "conv"}, img_size=64, ppn_groups=1))
    ckpt = tmp_path / "part.ckpt"
    torch.save({"hyper_parameters": dict(m.hparams), "state_dict": m.state_dict()}, ckpt)
    loaded = load_model(ckpt)
    assert model_config(loaded) == model_config(m.model) and loaded.autoppn.num_groups == 1
    for k, v in m.model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, msg=k)


def test_check_datamodule_names_both_options():
    """The check ``setup`` runs for any Trainer (``litesam`` links these, so only a hand-built pair can disagree)."""
    from types import SimpleNamespace

    m = AutoPPNModule(model=ModelSpec(kwargs=TINY))
    ok = {"img_size": 64, "num_groups": 3, "ppn_stride": 8, "hparams": {"target_mode": "distance"}}
    m.check_datamodule(SimpleNamespace(**ok))
    cases = [({"img_size": 128}, "data.img_size=128 contradicts model.img_size=64: set it once, in data.img_size"),
             ({"num_groups": 1}, "data.num_groups=1 contradicts model.ppn_groups=3: set it once, in data.num_groups"),
             ({"ppn_stride": 16}, "data.ppn_stride=16 contradicts model.kwargs.ppn_kwargs.stride=8: set it once, in "
                                  "model.kwargs.ppn_kwargs.stride (litesam links it into data.ppn_stride)"),
             ({"hparams": {"target_mode": "gaussian"}},
              "data.target_mode='gaussian' (trained with 'focal') contradicts ppn_loss.point_loss='hard_mse'")]
    for change, message in cases:
        with pytest.raises(ConfigError) as e:
            m.check_datamodule(SimpleNamespace(**{**ok, **change}))
        assert str(e.value).startswith(message), str(e.value)
