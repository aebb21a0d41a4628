"""MaskAP / BoxRecall (litesam_pl.metrics.detection) against mask_ap_from_ious / proposal_recall (bit for bit), against
pycocotools on masks, and synced over 2 gloo ranks with uneven shares of the images (one rank with none), with
``metrics.miou.MIoU`` beside them (equal to one process up to the order of summation)."""
from __future__ import annotations

import datetime
import json
import math
import multiprocessing as mp
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch

from litesam_pl.metrics.coco import mask_ap, mask_ap_from_ious, proposal_recall
from litesam_pl.metrics.detection import BoxRecall, MaskAP, coco_box_iou
from litesam_pl.metrics.miou import MIoU, summarize_miou
from litesam_pl.metrics.recall import pred_gt_iou_matrix

AREAS = (10, 500, 1024, 5000, 9216, 20000)  # small, medium and large, with COCO's two bounds themselves


def ap_items(rng: np.random.Generator, n: int) -> list[dict]:
    """``mask_ap_from_ious`` items: IoUs on a coarse grid (ties, values on the thresholds), tied scores, images
    without GT, without detections, and more detections than max_dets."""
    items = []
    for _ in range(n):
        d = int(rng.integers(0, 130 if rng.random() < 0.15 else 9))
        g = int(rng.integers(0, 8))
        ious = rng.choice([0.0, 0.3, 0.5, 0.55, 0.6, 0.75, 0.8, 0.9, 0.95, 1.0], (d, g)) * (rng.random((d, g)) < 0.6)
        scores = rng.choice([0.1, 0.5, 0.9], d) if rng.random() < 0.5 else rng.random(d)
        items.append({"ious": ious.astype(np.float32), "scores": scores.astype(np.float32),
                      "gt_areas": rng.choice(AREAS, g), "dt_areas": rng.choice(AREAS, d)})
    return items


def box_items(rng: np.random.Generator, n: int) -> list[dict]:
    """Per image GT boxes ``[G, 4]`` and scored proposals ``[D, 4]``: integer corners (tied IoUs), empty boxes,
    small / medium / large GTs, tied scores."""

    def boxes(k: int) -> np.ndarray:
        xy = rng.integers(0, 60, (k, 2))
        wh = rng.choice([0, 3, 8, 20, 40, 110], (k, 2)) + rng.integers(0, 3, (k, 2))
        return np.concatenate([xy, xy + wh], 1).astype(np.float32)

    out = []
    for _ in range(n):
        gt = boxes(int(rng.integers(0, 7)))
        near = gt[rng.integers(0, len(gt), int(rng.integers(0, 12)))] + rng.integers(-3, 4, (1, 4)) if len(gt) else gt
        dt = np.concatenate([near, boxes(int(rng.integers(0, 8)))]).astype(np.float32)
        scores = rng.choice([0.2, 0.7], len(dt)) if rng.random() < 0.5 else rng.random(len(dt))
        out.append({"gt": gt, "boxes": dt, "scores": scores.astype(np.float32)})
    return out


def fill_map(metric: MaskAP, items: list[dict]) -> MaskAP:
    for it in items:
        metric.update(*(torch.from_numpy(np.asarray(it[k])) for k in ("ious", "scores", "gt_areas", "dt_areas")))
    return metric


def fill_recall(metric: BoxRecall, items: list[dict]) -> BoxRecall:
    for it in items:
        metric.update(torch.from_numpy(it["boxes"]), torch.from_numpy(it["gt"]), torch.from_numpy(it["scores"]))
    return metric


def ref_recall(items: list[dict], max_dets) -> dict:
    return proposal_recall([it["gt"] for it in items], [{"boxes": it["boxes"], "scores": it["scores"]} for it in items],
                           max_dets=max_dets)


def assert_same(got: dict, want: dict) -> None:
    """Every key of ``want`` in ``got`` with the very same float (NaN equal to NaN)."""
    for k, v in want.items():
        g = float(got[k])
        assert g == v or (math.isnan(g) and math.isnan(v)), (k, g, v)


