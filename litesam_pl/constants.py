"""Constants more than one package of ``litesam_pl`` needs, defined once here (no imports, so that any layer may
import this module without pulling in another).

- ``PIXEL_MEAN`` / ``PIXEL_STD``: the RGB normalisation of the model input, in 0..255 units
  (``segment_anything.modeling.Sam``'s defaults). ``litesam_pl.models.LiteSAM`` takes them as its
  ``pixel_mean`` / ``pixel_std`` defaults and ``litesam_pl.data.transforms`` normalises batches with them.
"""
from __future__ import annotations

__all__ = ["PIXEL_MEAN", "PIXEL_STD"]

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
