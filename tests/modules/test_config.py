"""The modules' typed configuration (issue 14): the parts check their values, the CLI links what data and model
share (set once: on the data side, the AutoPPN grid stride on the model side) and a contradictory configuration
stops at start-up with one line naming both options; the optimizer and its schedule are LightningCLI callables
(``WarmupCosine`` is the schedule the parts had); old checkpoints (flat hyper-parameters, the optimizer part) still
load."""
from __future__ import annotations

import functools
import math
import pickle

import pytest
import torch
import yaml

from litesam_pl import cli
from litesam_pl.cli.config import DATA_LINKS, MODEL_LINKS, ppn_stride_of, suggest_option, upgrade_ckpt_hparams
from litesam_pl.modules import AutoPPNModule, BackboneBoxModule, LiteSAMModule
from litesam_pl.modules.config import (ConfigError, MaskLossConfig, ModelSpec, PPNLossConfig, PromptConfig,
                                       ValidationConfig, upgrade_flat_hparams)
from litesam_pl.modules.optim import PAPER_OPTIMIZER, WARMUP_COSINE, optimization, upgrade_hparams
from litesam_pl.modules.schedules import WarmupCosine
from tests.helpers import LOCAL, REPO, TINY, batch_loader, cpu_trainer, recipe_configs


