"""SegEvery's mask stage for one image (``litesam_pl.inference.segevery_masks.postprocess_image``) on hand-made
decoder outputs: the settings it reads from ``SegEveryOptions`` and the counts it returns with the masks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from litesam_pl.inference.segevery import gather_stats
from litesam_pl.inference.segevery_masks import Decoded, ImageMasks, postprocess_image
from litesam_pl.inference.segevery_options import SegEveryOptions


def test_mask_stage_returns_its_counts_with_the_masks():
    """``postprocess_image(decoded, prompts, options, ...)`` returns one image's masks with its counts
    (``ImageMasks``); counting changes no mask, and ``gather_stats`` puts the prompt and mask parts of each image into
    ``SegEveryResult.stats``' layout."""
    g = torch.Generator().manual_seed(0)
    low, iou = torch.randn(4, 3, 16, 16, generator=g) * 4, torch.rand(4, 3, generator=g)
    low[0, 0] = -1.0  # an empty mask
    prompts = {"points": torch.rand(4, 2, generator=g) * 64, "scores": None}
    options = SegEveryOptions(prompts="grid", pred_iou_thresh=0.0, stability_score_thresh=0.0, nms_resolution=256,
                              max_masks=3)
    frame = dict(input_size=(64, 64), output_size=(64, 64), size=64, mask_threshold=0.0)
    plain = postprocess_image(Decoded(low, iou, torch.arange(4), None), prompts, options, **frame)
    counted = postprocess_image(Decoded(low, iou, torch.arange(4), iou), prompts, options, **frame)
    assert isinstance(counted, ImageMasks) and plain.filters is None
    assert len(plain.masks) == len(counted.masks) == counted.filters["kept"] <= 3
    for a, b in zip(plain.masks, counted.masks):
        np.testing.assert_array_equal(a["segmentation"], b["segmentation"])
    f = counted.filters
    assert list(f) == ["masks_per_prompt", "candidates", "removed", "kept", "best_pred_iou", "best_stability"]
    assert f["candidates"] == 12 == f["kept"] + sum(f["removed"].values()) and f["removed"]["empty"] == 1
    assert counted.masks_before_nms == plain.masks_before_nms == 11
    assert f["best_pred_iou"] == pytest.approx(float(iou.max()))
    prompt_part = {"prompt_source": "grid", "prompts": 4}
    assert gather_stats([prompt_part], [counted]) == {"prompts": [4], "masks_before_nms": [11],
                                                     "filters": [{**prompt_part, **f}]}
    assert gather_stats([], []) == {"prompts": [], "masks_before_nms": [], "filters": []}


def test_mask_stage_reads_its_settings_from_the_options():
    """``postprocess_image`` takes the filters, NMS, ``max_masks`` and output form from its ``SegEveryOptions``."""
    g = torch.Generator().manual_seed(1)
    dec = Decoded(torch.randn(5, 3, 16, 16, generator=g) * 4, torch.rand(5, 3, generator=g), torch.arange(5), None)
    prompts = {"points": torch.rand(5, 2, generator=g) * 64, "scores": torch.rand(5, generator=g)}
    frame = dict(input_size=(64, 48), output_size=(32, 24), size=64, mask_threshold=0.0)
    base = SegEveryOptions(pred_iou_thresh=0.0, stability_score_thresh=0.0, nms="none", output_mode="tensors")
    every = postprocess_image(dec, prompts, base, **frame)
    assert every.masks_before_nms == len(every.masks["masks"]) > 4  # no filter, no NMS: every non-empty mask
    assert every.masks["masks"].shape[1:] == (32, 24) and "mask_logits" not in every.masks
    assert len(postprocess_image(dec, prompts, base.replace(max_masks=4), **frame).masks["masks"]) == 4
    thresh = float(dec.iou.median())
    some = postprocess_image(dec, prompts, base.replace(pred_iou_thresh=thresh), **frame).masks
    assert 0 < len(some["masks"]) < len(every.masks["masks"]) and (some["iou_preds"] > thresh).all()
    by_ppn = postprocess_image(dec, prompts, base.replace(rank_by="ppn_score"), **frame).masks
    assert torch.equal(by_ppn["scores"], by_ppn["ppn_scores"]) and (by_ppn["scores"].diff() <= 0).all()
    logits = postprocess_image(dec, prompts, base.replace(return_logits=True), **frame).masks
    assert torch.equal(logits["mask_logits"] > 0, logits["masks"])
    records = postprocess_image(dec, prompts, base.replace(output_mode="coco_rle"), **frame).masks
    assert len(records) == len(every.masks["masks"]) and records[0]["segmentation"]["size"] == [32, 24]
