"""Lightning DDP on CPU with 2 processes (``litesam fit --config recipes/litesam.yaml --config
recipes/smoke/litesam.yaml --trainer.strategy ddp --trainer.devices 2``).

Checks, from inside the run (``DDPProbe``, a callback loaded by class path in the child processes):
- gradients are synced: after training, every parameter is identical on both ranks;
- logged metrics are synced: the epoch-level loss and the validation metrics are identical on both ranks, and the
  synced training loss equals the mean of the ranks' own losses (all-gathered);
- no training sample is seen twice in an epoch: the sample keys of both ranks are disjoint and cover the epoch.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

try:  # the probe runs inside the litesam processes; pytest is not needed there
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover
    pl = None


class DDPProbe(pl.Callback if pl is not None else object):
    """Collects per-rank facts and writes ``<out>/rank<r>.json`` at the end of fit."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.keys: dict = {}
        self.losses: list = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.keys.setdefault(trainer.current_epoch, []).extend(list(batch["key"]))
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss.detach()))

    def on_fit_end(self, trainer, pl_module) -> None:
        import torch.distributed as dist

        rank = trainer.global_rank
        # all-gather each rank's own step losses and compare their mean with the synced, logged epoch loss
        own = torch.tensor(self.losses, dtype=torch.float64)
        gathered = pl_module.all_gather(own)  # [world, steps]
        flat = torch.cat([p.detach().flatten().double().cpu() for p in pl_module.parameters()])
        params = pl_module.all_gather(flat)
        keys = [None] * trainer.world_size
        dist.all_gather_object(keys, {str(e): k for e, k in self.keys.items()})
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{rank}.json").write_text(json.dumps({
            "rank": rank,
            "world_size": trainer.world_size,
            "metrics": metrics,
            "gathered_losses": gathered.tolist(),
            "params_max_abs_diff": float((params[0] - params[1]).abs().max()),
            "keys": keys,
            "global_step": trainer.global_step,
        }))


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path, synthetic_sa1b):
    out = tmp_path / "probe"
    run = tmp_path / "run"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests"), str(REPO), env.get("PYTHONPATH", "")])
    env["WANDB_MODE"] = "offline"
    env["OMP_NUM_THREADS"] = "1"
    # 12 synthetic images; 4 per epoch on 2 ranks x batch 1 -> 2 steps per epoch and rank
    from test_recipes import stack  # here, not at module level: the litesam processes import this module

    configs = [a for r in stack("recipes/smoke/litesam.yaml") for a in ("--config", r)]  # the overlay on its base
    cmd = [
        sys.executable, "-m", "litesam_pl.cli", "fit", *configs,
        "--trainer.strategy", "ddp_find_unused_parameters_true", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
        "--trainer.max_epochs", "2", "--trainer.logger", "false", "--trainer.default_root_dir", str(run),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_checkpointing", "false",
        "--trainer.callbacks", json.dumps([
            {"class_path": "test_ddp.DDPProbe", "init_args": {"out": str(out)}},
            {"class_path": "litesam_pl.modules.callbacks.MetricsJSON"},
        ]),
        "--trainer.check_val_every_n_epoch", "1",
        "--model.init_args.model_kwargs", json.dumps({"img_size": 64}), "--model.init_args.init_from", "null",
        "--model.init_args.compute_map", "false",
        "--data.train_shards", str(synthetic_sa1b), "--data.val_shards", str(synthetic_sa1b),
        "--data.img_size", "64", "--data.batch_size", "1", "--data.num_workers", "0", "--data.max_masks", "2",
        "--data.epoch_samples", "4", "--data.shuffle_buffer", "1",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    r0 = json.loads((out / "rank0.json").read_text())
    r1 = json.loads((out / "rank1.json").read_text())
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["global_step"] == r1["global_step"] == 4
    # gradients synced: identical weights on both ranks
    assert r0["params_max_abs_diff"] == 0.0 and r1["params_max_abs_diff"] == 0.0
    # metrics synced: both ranks hold the same values (rank-local values would differ: different samples)
    for k in ("train/loss_epoch", "val/miou_1box", "val/miou_1point", "val/ar100", "val/point_hit_rate",
              "val/point_precision", "val/box_ar100"):
        assert k in r0["metrics"], k
        assert r0["metrics"][k] == pytest.approx(r1["metrics"][k], abs=1e-6), k
    losses = torch.tensor(r0["gathered_losses"])  # [2 ranks, 4 steps]
    assert losses.shape == (2, 4)
    assert not torch.allclose(losses[0], losses[1]), "ranks saw the same batches"
    # synced epoch loss of the last epoch = mean over ranks of each rank's mean over its steps
    assert r0["metrics"]["train/loss_epoch"] == pytest.approx(float(losses[:, 2:].mean()), rel=1e-4)
    # no sample seen twice within an epoch, across ranks
    for epoch in ("0", "1"):
        k0, k1 = r0["keys"][0][epoch], r0["keys"][1][epoch]
        assert len(k0) == len(k1) == 2
        assert len(set(k0) | set(k1)) == 4, (k0, k1)
    assert json.loads((run / "metrics.json").read_text())["val/miou_1box"] == pytest.approx(r0["metrics"]["val/miou_1box"])
