"""``litesam_pl.cli.checks``: a command line's settings merged as jsonargparse merges them, and the setting at fault
named from the classes themselves, only where jsonargparse refuses that setting too; no shipped recipe stack refused;
a function as the optimizer. The same lines end to end, through ``litesam fit``:
``tests/modules/test_config.py::test_contradictions_stop_at_start_up_in_one_line``."""
from __future__ import annotations

import sys

import lightning.pytorch.cli  # noqa: F401  imported here: its log handler must not bind to one test's capsys stream
import pytest

from litesam_pl import cli
from litesam_pl.cli import checks
from litesam_pl.cli.checks import (check_settings, command_line, merged_config, refused_setting, resolve_class,
                                   resolve_object)
from litesam_pl.modules.config import ConfigError
from tests.helpers import BASES, REPO, base_of, recipe_configs

BASE = """
model:
  class_path: litesam_pl.modules.LiteSAMModule
  init_args:
    optimizer: {class_path: torch.optim.Adam, init_args: {lr: 4.0e-5, betas: [0.9, 0.999]}}
    lr_scheduler: {class_path: litesam_pl.modules.schedules.WarmupCosine, init_args: {warmup_steps: 0}}
"""


@pytest.fixture()
def recipe(tmp_path):
    path = tmp_path / "base.yaml"
    path.write_text(BASE)
    return ["fit", "--config", str(path)]


def test_recipes_and_options_merge_in_order(recipe, tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("model: {init_args: {optimizer: {init_args: {lr: 2.5e-4}}, prompt_split: true}}\n")
    model = merged_config([*recipe, "--config", str(overlay), "--model.init_args.optimizer.init_args.lr=1e-3",
                           "--trainer.max_steps", "3"])["model"]
    assert model["class_path"] == "litesam_pl.modules.LiteSAMModule"
    assert model["init_args"]["optimizer"] == {"class_path": "torch.optim.Adam",  # values as YAML reads them
                                               "init_args": {"lr": "1e-3", "betas": [0.9, 0.999]}}
    assert model["init_args"]["prompt_split"] is True


def test_init_args_may_be_left_out_and_a_class_may_be_a_string(recipe):
    model = merged_config([*recipe, "--model.optimizer.weight_decay", "0.1", "--model.init_args.lr_scheduler",
                           "torch.optim.lr_scheduler.StepLR"])["model"]["init_args"]
    assert model["optimizer"]["init_args"]["weight_decay"] == 0.1
    assert model["lr_scheduler"] == {"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {}}


def test_another_class_keeps_only_the_arguments_it_takes(recipe):
    """As jsonargparse: SGD takes lr, not Adam's betas (dropped, not refused)."""
    optimizer = merged_config([*recipe, "--model.init_args.optimizer", "SGD"])["model"]["init_args"]["optimizer"]
    assert optimizer == {"class_path": "SGD", "init_args": {"lr": 4e-5}}
    assert resolve_class("SGD", "optimizer").__name__ == "SGD"  # an imported subclass by its name, as jsonargparse
    check_settings([*recipe, "--model.init_args.optimizer", "SGD"])  # nothing refused


@pytest.mark.parametrize("extra, line", [
    (["--model.init_args.optimizer.lrr", "3"],
     "unrecognized option --model.init_args.optimizer.init_args.lrr: torch.optim.Adam has no argument 'lrr' "
     "(did you mean 'lr'?)"),
    (["--model.init_args.optimizer.init_args", '{"schedule": "cosine"}'],
     "unrecognized option --model.init_args.optimizer.init_args.schedule: torch.optim.Adam has no argument "
     "'schedule' (now 'lr_scheduler.init_args.schedule')"),
    (["--model.init_args.optimizer.class_path", "torch.optim.SGD", "--model.init_args.optimizer.betas", "[0.9, 0.9]"],
     "unrecognized option --model.init_args.optimizer.init_args.betas: torch.optim.SGD has no argument 'betas'"),
    (["--model.init_args.lr_scheduler.warmup", "3"],
     "unrecognized option --model.init_args.lr_scheduler.init_args.warmup: litesam_pl.modules.schedules.WarmupCosine "
     "has no argument 'warmup' (did you mean 'warmup_steps'?)"),
    (["--model.init_args.optimizer", "torch.optim.lr_scheduler.StepLR"],
     "--model.init_args.optimizer: Expected 'torch.optim.lr_scheduler.StepLR' to be a subclass of <class 'Optimizer'>"),
    (["--model.init_args.lr_scheduler", "torch.optim.Adam"],
     "--model.init_args.lr_scheduler: Expected 'torch.optim.Adam' to be a subclass of Union[LRScheduler, "
     "ReduceLROnPlateau]"),
    (["--model.init_args.optimizer", "Adamm"], "--model.init_args.optimizer: cannot import 'Adamm'"),
    (["--model.init_args.optimizer", "litesam_pl.modules.optim.import_object"],  # returns Any, not an Optimizer
     "--model.init_args.optimizer: Expected 'litesam_pl.modules.optim.import_object' to be a function that returns "
     "<class 'Optimizer'>"),
    (["--model.init_args.lr_scheduler.init_args.warmup_steps", "abc"],  # jsonargparse: not an int
     "lr_scheduler (litesam_pl.modules.schedules.WarmupCosine): invalid literal for int() with base 10: 'abc'"),
    (["--model.init_args.focal_weight", "3"],
     "unrecognized option --model.init_args.focal_weight: LiteSAMModule has no argument 'focal_weight' "
     "(now 'mask_loss.focal_weight')"),
    (["--model.mask_loss", '{"focal_weigth": 3}'],
     "unrecognized option --model.init_args.mask_loss.focal_weigth: LiteSAMModule's mask_loss has no field "
     "'focal_weigth' (did you mean 'mask_loss.focal_weight'?)"),
    (["--data.ppn_stride", "16"], "--data.ppn_stride is linked from model.init_args.model.kwargs.ppn_kwargs.stride: "
                                  "set model.init_args.model.kwargs.ppn_kwargs.stride instead"),
], ids=["unknown-arg", "old-field", "after-a-class-change", "schedule-arg", "not-an-optimizer", "not-a-schedule",
        "no-such-class", "not-an-optimizer-function", "bad-value", "old-module-arg", "part-field", "link-target"])
def test_the_setting_at_fault_is_one_config_error(recipe, extra, line):
    with pytest.raises(ConfigError) as err:
        check_settings([*recipe, *extra])
    assert str(err.value) == line
    assert refused_setting([*recipe, *extra]) == line


def test_valid_settings_and_what_the_checks_cannot_read_are_not_refused(recipe, tmp_path):
    assert refused_setting([*recipe, "--model.init_args.optimizer.init_args.lr", "1e-5", "--trainer.max_stepz", "3"]) \
        == ""  # YAML reads 1e-5 as a string; jsonargparse types it a float, and so does the construction here
    assert refused_setting(["fit", "--config", str(tmp_path / "missing.yaml")]) == ""
    assert refused_setting(["fit", "--model", "NoSuchModule", "--model.init_args.x", "1"]) == ""
    assert refused_setting([]) == ""


@pytest.mark.parametrize("extra", [
    ["--model.init_args.optimizer.init_args.lr", "-1"],  # Adam refuses it when the module is built, not the parser
    ["--model.init_args.lr_scheduler.init_args.schedule", "step"],  # the same for WarmupCosine
    ["--model.init_args.model.img_size", "256"],  # a link target in the model: LiteSAMCLI refuses it after the parse
], ids=["negative-lr", "unknown-schedule", "link-target-in-the-model"])
def test_what_jsonargparse_accepts_is_never_named(recipe, extra):
    """Each finding is confirmed by jsonargparse first: these fail later, at start-up, so when jsonargparse refuses
    something else (``--trainer.max_stepz``) its own message stands."""
    assert refused_setting([*recipe, *extra, "--trainer.max_stepz", "3"]) == ""


# ------------------------------------------------------------------------------------ every shipped recipe stack
RECIPES = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "recipes").rglob("*.yaml"))
OVERRIDES = {
    "as-shipped": [],
    "lr": ["--model.init_args.optimizer.init_args.lr", "1e-4"],
    "batch": ["--data.batch_size", "2"],
    "sgd": ["--model.init_args.optimizer", "torch.optim.SGD", "--model.init_args.optimizer.init_args.lr", "0.1"],
}


