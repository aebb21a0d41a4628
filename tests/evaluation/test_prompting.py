"""litesam_pl.evaluation.prompting: the farthest interior point (first argmax, image border as boundary, against brute
force), COCO boxes, and ``PromptPredictor`` against SAM's own ``SamPredictor`` (per mask selection rule, chunked)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from litesam_pl.evaluation.prompting import (
    PromptPredictor,
    boxes_from_annotations,
    interior_point_prompt,
    interior_point_prompts,
)
from tests.helpers import tiny_sam


# ---------------------------------------------------------------------------------- farthest interior point


def test_farthest_point_first_argmax_on_a_rectangle():
    m = np.zeros((9, 9), dtype=bool)
    m[2:7, 1:8] = True  # 5 x 7: distance 3 at row 4, columns 3, 4, 5 (a tie)
    np.testing.assert_array_equal(interior_point_prompt(m), [3, 4])  # (x, y): the first in row-major order


def test_farthest_point_counts_the_image_border_as_boundary():
    m = np.ones((5, 5), dtype=bool)  # no background pixel at all: only the 1-px padding gives a boundary
    np.testing.assert_array_equal(interior_point_prompt(m), [2, 2])
    m = np.zeros((6, 10), dtype=bool)
    m[:, :4] = True  # touches top, bottom, left border; distance 2 (the width limits it) first at row 1, col 1
    x, y = interior_point_prompt(m)
    assert (x, y) == (1, 1)


def _brute_force_point(m: np.ndarray) -> tuple[int, int]:
    p = np.pad(m, 1)
    bg = np.argwhere(~p)
    best, arg = -1.0, None
    for y, x in np.argwhere(p):  # row-major order
        d = np.sqrt(((bg - [y, x]) ** 2).sum(1)).min()
        if d > best + 1e-6:
            best, arg = d, (x - 1, y - 1)
    return arg


def test_farthest_point_matches_brute_force_on_irregular_masks():
    rng = np.random.default_rng(0)
    masks = []
    for _ in range(4):
        m = np.zeros((14, 17), dtype=bool)
        for _ in range(3):
            y, x = rng.integers(0, 12, 2)
            h, w = rng.integers(2, 8, 2)
            m[y : y + h, x : x + w] = True
        masks.append(m)
    pts = interior_point_prompts(np.stack(masks))
    for m, pt in zip(masks, pts):
        assert tuple(int(v) for v in pt) == _brute_force_point(m)
        assert m[int(pt[1]), int(pt[0])]
    with pytest.raises(ValueError, match="empty"):
        interior_point_prompt(np.zeros((4, 4)))


def test_boxes_from_annotations_xywh_to_xyxy():
    b = boxes_from_annotations([{"bbox": [10, 20, 30, 40]}, {"bbox": [0.5, 1.5, 2, 3]}])
    np.testing.assert_allclose(b, [[10, 20, 40, 60], [0.5, 1.5, 2.5, 4.5]])
    assert boxes_from_annotations([]).shape == (0, 4)


# --------------------------------------------------------------------------------------- PromptPredictor


@pytest.mark.parametrize("mask_select", ["max_pred_iou", "single", "prompt_form"])
def test_prompt_predictor_equals_sam_predictor(mask_select):
    model = tiny_sam()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)
    boxes = np.array([[2, 3, 40, 30], [10, 10, 69, 49], [0, 0, 5, 5]], dtype=np.float32)
    points = np.array([[5, 6], [60, 40], [33, 20]], dtype=np.float32)
    pp = PromptPredictor(model, mask_select=mask_select, max_prompts_per_call=2)  # 2 calls: chunking too
    pp.set_image(image)
    ref = SamPredictor(model)
    ref.set_image(image)
    for kind, prompts in (("boxes", boxes), ("points", points)):
        multi = mask_select == "max_pred_iou" or (mask_select == "prompt_form" and kind == "points")
        if kind == "boxes":
            got_m, got_s = pp.predict_boxes(prompts)
            m, s, _ = ref.predict_torch(None, None, ref.transform.apply_boxes_torch(torch.as_tensor(prompts),
                                                                                    (50, 70)),
                                        multimask_output=multi)
        else:
            got_m, got_s = pp.predict_points(prompts)
            c = ref.transform.apply_coords_torch(torch.as_tensor(prompts), (50, 70))[:, None]
            m, s, _ = ref.predict_torch(c, torch.ones(len(prompts), 1, dtype=torch.int), multimask_output=multi)
        best = s.argmax(1)
        want_m = m[torch.arange(len(best)), best].numpy()
        want_s = s[torch.arange(len(best)), best].numpy()
        assert got_m.shape == (3, 50, 70) and got_m.dtype == bool
        np.testing.assert_array_equal(got_m, want_m)
        np.testing.assert_allclose(got_s, want_s, rtol=1e-5, atol=1e-6)


def test_prompt_predictor_errors():
    pp = PromptPredictor(tiny_sam())
    with pytest.raises(RuntimeError, match="set_image"):
        pp.predict_boxes(np.zeros((1, 4)))
    with pytest.raises(ValueError):
        pp.set_image(np.zeros((10, 10), dtype=np.uint8))
    pp.set_image(np.zeros((10, 12, 3), dtype=np.uint8))
    with pytest.raises(ValueError):
        pp.predict_points(np.zeros((3, 3)))
    m, s = pp.predict_boxes(np.zeros((0, 4)))
    assert m.shape == (0, 10, 12) and s.shape == (0,)
    with pytest.raises(ValueError):
        PromptPredictor(tiny_sam(), mask_select="best")