# ------------------------------------------------------------------------------------------------ one process


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_dets", [(1, 10, 100), (2, 5)])
def test_mask_ap_equals_mask_ap_from_ious(seed, max_dets):
    items = ap_items(np.random.default_rng(seed), 7)
    want = mask_ap_from_ious(items, max_dets=max_dets)
    got = fill_map(MaskAP(max_dets=max_dets), items).compute()
    assert_same(got, want)
    if not math.isnan(want["ap"]):
        assert set(got) == set(want)


def test_mask_ap_tie_rules_and_empty():
    # detection 1 has the same IoU with both GTs: pycocotools gives it the last one, so detection 2 matches GT 0 at
    # 0.5..0.65 (an argmax taking the first GT would leave detection 2 unmatched)
    items = [{"ious": np.array([[0.7, 0.7], [0.68, 0.0]]), "scores": np.array([0.9, 0.8]),
              "gt_areas": np.array([2000, 2000]), "dt_areas": np.array([2000, 2000])}]
    got = fill_map(MaskAP(), items).compute()
    assert_same(got, mask_ap_from_ious(items))
    assert float(got["ap50"]) == 1.0
    # no GT anywhere: NaN everywhere, as mask_ap_from_ious
    no_gt = [{"ious": np.zeros((3, 0)), "scores": np.ones(3), "gt_areas": np.zeros(0), "dt_areas": np.ones(3)}]
    assert all(math.isnan(float(v)) for v in fill_map(MaskAP(), no_gt).compute().values())
    assert math.isnan(mask_ap_from_ious(no_gt)["ap"])
    assert all(math.isnan(float(v)) for v in MaskAP().compute().values())


def test_mask_ap_equals_pycocotools_on_masks():
    """The IoUs of the masks themselves (as validation computes them) give pycocotools' AP on the masks."""
    rng = np.random.default_rng(3)
    gts, preds, metric = [], [], MaskAP()
    for img in range(6):
        k = int(rng.integers(1, 6))
        g = np.zeros((k, 120, 160), bool)
        p = np.zeros_like(g)
        for j in range(k):
            s = int(rng.choice([6, 20, 70]))
            y, x = int(rng.integers(0, 120 - s)), int(rng.integers(0, 160 - s))
            g[j, y:y + s, x:x + s] = True
            dy, dx = (int(v) for v in rng.integers(-s // 3, s // 3 + 1, 2))
            p[j, max(0, y + dy):y + dy + s, max(0, x + dx):x + dx + s] = True
        scores = rng.random(k).astype(np.float32)
        gts.append({"masks": g, "image_id": img})
        preds.append({"masks": p, "scores": scores, "image_id": img})
        pt, gtt = torch.from_numpy(p), torch.from_numpy(g)
        metric.update(pred_gt_iou_matrix(pt, gtt), torch.from_numpy(scores), gtt.flatten(1).sum(1),
                      pt.flatten(1).sum(1))
    want = mask_ap(gts, preds, iou_type="segm")
    got = metric.compute()
    assert set(got) == set(want)
    for k, v in want.items():  # float32 IoUs here, pycocotools' float64 ones there
        assert float(got[k]) == pytest.approx(v, abs=1e-9, nan_ok=True), k
    assert 0 < float(got["ap"]) < 1


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_dets", [(100, 1000), (1, 3)])
def test_box_recall_equals_proposal_recall(seed, max_dets):
    items = box_items(np.random.default_rng(10 + seed), 6)
    got = fill_recall(BoxRecall(max_dets=max_dets), items).compute()
    want = ref_recall(items, max_dets)
    assert set(got) == set(want)
    assert_same(got, want)


def test_box_recall_by_hand_and_iou():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=np.float32)
    props = np.array([[0, 0, 10, 10], [20, 20, 30, 27.3]], dtype=np.float32)  # IoU 1 and 0.73
    np.testing.assert_allclose(coco_box_iou(props, gt), [[1.0, 0.0], [0.0, 0.73]], rtol=1e-6)
    m = BoxRecall(max_dets=(1, 1000))
    m.update(torch.from_numpy(props), torch.from_numpy(gt))  # no scores: ranked as given
    res = m.compute()
    assert float(res["ar@1000"]) == pytest.approx((10 + 5) / 20) and float(res["ar@1"]) == pytest.approx(0.5)
    m.update(torch.zeros(0, 4), torch.from_numpy(gt))  # no proposal: two more GTs missed
    assert float(m.compute()["ar@1000"]) == pytest.approx((10 + 5) / 40)
    assert math.isnan(float(BoxRecall().compute()["ar@100"]))


# ------------------------------------------------------------------------------------------- two gloo ranks

SPLITS = [(4, 0), (0, 3), (1, 6), (5, 2), (0, 0)]  # images of rank 0, rank 1


def _split_items(split: tuple, seed: int) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    n = sum(split)
    return ap_items(rng, n), box_items(rng, n)


def _miou_items(split: tuple, seed: int) -> np.ndarray:
    """Per image: (IoUs, areas) of 0-4 instances, as an object array so a rank's share is a slice."""
    rng = np.random.default_rng(100 + seed)
    items = np.empty(sum(split), dtype=object)
    for i in range(len(items)):
        k = int(rng.integers(0, 5))
        items[i] = (rng.random(k), rng.choice([100.0, 1024.0, 5000.0, 20000.0], k))
    return items


def _rank_main(rank: int, init_file: str, out_dir: str) -> None:
    """One rank: for each split, its share of the images into the metrics, then the synced compute (every rank runs
    every compute, as validation does)."""
    import torch.distributed as dist

    try:
        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                                timeout=datetime.timedelta(seconds=60))
        rows = []
        mask_ap_metric, recall, miou = MaskAP(), BoxRecall(max_dets=(3, 100)), MIoU()
        for s, split in enumerate(SPLITS):
            maps, boxes = _split_items(split, s)
            own = slice(0, split[0]) if rank == 0 else slice(split[0], sum(split))
            fill_map(mask_ap_metric, maps[own])
            fill_recall(recall, boxes[own])
            for ious, areas in _miou_items(split, s)[own]:
                miou.update(ious, areas)
            local = [[t.clone() for t in getattr(mask_ap_metric, k)] for k in ("scores", "ranks", "outcome")]
            rows.append({"map": {k: float(v) for k, v in mask_ap_metric.compute().items()},
                         "recall": {k: float(v) for k, v in recall.compute().items()},
                         "miou": {k: float(v) for k, v in miou.compute().items()},
                         "local_restored": all(
                             len(getattr(mask_ap_metric, k)) == len(ts)
                             and all(torch.equal(a, b) for a, b in zip(getattr(mask_ap_metric, k), ts))
                             for k, ts in zip(("scores", "ranks", "outcome"), local))})
            mask_ap_metric.reset()
            recall.reset()
            miou.reset()
        dist.destroy_process_group()
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(rows))
    except BaseException:
        Path(out_dir, f"rank{rank}.err").write_text(traceback.format_exc())
        raise


