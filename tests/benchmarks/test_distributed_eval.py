"""Distributed evaluation (issue 17): ``torchrun --nproc_per_node 2 -m benchmarks.coco`` / ``benchmarks.lvis`` on CPU
(gloo) give the JSON of a one-process run (per-instance order restored by rank 0), on a tiny synthetic COCO / LVIS
set; the merge helpers on their own; ``litesam predict`` (SegEvery over shards, Lightning DDP) on 2 CPU ranks writes
the files of one process.

Run as a script, this file is ``litesam`` with SegEvery's filters off (the tiny random model's masks survive), the
entry the 2-rank ``litesam predict`` re-executes on each rank."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks.tiny_sets import tiny_instances
from tests.helpers import REPO, predict_args

# fields that describe the run, not its results
RUN_FIELDS = {"seconds_total", "seconds_prompting", "seconds_segevery", "world_size", "save_results", "json"}


def _descendants(pid: int) -> list:
    """Every process below ``pid`` (/proc): torchrun starts its ranks in sessions of their own."""
    children: dict = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc``'s process group and the groups of all its descendants (the ranks), then reap it."""
    for pid in [proc.pid, *_descendants(proc.pid)]:
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    proc.wait()


def _run(cmd: list, tmp_path: Path, name: str, timeout: float = 240) -> str:
    """Run ``cmd`` in its own session; on a timeout (or an interrupt) kill it and every rank below it, and fail."""
    env = dict(os.environ)
    env.update(PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1",
               WANDB_MODE="offline")
    env.pop("WANDB_PROJECT", None)
    log_path = tmp_path / f"{name}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(proc)
            pytest.fail(f"{name} still running after {timeout:.0f} s: killed\n" + log_path.read_text()[-4000:])
        finally:
            if proc.poll() is None:  # an interrupt (KeyboardInterrupt) while waiting: leave no orphan
                _kill_tree(proc)
    out = log_path.read_text()
    assert proc.returncode == 0, out[-6000:]
    return out


def _bench(module: str, ann: Path, images: Path, out: Path, extra: list) -> list:
    return ["-m", f"benchmarks.{module}", "--ann", str(ann), "--images", str(images), "--img-size", "64",
            "--device", "cpu", "--json", str(out), "--no-progress", *extra]


def _compare(one: dict, two: dict) -> None:
    assert two["world_size"] == 2 and one["world_size"] == 1
    a = {k: v for k, v in one.items() if k not in RUN_FIELDS}
    b = {k: v for k, v in two.items() if k not in RUN_FIELDS}
    for base in (a, b):
        for row in (base.get("baselines") or {}).values():
            row.pop("seconds")
    assert a == b


@pytest.mark.parametrize("dataset", ["coco", "lvis"])
def test_torchrun_two_cpu_ranks_equal_one_process(dataset, tmp_path):
    lvis = dataset == "lvis"
    ann, images = tiny_instances(tmp_path / "data", lvis=lvis)
    # COCO: everything (AR with AutoPPN proposals, the baselines, saved results); LVIS: its AP, no AR / GrabCut
    extra = (["--skip-ar", "--baselines", "box_fill"] if lvis else
             ["--ppn-top-n", "16", "--baselines", "box_fill", "grabcut"])
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    printed1 = _run([sys.executable, *_bench(dataset, ann, images, one,
                                             [*extra, "--save-results", str(tmp_path / "res1.json")])],
                    tmp_path, "one")
    printed2 = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                     *_bench(dataset, ann, images, two, [*extra, "--save-results", str(tmp_path / "res2.json")])],
                    tmp_path, "two")
    r1, r2 = json.loads(one.read_text()), json.loads(two.read_text())
    assert r1["images"] == 5 and r1["instances"] == 13
    assert r1["skipped_crowd"] == (0 if lvis else 1)
    if not lvis:
        assert r1["proposals"] > 0 and r1["ar1000"] is not None
        assert set(r1["baselines"]) == {"box_fill", "grabcut"}
    _compare(r1, r2)
    # the saved detections in the same order, with the same masks and scores
    assert json.loads((tmp_path / "res1.json").read_text()) == json.loads((tmp_path / "res2.json").read_text())
    # rank 0 alone prints the table
    assert printed2.count("Lite-SAM (paper, r640)") == printed1.count("Lite-SAM (paper, r640)") == 1


