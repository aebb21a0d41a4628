"""MaskRecall / PointPrecision (litesam_pl.metrics.recall) against pycocotools' class-agnostic recall."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from litesam_pl.metrics.coco import proposal_recall
from litesam_pl.metrics.recall import MaskRecall, PointPrecision, matched_counts, pred_gt_iou_matrix


def _rect(hw, y0, x0, y1, x1):
    m = np.zeros(hw, bool)
    m[y0:y1, x0:x1] = True
    return m


def _random_image(rng, hw=(40, 48), n_gt=5, n_pred=12):
    gts = []
    for _ in range(n_gt):
        y0, x0 = rng.integers(0, 30), rng.integers(0, 36)
        gts.append(_rect(hw, y0, x0, y0 + rng.integers(3, 12), x0 + rng.integers(3, 12)))
    preds = []
    for _ in range(n_pred):  # jittered copies of GTs and random boxes
        if rng.random() < 0.6:
            ys, xs = np.nonzero(gts[rng.integers(n_gt)])
            y0, x0 = ys.min() + rng.integers(-2, 3), xs.min() + rng.integers(-2, 3)
            preds.append(_rect(hw, max(y0, 0), max(x0, 0), ys.max() + 1 + rng.integers(-2, 3), xs.max() + 1 + rng.integers(-2, 3)))
        else:
            y0, x0 = rng.integers(0, 30), rng.integers(0, 36)
            preds.append(_rect(hw, y0, x0, y0 + rng.integers(2, 10), x0 + rng.integers(2, 10)))
    return np.stack(gts), np.stack(preds), rng.random(n_pred)


@pytest.mark.parametrize("max_dets", [(3, 100), (5, 1000)])
def test_mask_recall_matches_pycocotools(max_dets):
    rng = np.random.default_rng(0)
    metric = MaskRecall(max_dets=max_dets)
    gts, props = [], []
    for _ in range(6):
        g, p, s = _random_image(rng)
        order = np.argsort(-s, kind="stable")
        gts.append(g)
        props.append({"masks": p, "scores": s})
        metric.update(pred_gt_iou_matrix(torch.from_numpy(p[order]), torch.from_numpy(g)))
    ref = proposal_recall(gts, props, max_dets=max_dets, iou_type="segm")
    got = metric.compute().tolist()
    assert got[0] == pytest.approx(ref[f"ar@{max_dets[0]}"], abs=1e-6)
    assert got[1] == pytest.approx(ref[f"ar@{max_dets[1]}"], abs=1e-6)
    assert 0 < got[0] < 1


def test_mask_recall_tie_rule_is_pycocotools():
    """A proposal with the same IoU to two GTs takes the LAST of them (pycocotools); the first-GT rule differs here:
    proposal 0 ties GT 0 and GT 1; proposal 1 overlaps only GT 1, so taking GT 0 first would leave GT 1 for it."""
    hw = (20, 40)
    gts = np.stack([_rect(hw, 0, 0, 10, 10), _rect(hw, 0, 20, 10, 30)])
    # proposal 0 covers both GTs' left halves equally; proposal 1 is GT 1 itself
    p0 = _rect(hw, 0, 0, 10, 5) | _rect(hw, 0, 20, 10, 25)
    props = np.stack([p0, gts[1]])
    ious = pred_gt_iou_matrix(torch.from_numpy(props), torch.from_numpy(gts))
    assert float(ious[0, 0]) == float(ious[0, 1])  # a real tie
    metric = MaskRecall(max_dets=(1, 100))
    metric.update(ious)
    ref = proposal_recall([gts], [{"masks": props, "scores": np.array([1.0, 0.5])}], max_dets=(1, 100), iou_type="segm")
    assert metric.compute().tolist() == pytest.approx([ref["ar@1"], ref["ar@100"]], abs=1e-9)


def test_mask_recall_edge_cases():
    gt = torch.from_numpy(np.stack([_rect((10, 10), 0, 0, 5, 5), _rect((10, 10), 5, 5, 10, 10)]))
    # fewer proposals than k: unmatched GTs stay unmatched
    counts = matched_counts(pred_gt_iou_matrix(gt[:1], gt), (100, 1000))
    assert counts.tolist() == [[1] * 10, [1] * 10]
    m = MaskRecall(max_dets=(100, 1000))
    m.update(pred_gt_iou_matrix(gt[:1], gt))
    assert m.compute().tolist() == [0.5, 0.5]
    m.update(pred_gt_iou_matrix(torch.zeros(0, 10, 10, dtype=torch.bool), gt))  # no proposals
    assert m.compute().tolist() == [0.25, 0.25]
    assert torch.isnan(MaskRecall().compute()).all()


def test_point_precision():
    p = PointPrecision()
    p.update(torch.tensor([True, False, True, True]), num_gt=2)  # top-2: 1 of 2
    p.update(torch.tensor([True]), num_gt=3)  # one point for 3 masks: 1 of 3
    p.update(torch.tensor([True]), num_gt=0)  # no GT: not counted
    assert p.compute().item() == pytest.approx((0.5 + 1 / 3) / 2)