def test_two_gloo_ranks_equal_one_process(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_rank_main, args=(r, str(tmp_path / "store"), str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 240
    try:
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
    finally:
        hung = [p for p in procs if p.is_alive()]
        for p in hung:
            p.kill()
            p.join()
    errors = "".join(f.read_text() for f in sorted(tmp_path.glob("rank*.err")))
    assert not hung, f"ranks still running after 240 s: killed\n{errors}"
    assert all(p.exitcode == 0 for p in procs), errors
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for s, split in enumerate(SPLITS):
        maps, boxes = _split_items(split, s)  # rank 0's images, then rank 1's: the order of the gathered states
        want_map = mask_ap_from_ious(maps) if maps else {"ap": math.nan, "ap50": math.nan}
        want_recall = ref_recall(boxes, (3, 100)) if boxes else {"ar@3": math.nan, "ar@100": math.nan}
        items = _miou_items(split, s)
        want_miou = summarize_miou(np.concatenate([i for i, _ in items] or [np.zeros(0)]),
                                   np.concatenate([a for _, a in items] or [np.zeros(0)]))
        for rows in ranks:
            for k, v in want_miou.items():
                assert rows[s]["miou"][k] == pytest.approx(v, rel=1e-12, nan_ok=True), (k, s)
            assert_same(rows[s]["map"], want_map)
            assert_same(rows[s]["recall"], want_recall)
            assert rows[s]["local_restored"]
        assert json.dumps(ranks[0][s]) == json.dumps(ranks[1][s])
