"""The rows of ``benchmarks.segevery``: the catalogue in print order, a method's JSON row (measured or failed, with
its precision), the speed-up ratios and the Table-3-shaped table."""
from __future__ import annotations

import argparse
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from benchmarks.segevery_ort import ORT_METHODS
from benchmarks.toolkit.timing import quantile

# every row of the benchmark in print order (``benchmarks.segevery.METHODS``): method -> (Table 3's "Model",
# "Sampling Strategy")
TABLE3_LABELS = {
    "litesam_autoppn": ("LiteViT + AutoPPN (Lite-SAM)", "AutoPPN (256 points)"),
    "litesam_grid32": ("LiteViT (Lite-SAM)", "Grid-Search (32 x 32), our batched path"),
    "litesam_amg32": ("LiteViT (Lite-SAM)", "Grid-Search (32 x 32), SAM AMG"),
    "sam_b_amg32": ("SAM-B", "Grid-Search (32 x 32), SAM AMG"),
    "sam_b_autoppn": ("SAM-B + AutoPPN", "AutoPPN (256 points)"),
    "decoder_stock": ("mask decoder only", "stock MaskDecoder, 256 prompts"),
    "decoder_ours": ("mask decoder only", "our batched decoder, 256 prompts"),
    "litesam_autoppn_ort": ("Lite-SAM + AutoPPN, ONNX Runtime", "AutoPPN (256 points), CPU provider"),
    "litesam_onnx_example": ("Lite-SAM + AutoPPN, ONNX example", "AutoPPN (256 points), numpy post-proc."),
}
# the row each row's speed-up in the table is measured against
TABLE3_BASELINE = {"sam_b_autoppn": "sam_b_amg32", "litesam_grid32": "litesam_amg32",
                   "litesam_autoppn": "litesam_amg32", "decoder_ours": "decoder_stock",
                   "litesam_autoppn_ort": "litesam_autoppn", "litesam_onnx_example": "litesam_autoppn"}


def autocast_dtype(args: argparse.Namespace, device: torch.device) -> Optional[torch.dtype]:
    """bf16 on CUDA unless ``--dtype fp32``; None (no autocast, fp32) on CPU."""
    return torch.bfloat16 if (device.type == "cuda" and args.dtype == "bf16") else None


def autocast_note(method: str, dtype: Optional[torch.dtype]) -> str:
    """What runs in reduced precision in ``method``'s row (the ``autocast`` field of the JSON row)."""
    if dtype is None:
        return "off (fp32)"
    name = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))
    if method in ORT_METHODS:
        return "off (fp32): onnxruntime CPU"
    if method.startswith("decoder_"):
        return f"{name}: AutoPPN prompts and the decoder call"
    if method.endswith("_amg32"):
        return (f"{name}: encoder, prompt encoder, mask decoder; decoder outputs cast to fp32 (hook), so SAM's "
                "upsampling and AMG post-processing run in fp32")
    return f"{name}: encoder, prompts, mask decoder; decoder outputs cast to fp32 for upsampling and post-processing"


def measured_row(m: str, rs: List[Dict[str, Any]], device: torch.device, res: int, bench: Any) -> Dict[str, Any]:
    """The JSON row of method ``m`` from its runs ``rs`` (medians, p90, per-phase medians, the row's own checks)."""
    totals = [r["total"] * 1e3 for r in rs]
    phase_names = sorted({k for r in rs for k in r["phases"]})
    row = {
        "method": m,
        "resolution": res,
        "device": device.type,
        "dtype": "bf16" if bench.dtype is not None else "fp32",
        "autocast": autocast_note(m, bench.dtype),
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "images": len(rs),
        "median_ms": quantile(totals, 0.5),
        "p90_ms": quantile(totals, 0.9),
        "prompts": int(np.median([r["prompts"] for r in rs])),
        "masks": float(np.median([r["masks"] for r in rs])),
        "phases": {k: quantile([r["phases"].get(k, 0.0) * 1e3 for r in rs], 0.5) for k in phase_names},
        "per_image_ms": totals,
        "random_weights": bench.random_weights,
    }
    if m == "decoder_ours" and bench.decoder_diffs:
        row["max_abs_diff_vs_stock"] = max(bench.decoder_diffs)
    if m in ORT_METHODS:
        row.update(bench.ort_info)
        row["check_vs_pytorch"] = bench.ort_check if m == "litesam_autoppn_ort" else bench.example_check
    return row


