"""Issue 13, points 8 and 12: ``validate``/``test`` never overwrite a training run's ``metrics.json`` (MetricsJSON
writes beside the checkpoint evaluated, or a loud ``*_random_weights.json``), and a Lightning command does not print
the libraries' console noise (litlogger tip, wandb's anonymous / git-root warnings, torch's ``LeafSpec`` deprecation,
ModelCheckpoint's directory notices, the ``IterableDataset`` ``__len__`` warning) while other warnings still show."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from functools import partial
from types import SimpleNamespace

import pytest
import torch

from litesam_pl import cli
from litesam_pl.modules import BackboneBoxModule
from litesam_pl.modules.config import ModelSpec, ValidationConfig
from litesam_pl.modules.callbacks import MetricsJSON
from tests.helpers import REPO, TINY, batch_loader, cpu_trainer

NO_PPN = {**TINY, "autoppn": False}  # the cheapest module: box / point prompts only


# --- point 8: MetricsJSON -------------------------------------------------------------------------------------------

def test_validate_and_test_write_beside_the_checkpoint(tmp_path, capfd):
    m = BackboneBoxModule(model=ModelSpec(kwargs=NO_PPN), optimizer=partial(torch.optim.Adam, lr=1e-3),
                          validation=ValidationConfig(compute_map=False))
    trainer = cpu_trainer(tmp_path, callbacks=[MetricsJSON()], limit_val_batches=1)
    trainer.fit(m, train_dataloaders=batch_loader(), val_dataloaders=batch_loader(1))
    run_metrics = tmp_path / "metrics.json"
    fit = json.loads(run_metrics.read_text())
    assert fit["global_step"] == 2 and "val/miou_1box" in fit and "ckpt_path" not in fit  # fit output as before
    before = run_metrics.read_bytes()
    ckpt = tmp_path / "ckpts" / "step2.ckpt"
    trainer.save_checkpoint(ckpt)

    fresh = BackboneBoxModule(model=ModelSpec(kwargs=NO_PPN), validation=ValidationConfig(compute_map=False))
    cpu_trainer(tmp_path, callbacks=[MetricsJSON()]).validate(fresh, dataloaders=batch_loader(1), ckpt_path=str(ckpt),
                                                            verbose=False)
    assert run_metrics.read_bytes() == before, "validate must not touch the training run's metrics.json"
    got = json.loads((ckpt.parent / "step2.validate.json").read_text())
    assert got["val/miou_1box"] == pytest.approx(fit["val/miou_1box"], abs=1e-6)  # the same weights, the same batch
    assert got["global_step"] == 2 and got["epoch"] == trainer.current_epoch  # the checkpoint's, not the evaluator's
    assert got["ckpt_path"] == str(ckpt) and got["weights"] == "checkpoint"

    cpu_trainer(tmp_path, callbacks=[MetricsJSON()]).test(fresh, dataloaders=batch_loader(1), ckpt_path=str(ckpt),
                                                        verbose=False)
    got = json.loads((ckpt.parent / "step2.test.json").read_text())
    assert "test/miou_1box" in got and got["global_step"] == 2
    assert run_metrics.read_bytes() == before and not (tmp_path / "test_metrics.json").exists()
    assert "RANDOM" not in capfd.readouterr().err


def test_validate_without_checkpoint_writes_random_weights_file_and_warns(tmp_path, capfd):
    (tmp_path / "metrics.json").write_text('{"global_step": 960}')  # a training run's record
    m = BackboneBoxModule(model=ModelSpec(kwargs=NO_PPN), validation=ValidationConfig(compute_map=False))
    cpu_trainer(tmp_path, callbacks=[MetricsJSON()]).validate(m, dataloaders=batch_loader(1), verbose=False)
    assert (tmp_path / "metrics.json").read_text() == '{"global_step": 960}'
    got = json.loads((tmp_path / "validate_random_weights.json").read_text())
    assert "val/miou_1box" in got and got["weights"] == "random" and got["ckpt_path"] is None
    err = [ln for ln in capfd.readouterr().err.splitlines() if "RANDOM" in ln]
    assert len(err) == 1 and "validate_random_weights.json" in err[0] and "--ckpt_path" in err[0]


def test_validate_after_fit_in_memory_is_not_random(tmp_path, capfd):
    m = BackboneBoxModule(model=ModelSpec(kwargs=NO_PPN), optimizer=partial(torch.optim.Adam, lr=1e-3),
                          validation=ValidationConfig(compute_map=False))
    trainer = cpu_trainer(tmp_path, callbacks=[MetricsJSON()], max_steps=1, limit_val_batches=1)
    trainer.fit(m, train_dataloaders=batch_loader(1), val_dataloaders=batch_loader(1))
    before = (tmp_path / "metrics.json").read_bytes()
    trainer.validate(m, dataloaders=batch_loader(1), verbose=False)  # no ckpt_path: the weights this trainer trained
    got = json.loads((tmp_path / "validate_in_memory.json").read_text())
    assert got["weights"] == "in_memory" and got["global_step"] == 1
    assert (tmp_path / "metrics.json").read_bytes() == before
    assert not (tmp_path / "validate_random_weights.json").exists()
    assert "RANDOM" not in capfd.readouterr().err


# --- point 12: the filters themselves (cheap) -----------------------------------------------------------------------

def test_filters_are_precise(tmp_path):
    import logging

    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        cli.quiet_library_noise()
        cli.quiet_library_noise()  # idempotent
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning)
        warnings.warn("Your `IterableDataset` has `__len__` defined. In combination ...", UserWarning)
        warnings.warn("something else is deprecated", FutureWarning)
        warnings.warn("Your `Dataset` is odd", UserWarning)
        # a run dir with only logs: ModelCheckpoint's "not empty" notice is noise; one holding checkpoints is not
        logs, other = tmp_path / "logs", tmp_path / "other"
        logs.mkdir(), other.mkdir()
        (logs / "metrics.json").write_text("{}")
        (other / "last.ckpt").write_text("x")
        trainer = SimpleNamespace(checkpoint_callbacks=[SimpleNamespace(dirpath=str(logs)),
                                                        SimpleNamespace(dirpath=str(other))])
        cli.quiet_run(trainer, "fit", None)
        warnings.warn(f"Checkpoint directory {logs} exists and is not empty.", UserWarning)
        warnings.warn(f"Checkpoint directory {other} exists and is not empty.", UserWarning)
        warnings.warn("The dirpath has changed from 'a' to 'b', therefore `best_model_score`, ...", UserWarning)
        cli.quiet_run(trainer, "validate", None)  # nothing is saved by validate: the dirpath notice is noise
        warnings.warn("The dirpath has changed from 'a' to 'c', therefore `best_model_score`, ...", UserWarning)
    shown = [str(w.message) for w in rec]
    assert shown == ["something else is deprecated", "Your `Dataset` is odd",
                     f"Checkpoint directory {other} exists and is not empty.",
                     "The dirpath has changed from 'a' to 'b', therefore `best_model_score`, ..."]
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    log.addHandler(handler)
    old = log.level
    log.setLevel(logging.INFO)
    try:
        log.info("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger](...)")
        log.info("GPU available: False, used: False")
    finally:
        log.removeHandler(handler)
        log.setLevel(old)
    assert [r.getMessage() for r in records] == ["GPU available: False, used: False"]


# --- point 12 end to end: `litesam fit` + `validate` in a fresh process ---------------------------------------------

NOISE = (
    "💡 Tip", "litlogger",
    "The anonymous setting has no effect",
    "git root",
    "isinstance(treespec, LeafSpec)",
    "dirpath has changed",
    "exists and is not empty",
    "has `__len__` defined",
)

_DRIVER = r"""
import json, sys, warnings
import wandb
from litesam_pl import cli
for argv in json.loads(sys.stdin.read()):
    print("== litesam " + argv[0], file=sys.stderr, flush=True)
    cli.main(argv)
    wandb.finish()  # as if each command were its own process