@pytest.mark.parametrize("build, option", [
    (lambda: MaskLossConfig(resolution="pointz"), "mask_loss.resolution"),
    (lambda: MaskLossConfig(points=0), "mask_loss.points"),
    (lambda: PPNLossConfig(point_loss="l2"), "ppn_loss.point_loss"),
    (lambda: PPNLossConfig(box_unit="px"), "ppn_loss.box_unit"),
    (lambda: PPNLossConfig(box_weighting="area"), "ppn_loss.box_weighting"),
    (lambda: optimization({"class_path": "torch.optim.Adam", "init_args": {"lr": -1.0}}, None), "optimizer"),
    (lambda: optimization({"betas": [0.9, 1.5]}, None), "optimizer"),
    (lambda: optimization({"class_path": "torch.optim.Adamm"}, None), "optimizer.class_path"),
    (lambda: optimization({"class_path": "torch.optim.lr_scheduler.StepLR"}, None), "optimizer"),
    (lambda: optimization(PAPER_OPTIMIZER, {"class_path": WARMUP_COSINE, "init_args": {"schedule": "step"}}),
     "lr_scheduler.init_args.schedule"),
    (lambda: optimization({"schedule": "step", "warmup_steps": 2}, None), "lr_scheduler.init_args.schedule"),
    (lambda: optimization(PAPER_OPTIMIZER, {"class_path": WARMUP_COSINE, "init_args": {"warmup_steps": -1}}),
     "lr_scheduler.init_args.warmup_steps"),
    (lambda: optimization(PAPER_OPTIMIZER, {"class_path": WARMUP_COSINE, "init_args": {"min_lr_ratio": 2}}),
     "lr_scheduler.init_args.min_lr_ratio"),
    (lambda: optimization(PAPER_OPTIMIZER, {"class_path": "torch.optim.lr_scheduler.ReduceLROnPlateau"}),
     "lr_scheduler"),
    (lambda: optimization(PAPER_OPTIMIZER, lambda opt: WarmupCosine(opt)), "lr_scheduler"),
    (lambda: optimization({"lr": 1e-3, "schedule": "cosine"}, {"class_path": WARMUP_COSINE}), "optimizer.schedule"),
    (lambda: optimization({"lrr": 1e-3}, None), "optimizer: unknown field(s) ['lrr']"),
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
    m = LiteSAMModule(model={"kwargs": TINY}, mask_loss={"focal_alpha": -1.0},
                      optimizer={"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3, "betas": (0.9, 0.99)}},
                      lr_scheduler={"class_path": WARMUP_COSINE, "init_args": {"warmup_steps": 5}},
                      prompts={"max_per_image": 4}, validation={"top_n": 200})
    assert m.cfg.mask_loss == MaskLossConfig(focal_alpha=-1.0)
    assert m.img_size == 64 and m.cfg.prompts.max_per_image == 4 and m.cfg.validation.top_n == 200
    # hyper-parameters are plain dicts (YAML, weights_only checkpoints), the callables {class_path, init_args}, and
    # rebuild the module
    assert m.hparams["mask_loss"]["focal_alpha"] == -1.0 and m.hparams["model"]["kwargs"] == TINY
    assert m.hparams["optimizer"] == {"class_path": "torch.optim.AdamW",
                                      "init_args": {"lr": 1e-3, "betas": [0.9, 0.99]}}
    assert m.hparams["lr_scheduler"] == {"class_path": WARMUP_COSINE, "init_args": {"warmup_steps": 5}}
    callables = {k: m.hparams[k] for k in ("optimizer", "lr_scheduler")}
    assert yaml.safe_load(yaml.safe_dump(callables)) == callables
    # the default (None) is the paper's Adam, no schedule; the module pickles (ddp_spawn, deep copies)
    default = LiteSAMModule(model={"kwargs": TINY})
    assert default.hparams["optimizer"] == PAPER_OPTIMIZER and default.hparams["lr_scheduler"] is None
    opt = pickle.loads(pickle.dumps(default)).configure_optimizers()
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["lr"] == 4e-5
    with pytest.raises(ConfigError, match=r"mask_loss: unknown field\(s\) \['focal_weigth'\]"):
        LiteSAMModule(model={"kwargs": TINY}, mask_loss={"focal_weigth": 1.0})
    ckpt = tmp_path / "m.ckpt"
    torch.save({"hyper_parameters": dict(m.hparams), "state_dict": m.state_dict(),
                "pytorch-lightning_version": "2.6.0"}, ckpt)
    assert torch.load(ckpt, weights_only=True)["hyper_parameters"]["optimizer"]["init_args"]["betas"] == [0.9, 0.99]
    again = LiteSAMModule.load_from_checkpoint(ckpt, weights_only=True)
    assert again.cfg.mask_loss == m.cfg.mask_loss
    assert (again.hparams["optimizer"], again.hparams["lr_scheduler"]) == (m.hparams["optimizer"],
                                                                           m.hparams["lr_scheduler"])
    opt = again.configure_optimizers()["optimizer"]
    assert isinstance(opt, torch.optim.AdamW) and tuple(opt.defaults["betas"]) == (0.9, 0.99)


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
                                                      (30, "cosine", 10), (0, "constant", 10)])
@pytest.mark.parametrize("given_total", [True, False], ids=["total_steps", "estimated"])
def test_warmup_cosine_is_the_old_schedule(warmup, schedule, total, given_total):
    """WarmupCosine's factor and the optimizer's lr at every step are the schedule the optimizer part had; the
    trainer's step count (``total_steps_from``) is read only once the cosine has begun to decay."""
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = WarmupCosine(opt, warmup_steps=warmup, schedule=schedule, min_lr_ratio=0.05,
                         total_steps=total if given_total else None)
    reads = []
    if not given_total:
        sched.total_steps_from(lambda: reads.append(total) or total)
    for step in range(0, total + 5):
        want = _old_factor(step, warmup, schedule, 0.05, total)
        assert sched.lr_factor(step) == want, step
        assert opt.param_groups[0]["lr"] == 1e-3 * want, step
        assert bool(reads) == (not given_total and schedule == "cosine" and step > warmup), step
        opt.step()
        sched.step()
    assert sched.is_constant == (schedule == "constant" and warmup == 0)
    state = sched.state_dict()  # the position as plain values: no settings, no step-count supplier
    assert "_estimated_total" not in state and "warmup_steps" not in state and state["last_epoch"] == total + 5
    assert yaml.safe_load(yaml.safe_dump({k: v for k, v in state.items() if k != "_last_lr"}))
    # resuming takes the position from the state and the settings from the configuration (as LambdaLR did)
    again = WarmupCosine(opt, warmup_steps=warmup, schedule="constant", min_lr_ratio=0.5, total_steps=total)
    again.load_state_dict({**state, "schedule": schedule, "min_lr_ratio": 0.05})
    assert (again.last_epoch, again.schedule, again.min_lr_ratio) == (total + 5, "constant", 0.5)


def test_the_module_keeps_factories_built_from_the_specs():
    """LightningCLI passes partial(<its instantiator function>, <instantiator>, cls, **init_args): the module keeps a
    factory built from the spec (not the CLI's callable, which holds the CLI); an opaque function of the parameters
    is kept as given."""
    def instantiate(instantiator, cls, *args, **kwargs):
        return cls(*args, **kwargs)

    cli_like = functools.partial(instantiate, object(), torch.optim.AdamW, lr=1e-3)
    cli_sched = functools.partial(instantiate, object(), WarmupCosine, warmup_steps=3)
    optim = optimization(cli_like, cli_sched)
    assert optim.optimizer == {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3}}
    assert optim.make_optimizer.func is torch.optim.AdamW and optim.make_lr_scheduler.func is WarmupCosine
    opaque = lambda params: torch.optim.SGD(params, lr=0.5)  # noqa: E731
    optim = optimization(opaque, None)
    assert optim.make_optimizer is opaque and optim.optimizer["class_path"] == "torch.optim.SGD"
    assert optim.make_lr_scheduler is None
    # a partial of something else is an opaque function too (not read as a class with arguments)
    odd = functools.partial(lambda tag, params: torch.optim.SGD(params, lr=0.1), "tag")
    assert optimization(odd, None).make_optimizer is odd
    with pytest.raises(ConfigError, match="optimizer must be a torch.optim class"):
        optimization("adam", None)


