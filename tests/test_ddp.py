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

from tests.helpers import REPO, stack

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
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])  # the probes: tests.test_ddp
    env["WANDB_MODE"] = "offline"
    env["OMP_NUM_THREADS"] = "1"
    # 12 synthetic images; 4 per epoch on 2 ranks x batch 1 -> 2 steps per epoch and rank
    configs = [a for r in stack("recipes/smoke/litesam.yaml") for a in ("--config", r)]  # the overlay on its base
    cmd = [
        sys.executable, "-m", "litesam_pl.cli", "fit", *configs,
        "--trainer.strategy", "ddp_find_unused_parameters_true", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
        "--trainer.max_epochs", "2", "--trainer.logger", "false", "--trainer.default_root_dir", str(run),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_checkpointing", "false",
        "--trainer.callbacks", json.dumps([
            {"class_path": "tests.test_ddp.DDPProbe", "init_args": {"out": str(out)}},
            {"class_path": "litesam_pl.modules.callbacks.MetricsJSON"},
        ]),
        "--trainer.check_val_every_n_epoch", "1",
        "--model.init_args.init_from", "null",
        "--model.init_args.validation.compute_map", "false",
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


# ---------------------------------------------------------------------------------------------------------------------
# Issue 16 ("the first multi-GPU run works"): each rank launched on its own, as srun / torchrun do (LOCAL_RANK in the
# environment: Lightning starts no process), so a hang or a one-rank failure shows as it would on a cluster.
_COLLECTIVES = ("all_reduce", "barrier", "broadcast", "all_gather", "all_gather_object", "all_gather_into_tensor",
                "reduce", "broadcast_object_list")


class Issue16Probe(pl.Callback if pl is not None else object):
    """Per-rank facts for the issue-16 tests, written to ``<out>/rank<r>.json`` after every event of interest.

    - Python-level collectives (``torch.distributed.<op>``) counted per training-loop iteration (from one
      ``on_train_batch_start`` to the next), so the logging and the NaN guard show; DDP's gradient all-reduce and
      buffer broadcast run in C++ and are not counted;
    - validation: the keys of each rank's batches, its local (unsynced) validation-loss sums, and the synced
      ``val/*`` metrics at the end of each validation (the sanity check included);
    - ``nan_rank``/``nan_step``: that rank's ``nan_term`` (and so the total loss) turns NaN at that step;
    - the error a rank stops with.
    """

    def __init__(self, out: str, nan_rank: int = -1, nan_step: int = -1, nan_term: str = "ppn_box") -> None:
        self.out = Path(out)
        self.nan_rank, self.nan_step, self.nan_term = nan_rank, nan_step, nan_term
        self.counts: dict = {}
        self.facts: dict = {"steps": [], "val": [], "error": None}

    def _dump(self, trainer) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.facts))

    def setup(self, trainer, pl_module, stage) -> None:
        import torch.distributed as dist

        self.facts["rank"] = trainer.global_rank
        self.facts["find_unused_parameters"] = getattr(trainer.strategy, "_ddp_kwargs", {}).get(
            "find_unused_parameters", False)
        for name in _COLLECTIVES:
            fn = getattr(dist, name)

            def counted(*args, _fn=fn, _name=name, **kwargs):
                self.counts[_name] = self.counts.get(_name, 0) + 1
                return _fn(*args, **kwargs)

            setattr(dist, name, counted)
        if trainer.global_rank == self.nan_rank:
            compute = pl_module.compute_losses

            def broken(batch):
                terms = compute(batch)
                if pl_module.global_step == self.nan_step:
                    terms[self.nan_term] = terms[self.nan_term] * float("nan")
                    terms["loss"] = terms["loss"] + terms[self.nan_term]
                return terms

            pl_module.compute_losses = broken

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.facts["steps"].append(dict(self.counts))  # the previous iteration (the first: set-up, sanity check)
        self.counts.clear()

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.facts["val"].append({"sanity": bool(trainer.sanity_checking), "keys": [], "metrics": None})

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.facts["val"][-1]["keys"].append(list(batch["key"]))

    def on_validation_epoch_end(self, trainer, pl_module) -> None:  # runs before the module's hook: local states
        self.facts["val"][-1]["local"] = {
            name: [float(m.mean_value), float(m.weight)]
            for name, m in (("loss_ppn", pl_module.val_loss_ppn), ("loss_mask_box", pl_module.val_loss_mask_box))
        }

    def on_validation_end(self, trainer, pl_module) -> None:
        self.facts["val"][-1]["metrics"] = {k: float(v) for k, v in trainer.callback_metrics.items()
                                            if k.startswith("val/")}
        self._dump(trainer)

    def on_exception(self, trainer, pl_module, exception) -> None:
        self.facts["error"] = f"{type(exception).__name__}: {exception}"
        self._dump(trainer)

    def on_fit_end(self, trainer, pl_module) -> None:
        self.facts["metrics"] = {k: float(v) for k, v in trainer.callback_metrics.items()}
        self._dump(trainer)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_ranks(args, tmp_path, timeout: float):
    """``litesam fit <args>`` as 2 CPU ranks started by us (one process each, LOCAL_RANK set, as srun/torchrun do).
    Returns ``[(returncode, output), ...]`` per rank; on timeout kills both process groups and fails."""
    import signal
    import time

    env = dict(os.environ)
    env.update(PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
               WANDB_MODE="offline", OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()),
               NODE_RANK="0")
    cmd = [sys.executable, "-m", "litesam_pl.cli", "fit", *args, "--trainer.accelerator", "cpu",
           "--trainer.devices", "2", "--trainer.num_nodes", "1"]
    procs, logs = [], []
    for rank in (0, 1):
        log = open(tmp_path / f"rank{rank}.log", "w+")
        procs.append(subprocess.Popen(cmd, cwd=REPO, env={**env, "LOCAL_RANK": str(rank)}, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True))
        logs.append(log)
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        for p in procs:
            p.wait()
        tails = [(log.seek(0), log.read()[-3000:])[1] for log in logs]
        pytest.fail(f"2-rank run still running after {timeout:.0f} s (a hang): killed.\n" + "\n---\n".join(tails))
    out = []
    for p, log in zip(procs, logs):
        log.seek(0)
        out.append((p.returncode, log.read()))
        log.close()
    return out


