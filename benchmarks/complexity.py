"""Model complexity (params, MACs) of every registered model, beside the paper's figures (Tables 1, 4, 6).

MACs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (MACs = FLOPs / 2) on a batch-1 forward:

* backbones (``litevit*``, ``poolformer_s12``, timm comparison backbones): ``backbone(image)``;
* ``litesam*`` / ``sam_vit_b``: a single-prompt forward = image encoder + AutoPPN + prompt encoder + mask decoder
  with one box prompt (no AutoPPN decoding, no mask post-processing).

The counter sees convolutions, matmuls and attention only (pooling, norms, activations and other element-wise ops
are free), so absolute numbers are lower than the paper's (timm's poolformer_s12 counts 14.8 GMACs at 640 where
Table 1 prints 45.2): compare MACs as ratios. By default the count runs on the ``meta`` device (no real compute).

Usage: ``python -m benchmarks.complexity --json complexity.json [--timm] [--sizes 640 1024]``
"""
from __future__ import annotations

import argparse
import sys
from typing import Dict, Iterable, List, Optional

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from litesam_pl import create_model
from benchmarks._wandb import publish
from benchmarks.toolkit.paper import COMPLEXITY as PAPER, COMPLEXITY_RATIO_PAIRS  # Tables 1, 4, 6
from benchmarks.toolkit.paper import COMPLEXITY_RATIOS as PAPER_RATIOS
from benchmarks.toolkit.results import write_json

COUNTER = (
    "torch.utils.flop_counter.FlopCounterMode, MACs = FLOPs / 2, batch 1; counts conv / matmul / attention only "
    "(pooling, norms, activations, element-wise ops are free). litesam*/sam_vit_b: image encoder + AutoPPN + prompt "
    "encoder + mask decoder with one box prompt; backbones: features forward."
)

DEFAULT_MODELS = [
    "litevit", "litevit_2x", "litevit_3x", "poolformer_s12", "litesam", "litesam_2x", "litesam_3x", "sam_vit_b"
]
TABLE4_BACKBONES = [
    "timm:mobilenetv2_100",
    "torchvision:shufflenet_v2_x1_0",
    "timm:mobilevit_s",
    "timm:efficientvit_b2",
    "timm:fastvit_t8",
    "timm:tiny_vit_5m_224",
]


class SinglePromptForward(nn.Module):
    """Wrap a LiteSAM: image -> embedding -> AutoPPN maps -> one box prompt through SAM's decoder."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        s = images.shape[-1]
        emb = self.model.image_encoder(images)
        if getattr(self.model, "autoppn", None) is not None:
            self.model.autoppn(emb)
        box = torch.tensor([[[0.25 * s, 0.25 * s, 0.75 * s, 0.75 * s]]], device=images.device)
        masks, _ = self.model.predict_masks(emb, boxes=box, multimask_output=False)
        return masks


def build_measured(name: str, img_size: int) -> nn.Module:
    """The module whose params/MACs are reported under ``name``."""
    if name == "poolformer_s12":
        import timm

        return timm.create_model("poolformer_s12", pretrained=False)
    if name.startswith(("litesam", "sam_")):
        return SinglePromptForward(create_model(name, img_size=img_size))
    return create_model(name)


def count_params(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


PARTS = ("image_encoder", "autoppn", "prompt_encoder", "mask_decoder")


def count_macs(module: nn.Module, img_size: int, device: str = "meta", breakdown: Optional[Dict] = None) -> int:
    """MACs (FLOPs / 2) of ``module`` on a ``[1, 3, img_size, img_size]`` input.

    If ``breakdown`` is a dict, it receives the MACs of each LiteSAM part (``PARTS``) found in the module.
    """
    module = module.to(device).eval().requires_grad_(False)
    x = torch.zeros(1, 3, img_size, img_size, device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(x)
    if breakdown is not None:
        for name, ops in counter.get_flop_counts().items():
            part = name.split(".")[-1]
            if part in PARTS and name.count(".") <= 2:
                breakdown[part] = int(sum(ops.values()) // 2)
    return int(counter.get_total_flops() // 2)


def measure_complexity(names: Iterable[str], sizes: Iterable[int] = (640, 1024), device: str = "meta") -> Dict:
    """``{"models": {name: {"params", "macs": {size: int}}}, "counter", "paper", "ratios"}``."""
    from tqdm import tqdm

    names, sizes = list(names), [int(s) for s in sizes]
    models: Dict[str, Dict] = {}
    for name in tqdm(names, desc="complexity", file=sys.stderr):
        entry: Dict = {"params": None, "macs": {}}
        for size in sizes:
            module = build_measured(name, size)
            parts: Dict[str, int] = {}
            if entry["params"] is None:
                inner = module.model if isinstance(module, SinglePromptForward) else module
                entry["params"] = count_params(inner)
                if isinstance(module, SinglePromptForward):
                    entry["params_breakdown"] = {
                        p: count_params(getattr(inner, p)) for p in PARTS if getattr(inner, p, None) is not None
                    }
            entry["macs"][str(size)] = count_macs(module, size, device, parts)
            if parts:
                entry.setdefault("macs_breakdown", {})[str(size)] = parts
            del module
        models[name] = entry
    return {"models": models, "counter": COUNTER, "device": device, "paper": PAPER, "ratios": ratios(models)}


def ratios(models: Dict[str, Dict]) -> Dict[str, Dict[str, Optional[float]]]:
    """Our MAC ratios beside the paper's (``COMPLEXITY_RATIO_PAIRS``; None where a model or size was not counted)."""

    def macs(model_side: tuple) -> Optional[int]:
        name, size = model_side
        return models.get(name, {}).get("macs", {}).get(size)

    def div(a: Optional[int], b: Optional[int]) -> Optional[float]:
        return None if not a or not b else a / b

    ours = {k: div(macs(num), macs(den)) for k, (num, den) in COMPLEXITY_RATIO_PAIRS.items()}
    return {k: {"ours": ours[k], "paper": PAPER_RATIOS[k]} for k in PAPER_RATIOS}