def test_warmup_cosine_needs_a_step_count():
    sched = WarmupCosine(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), warmup_steps=1)
    sched.step()  # step 1 = the warm-up's end: no count needed yet
    with pytest.raises(ValueError, match="total_steps is null"):
        sched.step()


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
    # ... and the optimizer part as the optimizer and schedule callables
    assert upgrade_hparams(old) == {**new, "optimizer": {
        "class_path": "torch.optim.Adam", "init_args": {"lr": 1e-3, "betas": [0.9, 0.999], "weight_decay": 0.0}},
        "lr_scheduler": {"class_path": WARMUP_COSINE,
                         "init_args": {"warmup_steps": 0, "schedule": "cosine", "min_lr_ratio": 0.01}}}
    m = LiteSAMModule(**{k: v for k, v in upgrade_hparams(old).items() if not k.startswith("_")})
    assert m.img_size == 64 and m.cfg.ppn_loss.weight == 2.0
    assert m.hparams["lr_scheduler"]["init_args"]["schedule"] == "cosine"
    # for --ckpt_path the data's linked values win: the checkpoint's are left out
    ckpt = upgrade_ckpt_hparams(old)
    assert ckpt["model"] == {"name": "litesam", "kwargs": {}} and "point_loss" not in ckpt["ppn_loss"]
    assert ckpt["optimizer"]["init_args"]["lr"] == 1e-3 and ckpt["lr_scheduler"]["class_path"] == WARMUP_COSINE
    assert {target for _, target, _ in DATA_LINKS} == {"model.init_args.model.img_size",
                                                       "model.init_args.model.ppn_groups",
                                                       "model.init_args.ppn_loss.point_loss"}
    assert [(source, target) for source, target, *_ in MODEL_LINKS] == [("model.init_args.model.kwargs",
                                                                        "data.ppn_stride")]
    assert ppn_stride_of({}) == ppn_stride_of(None) == 8 and ppn_stride_of({"ppn_kwargs": {"stride": 16}}) == 16


def test_old_litesam_fit_checkpoint_loads_through_lightning(tmp_path):
    """A checkpoint ``litesam fit`` wrote with the optimizer part records LightningCLI's instantiator, which refuses
    that part while Lightning rebuilds the module: ``load_from_checkpoint`` upgrades it first (path or file)."""
    import io

    m = LiteSAMModule(model={"kwargs": TINY})
    hparams = {**dict(m.hparams), "optimizer": {"lr": 2.5e-4, "schedule": "cosine", "warmup_steps": 20},
               "_class_path": "litesam_pl.modules.LiteSAMModule",
               "_instantiator": "lightning.pytorch.cli.instantiate_module"}
    del hparams["lr_scheduler"]
    ckpt = tmp_path / "fit.ckpt"
    torch.save({"hyper_parameters": hparams, "state_dict": m.state_dict(), "pytorch-lightning_version": "2.6.6"}, ckpt)
    for source in (ckpt, io.BytesIO(ckpt.read_bytes())):
        loaded = LiteSAMModule.load_from_checkpoint(source, weights_only=True)
        assert loaded.hparams["optimizer"]["init_args"]["lr"] == 2.5e-4
        assert loaded.hparams["lr_scheduler"]["class_path"] == WARMUP_COSINE
        assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), m.state_dict().values()))


