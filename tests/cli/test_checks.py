"""``litesam_pl.cli.checks``: a command line's settings merged as jsonargparse merges them, and the setting at fault
named from the classes themselves (no jsonargparse message read). The same lines end to end, through ``litesam fit``:
``tests/modules/test_config.py::test_contradictions_stop_at_start_up_in_one_line``."""
from __future__ import annotations

import pytest

from litesam_pl.cli.checks import check_settings, merged_config, refused_setting, resolve_class
from litesam_pl.modules.config import ConfigError

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
    (["--model.init_args.optimizer.init_args.lr", "-1"], "optimizer (torch.optim.Adam): Invalid learning rate: -1.0"),
    (["--model.init_args.focal_weight", "3"],
     "unrecognized option --model.init_args.focal_weight: LiteSAMModule has no argument 'focal_weight' "
     "(now 'mask_loss.focal_weight')"),
    (["--model.mask_loss", '{"focal_weigth": 3}'],
     "unrecognized option --model.init_args.mask_loss.focal_weigth: LiteSAMModule's mask_loss has no field "
     "'focal_weigth' (did you mean 'mask_loss.focal_weight'?)"),
    (["--data.ppn_stride", "16"], "--data.ppn_stride is linked from model.init_args.model.kwargs.ppn_kwargs.stride: "
                                  "set model.init_args.model.kwargs.ppn_kwargs.stride instead"),
], ids=["unknown-arg", "old-field", "after-a-class-change", "schedule-arg", "not-an-optimizer", "not-a-schedule",
        "no-such-class", "bad-value", "old-module-arg", "part-field", "link-target"])
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
