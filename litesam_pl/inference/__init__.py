"""Inference: SegEvery (``segevery``), our batched mask decoder (``fast_decoder``), post-processing, SAM
wrappers (``sam_compat``), exports (``export``), the ``segment-everything`` app and robust image loading.

Imports are lazy so that ``import litesam_pl.inference`` stays cheap."""
from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "SegEvery",
    "SegEveryOptions",
    "SegEveryResult",
    "segment_everything",
    "LiteSamEverything",
    "FastMaskDecoder",
    "embed_prompts",
    "load_image",
    "export_weights",
    "export_onnx",
    "automatic_mask_generator",
    "predictor",
]

_WHERE = {
    "SegEvery": ".segevery",
    "SegEveryOptions": ".segevery_options",
    "SegEveryResult": ".segevery",
    "segment_everything": ".segevery",
    "LiteSamEverything": ".everything",
    "FastMaskDecoder": ".fast_decoder",
    "embed_prompts": ".fast_decoder",
    "load_image": ".images",
    "export_weights": ".export",
    "export_onnx": ".export",
    "automatic_mask_generator": ".sam_compat",
    "predictor": ".sam_compat",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