@pytest.mark.parametrize("old, scheduler", [
    ({"lr": 1e-3, "weight_decay": 0.01, "betas": (0.9, 0.99), "schedule": "cosine", "warmup_steps": 20,
      "min_lr_ratio": 0.05}, {"warmup_steps": 20, "schedule": "cosine", "min_lr_ratio": 0.05}),
    ({"lr": 4e-5}, None),  # the paper's recipes: constant, no warm-up -> no schedule, as then
    ({"warmup_steps": 10}, {"warmup_steps": 10, "schedule": "constant", "min_lr_ratio": 0.01}),
], ids=["cosine", "paper", "warmup-constant"])
def test_old_optimizer_part_upgrades_to_the_callables(old, scheduler, tmp_path):
    """A checkpoint whose hyper-parameters hold the optimizer part (``optimizer: {lr, ..., schedule}``) loads as
    the callables, with the learning rate of every step the old schedule's."""
    m = LiteSAMModule(model={"kwargs": TINY})
    hparams = {**dict(m.hparams), "optimizer": old}
    del hparams["lr_scheduler"]  # the modules had no such argument
    new = upgrade_hparams(hparams)
    paper = {"lr": 4e-5, "betas": [0.9, 0.999], "weight_decay": 0.0}
    want = {k: list(old.get(k, v)) if k == "betas" else old.get(k, v) for k, v in paper.items()}
    assert new["optimizer"] == {"class_path": "torch.optim.Adam", "init_args": want}
    assert new["lr_scheduler"] == (scheduler and {"class_path": WARMUP_COSINE, "init_args": scheduler})
    ckpt = tmp_path / "old.ckpt"
    torch.save({"hyper_parameters": hparams, "state_dict": m.state_dict(), "pytorch-lightning_version": "2.6.0"}, ckpt)
    loaded = LiteSAMModule.load_from_checkpoint(ckpt, weights_only=True)  # the module upgrades it itself
    assert (loaded.hparams["optimizer"], loaded.hparams["lr_scheduler"]) == (new["optimizer"], new["lr_scheduler"])
    out = loaded.configure_optimizers()
    opt, sched = (out, None) if isinstance(out, torch.optim.Optimizer) else (out["optimizer"],
                                                                             out["lr_scheduler"]["scheduler"])
    assert type(opt) is torch.optim.Adam and opt.defaults["lr"] == want["lr"]
    assert opt.defaults["weight_decay"] == want["weight_decay"] and list(opt.defaults["betas"]) == want["betas"]
    assert (sched is None) == (scheduler is None)
    if sched is not None:
        assert out["lr_scheduler"]["interval"] == "step"
        sched.total_steps_from(lambda: 100)
        s = {"warmup_steps": 0, "schedule": "constant", "min_lr_ratio": 0.01, **old}
        for step in range(110):
            assert opt.param_groups[0]["lr"] == want["lr"] * _old_factor(
                step, s["warmup_steps"], s["schedule"], s["min_lr_ratio"], 100), step
            opt.step()
            sched.step()
    # resuming a run of the optimizer part: its LambdaLR state loads into WarmupCosine
    if scheduler is not None:
        lam = torch.optim.lr_scheduler.LambdaLR(torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))]), lambda s: 1.0)
        for _ in range(7):
            lam.step()
        fresh = WarmupCosine(torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))]), **scheduler)
        fresh.load_state_dict(lam.state_dict())
        assert fresh.last_epoch == 7 and fresh.warmup_steps == scheduler["warmup_steps"]
    # a schedule in the old part and an lr_scheduler contradict each other
    if scheduler is not None:
        with pytest.raises(ConfigError, match="set the schedule once, as lr_scheduler"):
            LiteSAMModule(model={"kwargs": TINY}, optimizer=old, lr_scheduler=torch.optim.lr_scheduler.ConstantLR)


