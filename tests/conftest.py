"""Shared pytest fixtures: the ../shared data samples (skipped cleanly when absent), a quiet, offline env, a tiny
random Lite-SAM, synthetic SA-1B shards and a tiny checkpoint for ``litesam predict``.

Plain helper functions and constants (``REPO``, ``fake_batch``, ``stack``, ...) are in ``tests/helpers.py``; the map
of the tests is ``tests/README.md``."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.helpers import SHARED, write_predict_ckpt

# Unit tests use tiny tensors: one intra-op thread is faster than two on a busy 2-core machine, and deterministic.
torch.set_num_threads(1)

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="module")
def tiny_model(request):
    """A seeded random ``litesam`` in eval mode at the test module's ``TINY_MODEL_SIZE`` (default 64), one per
    module (tests may not change it)."""
    import litesam_pl

    torch.manual_seed(0)
    return litesam_pl.create_model("litesam", img_size=int(getattr(request.module, "TINY_MODEL_SIZE", 64))).eval()


@pytest.fixture(autouse=True)
def _offline_wandb(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests that need it skip where it is absent (a user's clone)."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"shared data samples not found at {path}")
    return path


@pytest.fixture(scope="session")
def synthetic_sa1b(tmp_path_factory) -> Path:
    """A few synthetic SA-1B-format tars (written once per session by data_prep.synthetic)."""
    from data_prep.synthetic import write_synthetic_sa1b

    out = tmp_path_factory.mktemp("synthetic_sa1b")
    write_synthetic_sa1b(out, num_images=12, seed=0, images_per_tar=4, size=(192, 256))
    return out


@pytest.fixture(scope="module")
def predict_ckpt(synthetic_sa1b, tmp_path_factory) -> Path:
    """A tiny ``LiteSAMModule`` checkpoint as ``litesam fit`` writes it (img_size 64), one per test module; run it
    with ``tests.helpers.predict_args``."""
    shard = sorted(str(p) for p in synthetic_sa1b.glob("*.tar"))[0]
    return write_predict_ckpt(shard, tmp_path_factory.mktemp("predict_ckpt"))