def format_complexity_table(result: Dict) -> str:
    """A paper-shaped table: ours beside the paper's figures."""
    sizes = sorted({s for m in result["models"].values() for s in m["macs"]}, key=int)
    head = ["model", "params (M)", "paper (M)"] + [f"GMACs@{s}" for s in sizes]
    head += [f"paper G@{s}" for s in sizes] + ["source"]
    rows: List[List[str]] = []
    for name, m in result["models"].items():
        paper = PAPER.get(name, {"params_m": None, "macs_g": {}, "source": "-"})
        row = [name, f"{m['params'] / 1e6:.3f}", "-" if paper["params_m"] is None else f"{paper['params_m']:.2f}"]
        row += [f"{m['macs'][s] / 1e9:.2f}" if s in m["macs"] else "-" for s in sizes]
        row += [f"{paper['macs_g'][s]:.1f}" if s in paper["macs_g"] else "-" for s in sizes]
        rows.append(row + [paper["source"]])
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    fmt = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    lines = [fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [fmt(r) for r in rows]
    lines.append("")
    lines.append("LiteSAM parts, params (M) / GMACs per size:")
    for name, m in result["models"].items():
        if "params_breakdown" in m:
            parts = []
            for part, n in m["params_breakdown"].items():
                macs = ", ".join(f"{m['macs_breakdown'][s].get(part, 0) / 1e9:.2f}" for s in sizes if s in m["macs"])
                parts.append(f"{part} {n / 1e6:.3f} / {macs}")
            lines.append(f"  {name}: " + "; ".join(parts))
    lines.append("")
    lines.append("MAC ratios (absolute MACs differ by counter; compare these):")
    for key, val in result["ratios"].items():
        ours = "-" if val["ours"] is None else f"{val['ours']:.3f}"
        lines.append(f"  {key}: ours {ours}, paper {val['paper']:.3f}")
    lines.append(f"counter: {result['counter']}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", metavar="PATH", help="write the result as JSON here")
    parser.add_argument(
        "--models", nargs="+", default=None, help=f"names to count (default: {' '.join(DEFAULT_MODELS)})"
    )
    parser.add_argument("--timm", action="store_true", help="also count the Table 4 comparison backbones")
    parser.add_argument("--sizes", nargs="+", type=int, default=[640, 1024], help="square input sides")
    parser.add_argument("--device", default="meta", help="'meta' (fast, no compute) or 'cpu'/'cuda'")
    args = parser.parse_args(argv)
    names = list(args.models or DEFAULT_MODELS)
    if args.timm:
        names += [n for n in TABLE4_BACKBONES if n not in names]
    result = measure_complexity(names, args.sizes, args.device)
    print(format_complexity_table(result))
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    publish("complexity", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
