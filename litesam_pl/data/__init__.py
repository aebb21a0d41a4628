"""Online data: SA-1B-format shards -> samples (datamodule.py), transforms, SegAny prompts, AutoPPN targets.

Import the Lightning data module from ``litesam_pl.data.datamodule`` (kept out of this package's namespace so that
the rest of ``litesam_pl.data`` stays importable without Lightning).
"""
from __future__ import annotations