def test_every_recipe_is_a_base_or_one_overlay_of_one():
    assert set(BASES) <= set(RECIPES) and all(base_of(r) in BASES for r in RECIPES if r not in BASES)
    assert {base_of(r) for r in RECIPES if r.startswith(("recipes/smoke/", "recipes/real/", "recipes/ablations/"))} \
        == set(BASES)


@pytest.mark.parametrize("recipe_file", RECIPES)
def test_no_shipped_recipe_stack_is_refused(recipe_file, monkeypatch):
    """Each base alone and each overlay on its base (``tests.helpers.stack``), as shipped and with common
    overrides: the checks name nothing (they run on every command line jsonargparse refuses); nor do they when
    jsonargparse is taken to refuse every setting (each check on its own, the optimizer and schedule built)."""
    monkeypatch.chdir(REPO)
    for name, extra in OVERRIDES.items():
        argv = ["fit", *recipe_configs(recipe_file), *extra]
        check_settings(argv)  # raises nothing
        with monkeypatch.context() as m:
            m.setattr(checks, "_refusal", lambda hint, value: "refused")
            check_settings(argv)
        optimizer = merged_config(argv)["model"]["init_args"]["optimizer"]
        if name == "sgd":  # the switch keeps only what SGD takes of the recipe's Adam arguments
            assert optimizer["class_path"] == "torch.optim.SGD" and optimizer["init_args"]["lr"] == 0.1
            assert "betas" not in optimizer["init_args"]