def _recipe_strategy(recipe: str) -> str:
    import yaml

    return yaml.safe_load((REPO / recipe).read_text())["trainer"]["strategy"]


def _common_args(run: Path, probe: dict) -> list:
    return [
        "--trainer.logger", "false", "--trainer.default_root_dir", str(run), "--trainer.enable_progress_bar", "false",
        "--trainer.enable_checkpointing", "false", "--trainer.max_epochs", "1",
        "--trainer.callbacks", json.dumps([
            {"class_path": "tests.test_ddp.Issue16Probe", "init_args": probe},
            {"class_path": "litesam_pl.modules.callbacks.NaNGuard"},
        ]),
        "--model.init_args.init_from", "null",
        "--model.init_args.validation.top_n", "20",
        "--data.img_size", "64", "--data.batch_size", "1", "--data.val_batch_size", "1", "--data.num_workers", "0",
        "--data.max_masks", "2", "--data.shuffle_buffer", "1",
    ]


@pytest.mark.slow
@pytest.mark.timeout(360)
def test_ddp_one_val_shard_uneven_ranks_and_few_collectives(tmp_path, synthetic_sa1b):
    """Findings 1, 3 and 11 of issue 16 on the joint stage with the recipe's strategy (plain DDP):

    - one validation shard of 3 samples for 2 ranks (rank 0 validates 2 batches, rank 1 one; before the fix rank 1
      got no shard and the job hung in validation): validation after the epoch finishes with identical synced
      metrics on both ranks, and the validation losses are the batch-weighted means over all
      ranks' samples (not the mean of the ranks' means);
    - per training step at most 2 Python-level all-reduces (the NaN guard's one) and no barrier (before: a barrier and
      an all-reduce for each of 19 loss terms);
    - plain DDP (no find_unused_parameters) trains the joint stage without the unused-parameter error (3 steps).
    """
    from data_prep.synthetic import write_synthetic_sa1b

    val = tmp_path / "val"
    write_synthetic_sa1b(val, num_images=3, seed=5, images_per_tar=3, size=(96, 128))
    assert len(list(val.glob("*.tar"))) == 1
    strategy = _recipe_strategy("recipes/litesam.yaml")
    assert strategy == "ddp"
    out = tmp_path / "probe"
    args = [a for r in stack("recipes/smoke/litesam.yaml") for a in ("--config", r)] + _common_args(
        tmp_path / "run", {"out": str(out)}) + [
        "--trainer.strategy", strategy, "--trainer.num_sanity_val_steps", "0",
        "--model.init_args.validation.compute_map", "false",
        "--data.train_shards", str(synthetic_sa1b), "--data.val_shards", str(val), "--data.epoch_samples", "6",
    ]
    res = _run_two_ranks(args, tmp_path, timeout=300)
    for rc, log in res:
        assert rc == 0, log[-5000:]
    r = [json.loads((out / f"rank{i}.json").read_text()) for i in (0, 1)]
    assert r[0]["find_unused_parameters"] is False
    assert [len(x["steps"]) for x in r] == [3, 3]  # 3 training steps on each rank
    for x in r:
        for counts in x["steps"][1:]:  # whole iterations: step 0 -> 1, 1 -> 2
            assert counts.get("all_reduce", 0) <= 2 and counts.get("barrier", 0) == 0, counts
    assert [v["sanity"] for v in r[0]["val"]] == [False] == [v["sanity"] for v in r[1]["val"]]
    for v0, v1 in zip(r[0]["val"], r[1]["val"]):  # the validation after the epoch (the sanity check: the next test)
        assert (len(v0["keys"]), len(v1["keys"])) == (2, 1)  # uneven: rank 1 has one batch fewer
        keys0, keys1 = sum(v0["keys"], []), sum(v1["keys"], [])
        assert not set(keys0) & set(keys1) and len(set(keys0) | set(keys1)) == 3
        m0, m1 = v0["metrics"], v1["metrics"]
        for k in ("val/loss_ppn", "val/loss_mask_box", "val/miou_1box", "val/miou_1point", "val/ar100",
                  "val/box_ar100", "val/point_precision", "val/point_hit_rate"):
            assert k in m0 and m0[k] == pytest.approx(m1[k], abs=1e-6, nan_ok=True), k
        for name in ("loss_ppn", "loss_mask_box"):  # synced = sum over ranks of loss * samples / samples
            (s0, n0), (s1, n1) = v0["local"][name], v1["local"][name]
            assert (n0, n1) == (2, 1)
            assert m0[f"val/{name}"] == pytest.approx((s0 + s1) / (n0 + n1), rel=1e-5)
            assert m0[f"val/{name}"] != pytest.approx((s0 / n0 + s1 / n1) / 2, rel=1e-6)
    # the per-step values are rank-local, the epoch value is the mean over both ranks
    assert "train/loss_epoch" in r[0]["metrics"] and "train/loss_step" in r[0]["metrics"]
    assert r[0]["metrics"]["train/loss_step"] != r[1]["metrics"]["train/loss_step"]  # not synced: each rank's own
    assert r[0]["metrics"]["train/loss_epoch"] == pytest.approx(r[1]["metrics"]["train/loss_epoch"], rel=1e-6)


