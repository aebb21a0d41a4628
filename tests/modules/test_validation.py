"""The validation metrics of ``modules/validation.py`` beyond the plumbing of test_modules.py: AutoPPN's point
precision beside its chance level."""
from __future__ import annotations

import pytest
import torch

from litesam_pl.modules import AutoPPNModule
from litesam_pl.modules.config import ModelSpec
from tests.helpers import TINY, fake_batch


def _eval_points(m, batch, points):
    B, K = points.shape[:2]
    dec = {"boxes": torch.zeros(B, K, 4), "scores": torch.ones(B, K), "valid": torch.ones(B, K, dtype=torch.bool),
           "points": points, "groups": torch.zeros(B, K, dtype=torch.long)}
    m.model.autoppn.decode = lambda *a, **k: dec
    m.eval_ppn({"heatmap_logits": torch.zeros(B, 3, 8, 8), "boxes": torch.zeros(B, 3, 4, 8, 8)}, batch)


def test_point_precision_has_its_chance_level_beside_it():
    """The chance level is the share of the image (padding cut off) inside the GT masks; it does not depend on
    where the points are, while the precision does."""
    m = AutoPPNModule(model=ModelSpec(kwargs=TINY))
    batch = fake_batch()
    covered = (batch["masks"].bool() & batch["valid"].bool()[:, :, None, None]).any(1)
    shares = [covered[i, :h, :w].float().mean().item()
              for i, (h, w) in enumerate(batch["input_size"].tolist()) if batch["valid"][i].any()]
    assert 0.0 < min(shares) and max(shares) < 1.0  # the fixture leaves background
    on_masks = batch["points"][:, :, 0]
    _eval_points(m, batch, on_masks)
    assert m.val_point_chance.compute().item() == pytest.approx(sum(shares) / len(shares), abs=1e-6)
    first = m.val_point_precision.compute().item()
    m.val_point_precision.reset()
    m.val_point_chance.reset()
    _eval_points(m, batch, torch.zeros_like(on_masks) + torch.tensor([63.0, 63.0]))  # the corner: background
    assert m.val_point_precision.compute().item() < first
    assert m.val_point_chance.compute().item() == pytest.approx(sum(shares) / len(shares), abs=1e-6)
