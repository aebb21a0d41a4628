"""Send a benchmark's result to Weights & Biases when a run is configured.

A run is configured when ``WANDB_PROJECT`` is set (``WANDB_MODE=offline`` keeps it local; ``wandb sync`` later).
Rows (``result["rows"]``, or ``result["per_image"]``) become a ``wandb.Table``, top-level numbers the run summary,
and PNGs (PR curves, overlays) images. Without ``WANDB_PROJECT`` this does nothing, so benchmarks stay offline.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping


def _flat_numbers(result: Mapping[str, Any], prefix: str = "") -> Dict[str, float]:
    out: Dict[str, float] = {}
    for key, value in result.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out[prefix + key] = value
        elif isinstance(value, Mapping) and key not in ("args", "config", "meta"):
            out.update(_flat_numbers(value, prefix=f"{prefix}{key}/"))
    return out


def _table(rows: List[Mapping[str, Any]]):
    import wandb

    columns: List[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns and not isinstance(row[k], (dict, list))]
    return wandb.Table(columns=columns, data=[[row.get(c) for c in columns] for row in rows])


def publish(benchmark: str, result: Mapping[str, Any], images: Iterable[str | Path] = ()) -> bool:
    """Log ``result`` of ``benchmark`` to W&B if ``WANDB_PROJECT`` is set; returns whether it logged."""
    project = os.environ.get("WANDB_PROJECT")
    if not project:
        return False
    import wandb

    config = result.get("args") or result.get("config") or result.get("meta") or {}
    run = wandb.init(project=project, job_type="benchmark", name=benchmark, config=dict(config), reinit=True)
    try:
        for key in ("rows", "per_image"):
            rows = result.get(key)
            if isinstance(rows, list) and rows and isinstance(rows[0], Mapping):
                run.log({f"{benchmark}/{key}": _table(rows)})
        run.summary.update(_flat_numbers(result))
        for path in images:
            if path and Path(path).is_file():
                run.log({f"{benchmark}/{Path(path).stem}": wandb.Image(str(path))})
    finally:
        run.finish()
    return True