# --------------------------------------------------------------------------------------- the argv walk
def test_config_always_starts_a_source(recipe, tmp_path):
    """``-c`` / ``--config`` after an option written without its value is a new source, not that option's value;
    a negative number is a value."""
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("model: {init_args: {prompt_split: true}}\ntrainer: {max_steps: 7}\n")
    for config in (["-c", str(overlay)], [f"-c={overlay}"], [f"-c{overlay}"], [f"--config={overlay}"]):
        tree = merged_config([*recipe, "--trainer.fast_dev_run", *config, "--model.init_args.optimizer.lr", "-1"])
        assert tree["trainer"] == {"max_steps": 7}, config  # no fast_dev_run: it was given no value
        assert tree["model"]["init_args"]["prompt_split"] is True
        assert tree["model"]["init_args"]["optimizer"]["init_args"]["lr"] == -1


def test_a_dict_or_namespace_is_one_more_source(recipe):
    """LightningCLI's ``args`` as a dict or ``Namespace`` (``parse_object``): its settings are read as a recipe."""
    from jsonargparse import Namespace

    settings = {"model": {"init_args": {"optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lrr": 3}}}}}
    for args in ({"fit": settings}, {"subcommand": "fit", "fit": settings}, Namespace(fit=Namespace(**settings))):
        argv = command_line(args)
        assert argv[:2] == ["fit", "--config"]
        assert merged_config(argv)["model"]["init_args"]["optimizer"]["init_args"] == {"lrr": 3}
    assert command_line(settings)[0] == "--config"  # no subcommand (LightningCLI with run=False)
    assert command_line({"fit": {"model": object()}}) == []  # not plain data: nothing checked
    assert command_line({"subcommand": ["fit"], "fit": {}}) == []  # nonsense: nothing checked, no error
    assert command_line(("fit", 3)) == ["fit", "3"]


def test_litesam_cli_given_a_dict_names_the_setting(monkeypatch, capsys):
    """``LiteSAMCLI(args={...})`` end to end: the refused setting of the dict is the line."""
    import yaml

    from litesam_pl.cli.lightning import LiteSAMCLI, ShortErrorParser
    from litesam_pl.data.datamodule import SA1BDataModule
    from litesam_pl.modules.base import LiteSAMTaskBase

    settings = yaml.safe_load((REPO / "recipes" / "litesam.yaml").read_text())
    settings["model"]["init_args"]["optimizer"]["init_args"]["lrr"] = 3
    monkeypatch.setattr(sys, "argv", ["litesam"])
    with pytest.raises(SystemExit) as e:
        LiteSAMCLI(model_class=LiteSAMTaskBase, subclass_mode_model=True, datamodule_class=SA1BDataModule,
                   args={"fit": settings}, auto_configure_optimizers=False, parser_class=ShortErrorParser)
    assert e.value.code == 2
    assert ("error: unrecognized option --model.init_args.optimizer.init_args.lrr: torch.optim.Adam has no argument "
            "'lrr' (did you mean 'lr'?)") in capsys.readouterr().err


# ------------------------------------------------------------------------ an optimizer that is a function
@pytest.fixture()
def optimizer_functions(tmp_path, monkeypatch):
    """A module ``checks_optimizers`` on the path: ``sgd`` (returns an Optimizer, as jsonargparse requires of a
    function) and ``untyped`` (no return type)."""
    (tmp_path / "checks_optimizers.py").write_text(
        "import torch\n\n\ndef sgd(params) -> torch.optim.Optimizer:\n    return torch.optim.SGD(params, lr=0.1)\n"
        "\n\ndef untyped(params):\n    return torch.optim.SGD(params, lr=0.1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "checks_optimizers"
    sys.modules.pop("checks_optimizers", None)


def test_a_function_optimizer_is_not_refused(recipe, optimizer_functions):
    fn = f"{optimizer_functions}.sgd"
    assert resolve_class(fn, "optimizer") is None and callable(resolve_object(fn, "optimizer"))
    optimizer = merged_config([*recipe, "--model.init_args.optimizer", fn])["model"]["init_args"]["optimizer"]
    assert optimizer == {"class_path": fn, "init_args": {}}  # a function's path alone, as jsonargparse takes it
    check_settings([*recipe, "--model.init_args.optimizer", fn])
    assert refused_setting([*recipe, "--model.init_args.optimizer", f"{optimizer_functions}.untyped"]) == (
        f"--model.init_args.optimizer: Expected '{optimizer_functions}.untyped' to be a function that returns "
        "<class 'Optimizer'>")


def test_litesam_names_the_real_fault_next_to_a_function_optimizer(optimizer_functions, monkeypatch, capsys):
    """End to end (``litesam fit``): the misspelt trainer option is the line, not the optimizer."""
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "argv", ["litesam"])  # the command line is the one given
    with pytest.raises(SystemExit) as e:
        cli.main(["fit", "--config", "recipes/litesam.yaml", "--model.init_args.optimizer",
                  f"{optimizer_functions}.sgd", "--trainer.max_stepz", "3"])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "litesam fit: error: unrecognized arguments: --trainer.max_stepz 3 (did you mean '--trainer.max_steps'?)",
        "run `litesam fit --help` for every option",
    ]
