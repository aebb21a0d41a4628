"""Where the masks of one image went: the one-line filter report of ``litesam segment-everything``.

``filter_report`` turns an image's ``segment_everything`` ``stats["filters"]`` entry into one line (prompts, what each
filter removed, the best scores seen, the flags that would keep more masks); ``needs_filter_report`` says when it is
printed (none or almost none of the candidate masks kept). Used by ``inference.app`` (which re-exports both), the
prediction writer (``litesam predict``) and the web app.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List

__all__ = ["filter_report", "needs_filter_report", "FEW_KEPT"]

# below this share of the candidate masks kept, the per-image line is followed by the filter report
FEW_KEPT = 0.01


def _relax_below(best: float, step: float, strict: bool) -> float:
    """A threshold under ``best`` on a ``step`` grid (0 when none is above 0): ``best`` passes it (``> t``
    when ``strict``, else ``>= t``)."""
    t = math.floor(best / step) * step
    if strict and t >= best:
        t -= step
    return round(max(0.0, t), 6)


def _suggestions(f: Dict[str, Any]) -> List[str]:
    """The flags (with values) that relax the filters that removed masks or prompts in ``f``."""
    th, removed = f["thresholds"], f["removed"]
    flags: List[str] = []
    if f["removed_score_threshold"] and f["best_ppn_score"] is not None:
        flags.append(f"--score-threshold {_relax_below(f['best_ppn_score'], 0.01, strict=False):g}")
    if removed["pred_iou"] and f["best_pred_iou"] is not None:
        flags.append(f"--pred-iou-thresh {_relax_below(f['best_pred_iou'], 0.1, strict=True):g}")
    if removed["stability"] and f["best_stability"] is not None:
        flags.append(f"--stability-score-thresh {_relax_below(f['best_stability'], 0.1, strict=False):g}")
    if not flags and f["prompt_source"] == "autoppn" and f["proposals"] == 0:
        flags.append("--prompts grid")
    if not flags and th.get("max_masks") is not None and removed["max_masks"]:
        flags.append(f"--max-masks {2 * int(th['max_masks']) or 1}")
    return flags


def filter_report(f: Dict[str, Any]) -> str:
    """One line on where the masks of one image went, from its ``segment_everything`` ``stats["filters"]`` entry:
    prompts, how many masks each filter removed (in the order they apply), the best scores seen and the flags
    that relax the filters that removed them."""
    th, removed = f["thresholds"], f["removed"]

    def best(key: str) -> str:
        return "n/a" if f[key] is None else f"{f[key]:.3f}"

    source = ""
    if f["prompt_source"] == "autoppn":
        source = (f", from {f['proposals']} AutoPPN proposals: {f['removed_score_threshold']} under score threshold "
                  f"{th['score_threshold']} (best score {best('best_ppn_score')})")
    line = (f"{f['kept']} of {f['candidates']} masks kept ({f['prompts']} prompts decoded{source}); removed by "
            f"predicted IoU <= {th['pred_iou_thresh']:g}: {removed['pred_iou']} (best {best('best_pred_iou')}), "
            f"stability < {th['stability_score_thresh']:g}: {removed['stability']} (best {best('best_stability')}), "
            f"empty: {removed['empty']}, NMS: {removed['nms']}, max masks: {removed['max_masks']}")
    flags = _suggestions(f)
    return line + (f"; to keep more, try {' '.join(flags)}" if flags else "")


def needs_filter_report(f: Dict[str, Any]) -> bool:
    """(Almost) all candidate masks were removed: none kept, or under ``FEW_KEPT`` of them."""
    return f["kept"] == 0 or f["kept"] < FEW_KEPT * f["candidates"]
