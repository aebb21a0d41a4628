"""Errors a person can act on (issue 13, points 6, 10, 11): one line on stderr, a non-zero exit status, no traceback.

Each case runs ``litesam_pl.cli.main([...])`` (or a ``data_prep`` module's ``main``) on tiny files in ``tmp_path``;
no GPU and no training: the GPU-recipe case stops before the Trainer is built.
"""
from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import lightning.pytorch.cli  # noqa: F401  imported here: its log handler must not bind to one test's capsys stream
import numpy as np
import pytest
import torch

import litesam_pl
from litesam_pl import cli
from litesam_pl.cli.errors import JSONARGPARSE_MESSAGES, jsonargparse_message
from litesam_pl.models.registry import ModelError, ModelFileNotFoundError
from tests.helpers import REPO

ACCEPTED = "expected a Lightning .ckpt or a `litesam export` .pt"


def _fails(argv, capsys, code: int = 2) -> str:
    """Run ``litesam argv``: it must exit with ``code``, print no traceback; returns stderr."""
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return err


def _one_error_line(err: str, prog: str = "litesam segment-everything") -> str:
    """The single ``prog: error: ...`` line of ``err``."""
    lines = [ln for ln in err.splitlines() if ln.startswith(f"{prog}: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """A tiny jpg, a yaml, a fake official SAM state dict, a backbone-stage export (no AutoPPN) and a Lightning
    checkpoint whose mask decoder weights are missing."""
    import cv2

    from litesam_pl.inference.export import export_weights

    d = tmp_path_factory.mktemp("model_files")
    cv2.imwrite(str(d / "img.jpg"), np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8))
    (d / "recipe.yaml").write_text("trainer:\n  max_steps: 3\n")
    sam = {"image_encoder.patch_embed.proj.weight": torch.zeros(4, 3, 16, 16),
           "image_encoder.blocks.0.norm1.weight": torch.zeros(4), "mask_decoder.iou_token.weight": torch.zeros(1, 4)}
    torch.save(sam, d / "sam_vit_b_01ec64.pth")
    torch.manual_seed(0)
    export_weights(litesam_pl.create_model("litesam", img_size=64, autoppn=False), d / "backbone.pt")
    full = litesam_pl.create_model("litesam", img_size=64)
    state = {f"model.{k}": v for k, v in full.state_dict().items() if not k.startswith("mask_decoder.")}
    torch.save({"hyper_parameters": {"model_name": "litesam", "model_kwargs": {"img_size": 64}}, "state_dict": state},
               d / "partial.ckpt")
    return d


def _segment(files: Path, *extra: str) -> list:
    return ["segment-everything", str(files / "img.jpg"), "--out", str(files / "out"), *extra]


# ------------------------------------------------------------------------------------------------ 6: models
def test_version(capsys):
    cli.main(["--version"])
    assert capsys.readouterr().out.strip() == f"litesam-pl {litesam_pl.__version__}"


@pytest.mark.parametrize("name, expect", [
    ("litevit", "litevit is an image backbone, not a Lite-SAM model"),
    ("timm:resnet18", "timm:resnet18 is an image backbone, not a Lite-SAM model"),
    ("litesm", "unknown model 'litesm' (did you mean 'litesam'?)"),
])
def test_segment_everything_model_not_a_segmenter(model_files, capsys, name, expect):
    line = _one_error_line(_fails(_segment(model_files, "--model", name), capsys))
    assert f"--model: {expect}" in line
    assert "litesam, litesam_2x, litesam_3x, sam_vit_b" in line  # the registered Lite-SAM models


@pytest.mark.parametrize("name", ["img.jpg", "recipe.yaml"])
def test_ckpt_not_a_checkpoint(model_files, capsys, name):
    line = _one_error_line(_fails(_segment(model_files, "--ckpt", str(model_files / name)), capsys))
    assert f"{model_files / name} is not a litesam-pl checkpoint or export ({ACCEPTED})" in line
    assert "weights_only" not in line


def test_ckpt_official_sam(model_files, capsys):
    sam = model_files / "sam_vit_b_01ec64.pth"
    line = _one_error_line(_fails(_segment(model_files, "--ckpt", str(sam)), capsys))
    assert f"{sam} is an official SAM checkpoint" in line and "not a litesam-pl file" in line and ACCEPTED in line
    line = _one_error_line(_fails(["export", "--ckpt", str(sam), "--out", str(model_files / "x.pt")], capsys),
                           "litesam export")
    assert "official SAM checkpoint" in line


def test_ckpt_missing_keys(model_files, capsys):
    ckpt = model_files / "partial.ckpt"
    n = sum(1 for k in litesam_pl.create_model("litesam", img_size=64).state_dict() if k.startswith("mask_decoder."))
    for argv, prog in ((_segment(model_files, "--ckpt", str(ckpt)), "litesam segment-everything"),
                       (["export", "--ckpt", str(ckpt), "--out", str(model_files / "x.pt")], "litesam export")):
        line = _one_error_line(_fails(argv, capsys), prog)
        assert f"{n} missing key(s) (mask_decoder.*: {n}; e.g. mask_decoder." in line, line


def test_backbone_checkpoint_with_autoppn_prompts(model_files, capsys):
    ckpt = str(model_files / "backbone.pt")
    line = _one_error_line(_fails(_segment(model_files, "--ckpt", ckpt), capsys))
    assert "--prompts autoppn (the default) needs a model with an AutoPPN head" in line and "--prompts grid" in line
    line = _one_error_line(_fails(_segment(model_files, "--ckpt", ckpt, "--prompts", "autoppn"), capsys))
    assert line.split("error: ")[1].startswith("--prompts autoppn needs")


def test_missing_ckpt(model_files, capsys):
    line = _one_error_line(_fails(_segment(model_files, "--ckpt", str(model_files / "nowhere.ckpt")), capsys))
    assert "no model file at" in line and "does not exist" in line


def test_load_model_error_types(model_files):
    """``ModelError`` is a ``ValueError`` (callers that catch ValueError keep working); no file is also a
    ``FileNotFoundError``."""
    with pytest.raises(ModelFileNotFoundError):
        litesam_pl.load_model(model_files / "nowhere.pt")
    with pytest.raises(FileNotFoundError):
        litesam_pl.load_model(model_files / "nowhere.pt")
    for name in ("img.jpg", "recipe.yaml", "sam_vit_b_01ec64.pth", "partial.ckpt"):
        with pytest.raises(ModelError) as e:
            litesam_pl.load_model(model_files / name)
        assert isinstance(e.value, ValueError) and "\n" not in str(e.value)
    with pytest.raises(ModelError, match="did you mean 'litesam'"):
        litesam_pl.create_model("litesm")
    assert litesam_pl.list_models("segmenter") == ["litesam", "litesam_2x", "litesam_3x", "sam_vit_b"]


def test_user_errors_from_tools_are_one_line_but_bugs_keep_tracebacks(monkeypatch, capsys):
    fake = types.ModuleType("litesam_pl.inference.export")

    def user_error(argv):
        raise ModelError("x.pt: something the user can fix")

    fake.main = user_error
    monkeypatch.setitem(sys.modules, "litesam_pl.inference.export", fake)
    assert _one_error_line(_fails(["export"], capsys), "litesam export").endswith("x.pt: something the user can fix")

    def bug(argv):
        raise RuntimeError("a real bug")

    fake.main = bug
    with pytest.raises(RuntimeError, match="a real bug"):
        cli.main(["export"])


def test_console_script_prints_no_traceback(model_files):
    """The real process: one error line on stderr, exit status 2."""
    p = subprocess.run([sys.executable, "-m", "litesam_pl.cli", *_segment(model_files, "--ckpt",
                                                                          str(model_files / "img.jpg"))],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("litesam segment-everything: error: ")


# ------------------------------------------------------------------------------------------- 10: LightningCLI
def test_unknown_subcommand_lists_every_subcommand(capsys):
    err = _fails(["segment"], capsys)
    first, *rest = err.strip().splitlines()
    assert first == "litesam: error: unknown subcommand 'segment'; did you mean 'segment-everything'?"
    assert len(rest) == 1
    for name in ("fit", "validate", "test", "predict", "segment-everything", "export"):
        assert name in rest[0]


def test_unknown_option_error_first_with_suggestion(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    err = _fails(["fit", "--config", "recipes/litesam.yaml", "--trainer.max_stepz", "3"], capsys)
    lines = err.strip().splitlines()
    assert lines[0] == ("litesam fit: error: unrecognized arguments: --trainer.max_stepz 3 "
                        "(did you mean '--trainer.max_steps'?)")
    assert lines[1:] == ["run `litesam fit --help` for every option"]


def test_unknown_model_init_arg_one_line(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    err = _fails(["fit", "--config", "recipes/litesam.yaml", "--model.init_args.lrr", "3"], capsys)
    assert err.strip().splitlines() == [
        "litesam fit: error: unrecognized option --model.init_args.lrr: LiteSAMModule has no argument 'lrr' "
        "(did you mean 'optimizer.init_args.lr'?)",
        "run `litesam fit --help` for every option",
    ]


def _jsonargparse_error(args: list, monkeypatch, capsys) -> str:
    """The message jsonargparse gives ``litesam``'s own parser (``ShortErrorParser``, in the LightningCLI that
    ``litesam`` builds) when it refuses ``args``: the one its ``error`` prints from (not a nested parser's)."""
    from litesam_pl.cli.lightning import ShortErrorParser

    seen = []
    error = ShortErrorParser.error

    def recording(self, message, ex=None):
        if self.exit_on_error:
            seen.append(message)
        return error(self, message, ex)

    monkeypatch.setattr(ShortErrorParser, "error", recording)
    monkeypatch.setattr(sys, "argv", ["litesam"])
    with pytest.raises(SystemExit):
        cli.run_lightning_cli(args)
    capsys.readouterr()
    assert len(seen) == 1, seen
    return seen[0]


RECIPE = str(REPO / "recipes" / "litesam.yaml")
# one case per JSONARGPARSE_MESSAGES pattern: a command line jsonargparse refuses so, and what the pattern captures
MESSAGE_CASES = {
    "invalid_subcommand": (["fitt"], {"name": "fitt"}),
    "model_required": (["fit"], {"subcommand": "fit"}),
    "unrecognized_arguments": (["fit", "--config", RECIPE, "--nope", "1"], {"arguments": "--nope 1"}),
    "wrong_callable": (["fit", "--config", RECIPE, "--model.init_args.lr_scheduler", "torch.optim.Adam"],
                       {"class_path": "torch.optim.Adam", "sentence": "Expected 'torch.optim.Adam' to be a subclass "
                                                                      "of Union[LRScheduler, ReduceLROnPlateau]"}),
}


def test_every_jsonargparse_message_pattern_has_a_case():
    assert set(MESSAGE_CASES) == set(JSONARGPARSE_MESSAGES)


@pytest.mark.parametrize("name", sorted(MESSAGE_CASES))
def test_jsonargparse_message_patterns_match_its_messages(name, monkeypatch, capsys):
    """Each pattern on the message the installed jsonargparse gives ``litesam``'s parser (a new wording fails here,
    not in a user's terminal)."""
    args, captured = MESSAGE_CASES[name]
    assert jsonargparse_message(name, _jsonargparse_error(args, monkeypatch, capsys)) == captured


def test_an_unknown_subcommand_past_main_lists_every_subcommand(capsys):
    """``run_lightning_cli`` itself (``main`` catches an unknown subcommand first): the parser's message becomes
    the same two lines."""
    with pytest.raises(SystemExit) as e:
        cli.run_lightning_cli(["segment"])
    assert e.value.code == 2
    first, *rest = capsys.readouterr().err.strip().splitlines()
    assert first == "litesam: error: unknown subcommand 'segment'; did you mean 'segment-everything'?"
    assert len(rest) == 1 and "fit" in rest[0]


def test_fit_without_recipe(capsys):
    err = _fails(["fit"], capsys)
    assert err.strip().splitlines() == [
        "litesam fit: error: the following arguments are required: fit.model (give a recipe: litesam fit --config "
        "recipes/<stage>.yaml)",
        "run `litesam fit --help` for every option",
    ]


def test_gpu_recipe_on_cpu_only_machine(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    from lightning.pytorch.cli import LightningCLI

    def no_instantiation(self):  # the check must come first: no model, no Trainer, no training
        raise AssertionError("classes instantiated")

    monkeypatch.setattr(LightningCLI, "instantiate_classes", no_instantiation)
    line = _one_error_line(_fails(["fit", "--config", "recipes/litesam.yaml"], capsys), "litesam fit")
    assert "recipes/litesam.yaml wants GPUs (trainer.accelerator: gpu) but CUDA is not available" in line
    assert ("--trainer.accelerator cpu --trainer.devices 1 --trainer.num_nodes 1 --trainer.strategy auto "
            "--trainer.precision 32-true") in line
    assert "--config recipes/litesam.yaml --config recipes/smoke/litesam.yaml" in line


# ---------------------------------------------------------------------------------------------- 11: data_prep
def test_sa1b_help_shows_defaults(capsys):
    from data_prep import sa1b

    with pytest.raises(SystemExit) as e:
        sa1b.main(["--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 1024)" in out and "(default: 1000)" in out and "(default: 90)" in out and "(default: 0)" in out
    assert ("--fraction FRACTION keep this fraction of images (default: all of them, 1.0; the paper trains on "
            "0.18)") in out
    assert "(default: None)" not in out


def test_check_missing_root(tmp_path, capsys):
    from data_prep import check

    for dataset in ("coco", "lvis", "bsds", "sa1b"):
        assert check.main([dataset, "--root", str(tmp_path / "nonexistent")]) == 1
        out, err = capsys.readouterr()
        assert err.strip() == f"python -m data_prep.check: error: no such folder: {tmp_path / 'nonexistent'}"
        assert out == "" and "0 of 0" not in err
    (tmp_path / "file").write_text("x")
    assert check.main(["coco", "--root", str(tmp_path / "file")]) == 1
    assert "not a folder" in capsys.readouterr().err


def test_global_batch_warning_names_the_fix(capsys):
    """Issue 13 #9: a multi-GPU run whose global batch is not the paper's 256 is named in one line with the fix;
    the recipes' 16 x 8 x 2 and single-process runs are quiet."""
    from types import SimpleNamespace

    from litesam_pl.cli import warn_global_batch

    msg = warn_global_batch(SimpleNamespace(world_size=32, num_nodes=4), SimpleNamespace(batch_size=2))
    assert msg and "4 nodes x 8 devices x data.batch_size 2 = 64" in msg and "--data.batch_size 8" in msg
    assert msg in capsys.readouterr().err
    assert warn_global_batch(SimpleNamespace(world_size=128, num_nodes=16), SimpleNamespace(batch_size=2)) is None
    assert warn_global_batch(SimpleNamespace(world_size=1, num_nodes=1), SimpleNamespace(batch_size=4)) is None
    odd = warn_global_batch(SimpleNamespace(world_size=3, num_nodes=1), SimpleNamespace(batch_size=2))
    assert odd and "global batch of 256" in odd


def test_missing_shards_are_one_line_naming_the_option_before_training(tmp_path, capsys):
    """Issue 13 #9: a shard path that does not exist stops `litesam fit` at start-up with one line that names the
    option, no traceback."""
    from litesam_pl import cli

    args = ["fit", "--config", "recipes/litesam.yaml", "--config", "recipes/smoke/litesam.yaml",
            "--trainer.logger", "false", "--trainer.callbacks=[]", "--trainer.default_root_dir", str(tmp_path),
            "--model.init_args.init_from", "null", "--data.train_shards", str(tmp_path / "nowhere" / "sa_*.tar")]
    with pytest.raises(SystemExit) as e:
        cli.main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert "litesam fit: error: data.train_shards: no shards match" in err


def test_default_root_dir_moves_the_loggers_and_checkpoints(tmp_path):
    """Issue 13 #9: --trainer.default_root_dir moves the recipe's CSV/W&B logs and checkpoints too (they name the
    run folder themselves); without it they stay in the recipe's folder."""
    from litesam_pl import cli

    base = ["fit", "--config", "recipes/litesam.yaml", "--config", "recipes/smoke/litesam.yaml",
            "--model.init_args.init_from", "null", "--data.train_shards", "x", "--data.val_shards", "null"]
    c = cli.run_lightning_cli(base[1:] + ["--trainer.default_root_dir", str(tmp_path / "elsewhere")], run=False)
    dirs = [lg.save_dir for lg in c.trainer.loggers] + [c.trainer.checkpoint_callback.dirpath]
    assert all(os.path.normpath(d).startswith(str(tmp_path / "elsewhere")) for d in dirs), dirs
    c = cli.run_lightning_cli(base[1:], run=False)
    assert os.path.normpath(c.trainer.checkpoint_callback.dirpath).endswith(os.path.join("runs", "smoke", "litesam"))
    ns = {"trainer": {"default_root_dir": "b", "logger": [{"init_args": {"save_dir": "a"}}],
                      "callbacks": [{"class_path": "x.ModelCheckpoint", "init_args": {"dirpath": "c"}}]}}
    assert cli.follow_run_dir(ns) is None and ns["trainer"]["logger"][0]["init_args"]["save_dir"] == "a"