@pytest.mark.slow
@pytest.mark.timeout(360)
def test_ddp_nan_on_one_rank_stops_every_rank(tmp_path, synthetic_sa1b):
    """Findings 4, 1 and 11 of issue 16 on the AutoPPN stage with the recipe's strategy (plain DDP):

    - the sanity check validates a 1-sample shard: rank 1 has no batch at all, and validation still finishes with
      the same synced metrics on both ranks (before: DDP's buffer broadcast in rank 0's validation_step waited
      for rank 1 for good);
    - steps 0 and 1 train under plain DDP without the unused-parameter error;
    - at step 2 a loss term turns NaN on rank 1 only: both ranks stop at once with an error naming the step, the
      term and the rank (before: rank 1 raised alone and rank 0 waited in the gradient all-reduce for 30 minutes).
    """
    from data_prep.synthetic import write_synthetic_sa1b

    val = tmp_path / "val"
    write_synthetic_sa1b(val, num_images=1, seed=6, images_per_tar=1, size=(96, 128))
    strategy = _recipe_strategy("recipes/autoppn.yaml")
    assert strategy == "ddp"
    out = tmp_path / "probe"
    args = [a for r in stack("recipes/smoke/autoppn.yaml") for a in ("--config", r)] + _common_args(
        tmp_path / "run", {"out": str(out), "nan_rank": 1, "nan_step": 2, "nan_term": "ppn_box"}) + [
        "--trainer.strategy", strategy, "--trainer.num_sanity_val_steps", "2",
        "--data.train_shards", str(synthetic_sa1b), "--data.val_shards", str(val), "--data.epoch_samples", "12",
    ]
    res = _run_two_ranks(args, tmp_path, timeout=300)
    expected = "loss 'ppn_box' is nan at global step 2 on rank 1"
    r = [json.loads((out / f"rank{i}.json").read_text()) for i in (0, 1)]
    for i, ((rc, log), x) in enumerate(zip(res, r)):
        assert rc != 0, log[-3000:]
        assert x["error"] and x["error"].startswith("NonFiniteLossError: " + expected), (x["error"], log[-3000:])
        assert f"this is rank {i} of 2" in x["error"]
        assert expected in log
        assert len(x["steps"]) == 3  # steps 0, 1 trained; step 2 stopped before its backward
    sanity0, sanity1 = r[0]["val"][0], r[1]["val"][0]
    assert sanity0["sanity"] and sanity1["sanity"]
    assert (len(sanity0["keys"]), len(sanity1["keys"])) == (1, 0)  # rank 1: no validation batch
    m0, m1 = sanity0["metrics"], sanity1["metrics"]
    for k in ("val/loss_ppn", "val/ar100", "val/box_ar100", "val/point_precision", "val/point_hit_rate"):
        assert k in m0 and m0[k] == pytest.approx(m1[k], abs=1e-6, nan_ok=True), k
    s0, n0 = sanity0["local"]["loss_ppn"]
    assert n0 == 1 and m0["val/loss_ppn"] == pytest.approx(s0, rel=1e-5)