def failed_row(args: argparse.Namespace, device: torch.device, res: int, method: str, error: str,
               stage: str = "") -> Dict[str, Any]:
    """The row of a method that raised: ``error`` (one line) and where (``failed_at``: warm-up or an image)."""
    dtype = autocast_dtype(args, device)
    return {
        "method": method, "resolution": res, "device": device.type, "dtype": "bf16" if dtype is not None else "fp32",
        "autocast": autocast_note(method, dtype),
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "images": 0, "median_ms": None, "p90_ms": None, "error": error, "failed_at": stage,
        "random_weights": not args.ckpt,
    }


def speedups(rows: List[Dict[str, Any]]) -> Dict[str, float]:
    """The ratios the issue targets, per (device, resolution)."""
    out: Dict[str, float] = {}
    by = {(r["device"], r["resolution"], r["method"]): r["median_ms"] for r in rows
          if not r.get("error") and r.get("median_ms")}
    for (dev, res, m), v in by.items():
        key = f"{dev}/r{res}"
        for num, den, name in (("litesam_amg32", "litesam_autoppn", "amg32_over_autoppn"),
                               ("litesam_grid32", "litesam_autoppn", "grid32_over_autoppn"),
                               ("litesam_amg32", "litesam_grid32", "amg32_over_grid32"),
                               ("sam_b_amg32", "sam_b_autoppn", "sam_b_amg32_over_autoppn"),
                               ("decoder_stock", "decoder_ours", "decoder_stock_over_ours"),
                               ("litesam_autoppn", "litesam_autoppn_ort", "autoppn_pytorch_over_ort"),
                               ("litesam_autoppn", "litesam_onnx_example", "autoppn_pytorch_over_onnx_example")):
            if m == num and (dev, res, den) in by:
                out[f"{key}/{name}"] = v / by[(dev, res, den)]
    # ORT rows: also the median of the per-image ratios (each image's rows ran back to back: robust to load drift)
    per = {(r["device"], r["resolution"], r["method"]): r.get("per_image_ms") or [] for r in rows
           if not r.get("error") and r.get("median_ms")}
    for (dev, res, m), num in per.items():
        for den_m, name in (("litesam_autoppn_ort", "autoppn_pytorch_over_ort"),
                            ("litesam_onnx_example", "autoppn_pytorch_over_onnx_example")):
            den = per.get((dev, res, den_m))
            if m == "litesam_autoppn" and den and len(den) == len(num):
                out[f"{dev}/r{res}/{name}_paired_median"] = quantile([a / b for a, b in zip(num, den)], 0.5)
    return out


def table3(rows: List[Dict[str, Any]]) -> str:
    """Rows shaped like the paper's Table 3 (model, sampling strategy, SegEvery time, speed-up)."""
    by = {(r["device"], r["resolution"], r["method"]): r for r in rows}
    lines = []
    for dev, res in sorted({(r["device"], r["resolution"]) for r in rows}):
        lines.append(f"\n{dev}, r{res} ({by.get((dev, res, rows[0]['method']), rows[0])['dtype']}):")
        lines.append(f"| {'Model':30s} | {'Sampling Strategy':40s} | {'SegEvery Time (ms)':>18s} | {'p90 (ms)':>9s} "
                     f"| prompts | masks | images |")
        lines.append("|" + "-" * 32 + "|" + "-" * 42 + "|" + "-" * 20 + "|" + "-" * 11 + "|---------|-------|--------|")
        for m in TABLE3_LABELS:
            r = by.get((dev, res, m))
            if r is None:
                continue
            model, strat = TABLE3_LABELS[m]
            if r.get("error"):
                lines.append(f"| {model:30s} | {strat:40s} | {'FAILED':>18s} | {'-':>9s} | {'-':>7s} | {'-':>5s} "
                             f"| {r.get('images', 0):6d} |")
                continue
            t = f"{r['median_ms']:.0f}"
            b = by.get((dev, res, TABLE3_BASELINE.get(m, "")))
            if b is not None and not b.get("error"):
                t += f" ({b['median_ms'] / r['median_ms']:.1f}x up)"
            lines.append(f"| {model:30s} | {strat:40s} | {t:>18s} | {r['p90_ms']:9.0f} | {r['prompts']:7d} "
                         f"| {r['masks']:5.0f} | {r['images']:6d} |")
        for m in TABLE3_LABELS:
            r = by.get((dev, res, m))
            if r is not None and r.get("error"):
                lines.append(f"FAILED {m} ({r.get('failed_at') or '?'}): {r['error']}")
    return "\n".join(lines)