def test_interleave_restores_single_process_order():
    from benchmarks._eval_common import interleave, shard_ids

    ids = list(range(7))
    counts = {i: i % 3 for i in ids}  # entries per image: 0, 1, 2, 0, ...
    flat = [(i, j) for i in ids for j in range(counts[i])]
    for world in (1, 2, 3, 8):
        shares = [shard_ids(ids, r, world) for r in range(world)]
        assert sorted(sum(shares, [])) == ids
        per_rank = [[(i, j) for i in s for j in range(counts[i])] for s in shares]
        assert interleave(per_rank, [[counts[i] for i in s] for s in shares]) == flat
    with pytest.raises(RuntimeError, match="rank 0"):
        interleave([[1, 2]], [[1]])


# --- litesam predict (SegEveryWriter) on 2 ranks ---------------------------------------------------------------------
def _loose_segevery() -> None:
    """SegEvery with the filters off (as ``loose_filters`` in tests/modules/test_test_predict.py), in this process."""
    import litesam_pl.modules.base as base

    real = base.SegEvery
    base.SegEvery = lambda model, options=None, **kw: real(
        model, options, **{**kw, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "top_n": 8})


def test_litesam_predict_two_cpu_ranks_equal_one(synthetic_sa1b, predict_ckpt, tmp_path, monkeypatch):
    """``litesam predict --trainer.devices 2 --trainer.strategy ddp`` on CPU: every image once, on one rank or the
    other, each ``<key>_masks.json`` byte-identical to a one-process run's, and ``results.json`` / ``images.json``
    the same entries (merged in rank order: compared by image id)."""
    import litesam_pl.modules.base as base
    from litesam_pl import cli

    ckpt = predict_ckpt
    args = predict_args(str(synthetic_sa1b), ckpt, tmp_path / "root") + ["--overlays", "false"]
    out1, out2 = tmp_path / "one", tmp_path / "two"
    monkeypatch.setattr(base, "SegEvery", base.SegEvery)  # restored after the test
    _loose_segevery()
    cli.main([*args, "--out", str(out1)])
    printed = _run([sys.executable, str(Path(__file__).resolve()), *args, "--trainer.devices", "2",
                    "--trainer.strategy", "ddp", "--out", str(out2)], tmp_path, "predict2", timeout=400)
    assert "MEMBER: 2/2" in printed and "(12 images," in printed
    names = sorted(p.name for p in out1.iterdir())
    assert names == sorted(p.name for p in out2.iterdir())
    masks = [n for n in names if n.endswith("_masks.json")]
    assert len(masks) == 12
    for n in masks:
        assert (out1 / n).read_text() == (out2 / n).read_text(), n
    res1, res2 = (json.loads((o / "results.json").read_text()) for o in (out1, out2))
    assert res1 and sorted(res1, key=lambda r: r["image_id"]) == sorted(res2, key=lambda r: r["image_id"])
    im1, im2 = (json.loads((o / "images.json").read_text())["images"] for o in (out1, out2))
    assert sorted(im1, key=lambda r: r["id"]) == sorted(im2, key=lambda r: r["id"])
    assert [im["key"] for im in im1] != [im["key"] for im in im2]  # rank 1 ran some: its part comes after rank 0's


if __name__ == "__main__":  # the 2-rank litesam predict above: each rank runs this
    _loose_segevery()
    from litesam_pl import cli

    cli.main(sys.argv[1:])
