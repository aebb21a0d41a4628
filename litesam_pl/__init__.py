"""litesam-pl: Lite-SAM (LiteViT + AutoPPN + SAM's prompt encoder and mask decoder) on PyTorch Lightning."""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["create_model", "load_model", "list_models", "SegEvery", "SegEveryOptions", "segment_everything",
           "LiteSamEverything", "__version__"]


def create_model(name: str, **overrides):
    """Build a registered model by name (see ``litesam_pl.models.registry``)."""
    from .models.registry import create_model as _create

    return _create(name, **overrides)


def list_models(kind: str = "all") -> list:
    """Registered model names (``kind``: ``"all"``, ``"segmenter"`` or ``"backbone"``; see the registry)."""
    from .models.registry import list_models as _list

    return _list(kind)


def load_model(path: str, **kwargs):
    """Load a model from an export (``litesam export``) or a Lightning checkpoint (``litesam_pl.models.checkpoint``)."""
    from .models.checkpoint import load_model as _load

    return _load(path, **kwargs)


def __getattr__(name: str):
    """Lazy names, imported on first use: ``SegEvery(model, options).run(images)`` / ``SegEveryOptions`` /
    ``segment_everything(model, images, ...)`` (SegEvery, ``litesam_pl.inference.segevery``) and
    ``LiteSamEverything`` (``litesam_pl.inference.everything``)."""
    if name in ("SegEvery", "SegEveryOptions", "segment_everything"):
        from .inference import segevery

        return getattr(segevery, name)
    if name == "LiteSamEverything":
        from .inference.everything import LiteSamEverything

        return LiteSamEverything
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
