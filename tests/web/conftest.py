"""Fixtures shared by the ``litesam app`` tests: ``slot``, the page's model (a seeded random ``litesam`` at 64 px)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def slot():
    """``handlers.load_slot`` without a checkpoint: random weights, 64 px, seed 0 (one per test module)."""
    from litesam_pl.web import handlers as H  # imported here: tests/web/test_server.py sets Gradio up first

    return H.load_slot(None, img_size=64, seed=0)
