"""The printed table and the PR-curve plot of ``benchmarks.bsds``: Table 7's paper rows beside the measured ones
(or the oracle diagnostic's own table, which never shows the paper rows), and the BSDS-style precision/recall plot."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from benchmarks.toolkit.paper import TABLE7, TABLE7_COLUMNS

PAPER_TABLE7 = [(f"{m} (paper)", *(v[c] for c in TABLE7_COLUMNS)) for m, v in TABLE7.items()]  # Table 7


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def format_edge_table(name: str, res: Dict[str, object], n_thresholds: int,
                      more: Optional[Dict[str, Dict[str, object]]] = None, oracle: bool = False) -> str:
    """Table 7's paper rows, then ``name``'s measured row and one per entry of ``more`` (name -> result).

    ``oracle``: some row reads the ground truth, so the table is titled as the diagnostic, without the paper rows.
    """
    head = (f"Oracle diagnostic (not Table 7), rows marked GT read the BSDS500 ground truth ({res['images']} images, "
            f"{n_thresholds} thresholds)" if oracle else
            f"Table 7: zero-shot edge detection on BSDS500 ({res['images']} images, {n_thresholds} thresholds; "
            "paper rows: 200 test images, 99 thresholds)")
    lines = [head, "| method | ODS | OIS | AP | R50 |", "| --- | --- | --- | --- | --- |"]
    for row in [] if oracle else PAPER_TABLE7:
        lines.append("| " + " | ".join([row[0]] + [_fmt(v) for v in row[1:]]) + " |")
    for n, r in {name: res, **(more or {})}.items():
        lines.append(f"| **{n} (ours, measured)** | " + " | ".join(
            _fmt(r[k]) for k in ("ods", "ois", "ap", "r50")) + " |")
    return "\n".join(lines)


def plot_pr_curves(curves: Dict[str, Dict[str, object]], path: str) -> None:
    """BSDS-style precision/recall plot: iso-F curves, each method's curve and its ODS point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 6), dpi=120)
    r = np.linspace(0.01, 1, 400)
    for f in np.arange(0.1, 1.0, 0.1):
        p = f * r / (2 * r - f)
        ok = (p > 0) & (p <= 1) & (2 * r > f)
        ax.plot(r[ok], p[ok], color="0.6", lw=0.7, ls="--")
        ax.annotate(f"F={f:.1f}", xy=(1.0, f / (2 - f)), xytext=(2, 0), textcoords="offset points",
                    fontsize=6, color="0.45", va="center", annotation_clip=False)
    for name, res in curves.items():
        c = res["curve"]
        rr, pp = np.asarray(c["r"]), np.asarray(c["p"])
        keep = (rr > 0) | (pp > 0)
        (line,) = ax.plot(rr[keep], pp[keep], lw=2, label=f"[F={res['ods']:.3f}] {name}")
        ax.plot([res["ods_r"]], [res["ods_p"]], "o", color=line.get_color(), ms=6)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    ax.set_title("BSDS500 boundary benchmark")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