def test_adamw_and_another_schedule_from_yaml_and_the_command_line(monkeypatch, tmp_path):
    """Any torch optimizer and schedule from a recipe or the command line, no code: the module builds them."""
    monkeypatch.chdir(REPO)
    overlay = tmp_path / "adamw.yaml"
    overlay.write_text("model:\n  init_args:\n    optimizer:\n      class_path: torch.optim.AdamW\n"
                       "      init_args: {weight_decay: 0.05}\n")
    c = cli.run_lightning_cli([*recipe_configs("recipes/smoke/backbone_1box.yaml"), "--config", str(overlay), *LOCAL,
                               "--model.init_args.init_from", "null",
                               "--model.init_args.lr_scheduler", "torch.optim.lr_scheduler.StepLR",
                               "--model.init_args.lr_scheduler.init_args.step_size", "3"], run=False)
    # the module keeps factories of its own, built from the specs, not LightningCLI's callables (which hold the CLI)
    assert c.model.optimizer_factory.func is torch.optim.AdamW
    assert c.model.lr_scheduler_factory.func is torch.optim.lr_scheduler.StepLR
    assert c.model.hparams["optimizer"]["class_path"] == "torch.optim.AdamW"
    assert c.model.hparams["optimizer"]["init_args"]["lr"] == 0.001  # the smoke overlay's, kept
    assert c.model.hparams["lr_scheduler"]["class_path"] == "torch.optim.lr_scheduler.StepLR"
    out = c.model.configure_optimizers()
    assert isinstance(out["optimizer"], torch.optim.AdamW) and out["optimizer"].defaults["weight_decay"] == 0.05
    assert isinstance(out["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.StepLR)
    assert out["lr_scheduler"]["scheduler"].step_size == 3 and out["lr_scheduler"]["interval"] == "step"


def test_suggestions_know_the_parts():
    options = ["optimizer", "optimizer.lr", "mask_loss", "mask_loss.focal_weight", "validation.top_n"]
    assert suggest_option("lrr", options) == "did you mean 'optimizer.lr'?"
    assert suggest_option("val_top_n", options) == "now 'validation.top_n'"
    assert suggest_option("mask_loss_resolution", options) == "now 'mask_loss.resolution'"
    # the old optimizer fields: the flat ones and the optimizer part's
    assert suggest_option("lr", options) == "now 'optimizer.init_args.lr'"
    assert suggest_option("lr_schedule", options) == "now 'lr_scheduler.init_args.schedule'"
    assert suggest_option("optimizer.warmup_steps", options) == "now 'lr_scheduler.init_args.warmup_steps'"


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
    (["--model.init_args.lr_scheduler.init_args.schedule", "step"],
     "lr_scheduler.init_args.schedule must be one of 'constant', 'cosine', got 'step'"),
    (["--model.init_args.optimizer.init_args.lr", "-1"], "optimizer (torch.optim.Adam): Invalid learning rate: -1.0"),
    (["--model.init_args.optimizer.lrr", "3"],
     "unrecognized option --model.init_args.optimizer.init_args.lrr: torch.optim.Adam has no argument 'lrr' "
     "(did you mean 'lr'?)"),
    (["--model.init_args.optimizer.schedule", "cosine"],
     "unrecognized option --model.init_args.optimizer.init_args.schedule: torch.optim.Adam has no argument "
     "'schedule' (now 'lr_scheduler.init_args.schedule')"),
    (["--model.init_args.optimizer", "torch.optim.lr_scheduler.StepLR"],
     "--model.init_args.optimizer: Expected 'torch.optim.lr_scheduler.StepLR' to be a subclass of "
     "<class 'Optimizer'>"),
    (["--model.init_args.optimizer", "Adamm"], "--model.init_args.optimizer: cannot import 'Adamm'"),
    (["--model.init_args.optimizer", "SGD", "--model.init_args.optimizer.init_args.betas", "[0.9, 0.9]"],
     "unrecognized option --model.init_args.optimizer.init_args.betas: torch.optim.SGD has no argument 'betas'"),
    (["--model.init_args.mask_loss", '{"focal_weigth": 3}'],
     "unrecognized option --model.init_args.mask_loss.focal_weigth: LiteSAMModule's mask_loss has no field "
     "'focal_weigth' (did you mean 'mask_loss.focal_weight'?)"),
    (["--optimizer", "torch.optim.SGD"],
     "unrecognized arguments: --optimizer torch.optim.SGD (did you mean '--model.init_args.optimizer'?)"),
    (["--model.init_args.focal_weight", "3"],
     "unrecognized option --model.init_args.focal_weight: LiteSAMModule has no argument 'focal_weight' "
     "(now 'mask_loss.focal_weight')"),
    (["--model.init_args.lr", "3"],
     "unrecognized option --model.init_args.lr: LiteSAMModule has no argument 'lr' (now 'optimizer.init_args.lr')"),
], ids=["kwargs-img_size", "link-target", "link-target-loss", "stride", "bad-schedule", "negative-lr",
        "unknown-arg", "old-field", "not-an-optimizer", "no-such-optimizer", "arg-of-the-old-class", "part-as-dict",
        "lightning-optimizer", "old-name", "old-lr"])
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