warnings.warn("litesam-test: an unrelated UserWarning", UserWarning)
"""


def _args(sub, run, shards, ckpt_dir, extra=()):
    loggers = [{"class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(run), "name": "csv"}},
               {"class_path": "lightning.pytorch.loggers.WandbLogger",
                "init_args": {"save_dir": f"{run}_wandb", "project": "litesam-test", "name": sub}}]  # not there yet
    return [
        sub, "--config", "recipes/litesam.yaml", "--config", "recipes/smoke/litesam.yaml",
        "--trainer.default_root_dir", str(run),
        "--trainer.logger", json.dumps(loggers),
        "--trainer.callbacks", json.dumps([
            {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
             "init_args": {"dirpath": str(ckpt_dir), "save_last": True}},
            {"class_path": "litesam_pl.modules.callbacks.MetricsJSON"}]),
        "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
        "--model.init_args.init_from", "null",
        "--data.train_shards", str(shards), "--data.val_shards", str(shards), "--data.img_size", "64",
        "--data.batch_size", "2", "--data.val_batch_size", "2", "--data.num_workers", "0", "--data.max_masks", "2",
        "--data.val_max_masks", "2", "--data.epoch_samples", "2",
        *extra,
    ]


def test_lightning_commands_are_quiet(tmp_path, synthetic_sa1b):
    """One process runs ``litesam fit`` (1 step, CSV + offline W&B loggers, into a run dir that already holds logs),
    ``validate --ckpt_path`` (with a ModelCheckpoint dirpath other than the checkpoint's) and ``validate`` without
    a checkpoint; none of the noise shows, the unrelated warnings (Lightning's and ours) do."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("a run dir with something in it")  # ModelCheckpoint's "not empty" case
    commands = [
        _args("fit", run, synthetic_sa1b, run, ["--trainer.max_steps", "1"]),
        _args("validate", tmp_path / "eval", synthetic_sa1b, tmp_path / "elsewhere",
              ["--ckpt_path", str(run / "last.ckpt")]),
        _args("validate", tmp_path / "eval", synthetic_sa1b, tmp_path / "elsewhere"),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}  # no WANDB_SILENT from conftest
    env.update(WANDB_MODE="offline", WANDB_DIR=str(tmp_path / "wandb"), PYTHONPATH=str(REPO))
    p = subprocess.run([sys.executable, "-c", _DRIVER], input=json.dumps(commands), cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=900)
    text = p.stdout + p.stderr
    assert p.returncode == 0, text[-4000:]
    for noise in NOISE:
        assert noise not in text, f"{noise!r} still printed:\n{text}"
    # what must still show: an unrelated warning of ours, Lightning's own notices and info lines, wandb's status
    assert "litesam-test: an unrelated UserWarning" in text
    assert "smaller than the logging interval" in text  # a Lightning PossibleUserWarning about this run
    assert "GPU available" in text and "wandb" in text
    assert text.count("no --ckpt_path: validating random weights (pass --ckpt_path PATH)") == 1
    # point 8 through the CLI: validate wrote beside the checkpoint and left the run's metrics.json alone
    fit = json.loads((run / "metrics.json").read_text())
    beside = json.loads((run / "last.validate.json").read_text())
    assert fit["global_step"] == beside["global_step"] == 1
    assert beside["val/miou_1box"] == pytest.approx(fit["val/miou_1box"], abs=1e-6)
    assert json.loads((tmp_path / "eval" / "validate_random_weights.json").read_text())["weights"] == "random"