def _optimizer_part_hparams(m: LiteSAMModule) -> dict:
    """What the modules saved before the optimizer callables: the parts, the optimizer one with the schedule."""
    hp = {k: v for k, v in m.hparams.items() if k != "lr_scheduler"}
    return {**hp, "_class_path": "litesam_pl.modules.LiteSAMModule",
            "mask_loss": {**hp["mask_loss"], "focal_alpha": -1.0},
            "validation": {"compute_map": False, "top_n": 100, "ppn_score_threshold": 0.0}, "prompt_forms": ["box"],
            "optimizer": {"lr": 2e-4, "weight_decay": 0.0, "betas": (0.9, 0.999), "schedule": "cosine",
                          "warmup_steps": 5, "min_lr_ratio": 0.01}}


# what the modules saved before the parts: flat arguments
_FLAT_HPARAMS = {"_class_path": "litesam_pl.modules.LiteSAMModule", "model_name": "litesam", "model_kwargs": TINY,
                 "lr": 4e-5, "focal_alpha": -1.0, "ppn_point_loss": "hard_mse", "val_top_n": 100, "compute_map": False,
                 "init_from": None, "prompt_forms": ["box"], "prompt_split": True}


@pytest.mark.parametrize("form", ["flat", "optimizer-part"])
def test_validate_an_old_checkpoint(form, synthetic_sa1b, tmp_path, monkeypatch):
    """``litesam validate --ckpt_path`` on a checkpoint written before the parts (flat hyper-parameters) or before
    the optimizer callables (the optimizer part): its settings, the optimizer's and schedule's upgraded, win over the
    recipe's."""
    monkeypatch.chdir(REPO)
    torch.manual_seed(0)
    m = LiteSAMModule(model=ModelSpec(kwargs=TINY), validation=ValidationConfig(compute_map=False))
    trainer = cpu_trainer(tmp_path, limit_val_batches=1)
    trainer.validate(m, dataloaders=batch_loader(1), verbose=False)
    ckpt = tmp_path / "old.ckpt"
    trainer.save_checkpoint(ckpt)
    blob = torch.load(ckpt, map_location="cpu", weights_only=False)
    blob["hyper_parameters"] = _FLAT_HPARAMS if form == "flat" else _optimizer_part_hparams(m)
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
    # the checkpoint's optimizer and schedule, not the recipe's (the CLI adds the class's other defaults)
    upgraded = upgrade_hparams(blob["hyper_parameters"])
    for key in ("optimizer", "lr_scheduler"):
        got, want = c.model.hparams[key], upgraded[key]
        assert (got is None) == (want is None) == (key == "lr_scheduler" and form == "flat")
        if want is not None:
            assert got["class_path"] == want["class_path"]
            assert {k: got["init_args"][k] for k in want["init_args"]} == want["init_args"]
    assert c.model.hparams["optimizer"]["init_args"]["lr"] == (4e-5 if form == "flat" else 2e-4)


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
