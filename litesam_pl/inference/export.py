"""``litesam export``: weights-only export and ONNX export (checked against PyTorch with onnxruntime).

- ``export_weights(model, out)`` writes ``{"format": "litesam-pl/weights-v1", "model": {"name", "kwargs"},
  "state_dict"}`` with tensors and plain Python values only (``torch.load(weights_only=True)`` and
  ``litesam_pl.load_model`` read it).
- ``export_onnx(model, out_dir)`` writes two graphs:

  * ``encoder.onnx``: ``image [1, 3, S, S]`` (normalised, padded: ``Sam.preprocess``) and, with AutoPPN,
    ``input_size`` int64 ``[2]`` (``(h, w)`` of the resized image before padding, in input pixels; ``(S, S)``
    for a square image) -> ``image_embeddings [1, 256, S/16, S/16]`` and, with AutoPPN, the raw maps
    (``heatmap_logits``, ``box_maps``) plus the decoded top-N prompts after Point-NMS (``points [1, N, 2]``,
    ``boxes [1, N, 4]`` clipped to the image, ``scores [1, N]``, ``valid [1, N]`` bool). Decoding runs at
    score threshold 0 inside ``input_size`` (``AutoPPN.decode(input_sizes=...)``): cells in the zero padding
    are never prompts, so every valid point lies in ``[0, w) x [0, h)``; rows with ``valid=False`` (fewer
    in-image local maxima than N) are zero padding.
  * ``decoder.onnx``: ``image_embeddings``, ``point_coords [N, P, 2]`` (input pixels), ``point_labels [N, P]``
    (-1 pad, 0 negative, 1 positive, 2/3 box corners) -> ``low_res_masks [N, 4, S/4, S/4]`` logits of all four
    mask tokens (multimask outputs are 1..3) and ``iou_predictions [N, 4]``. N and P are dynamic.

  Both are run with onnxruntime on random inputs and compared with PyTorch (``max_abs_diff`` in ``report.json``).

ONNX export needs ``onnx`` (and ``onnxruntime`` for the check): ``pip install "litesam-pl[onnx]"``. How to run the
graphs (pre-processing, prompt layout, mask-token choice, filters, NMS, upsampling) with numpy + opencv +
onnxruntime only: ``examples/onnx_segment_everything.py`` and ``docs/onnx.md``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch
from torch import Tensor, nn

from .fast_decoder import LABEL_BOX_BR, LABEL_BOX_TL, FastMaskDecoder, embed_prompts

__all__ = ["EXPORT_FORMAT", "export_weights", "export_onnx", "require_onnx", "EncoderOnnx", "DecoderOnnx", "main"]

from litesam_pl.files import json_text, write_json  # noqa: E402
from litesam_pl.models.checkpoint import EXPORT_FORMAT, export_payload, save_atomic  # noqa: E402
from litesam_pl.models.prompt_encoder import dense_embeddings, uses_box_mask  # noqa: E402


def export_weights(model: nn.Module, out: str | os.PathLike) -> Path:
    """Write the weights-only export of ``model`` (built by ``litesam_pl.create_model``) to ``out``, atomically
    (``litesam_pl.models.checkpoint.export_payload``, ``save_atomic``)."""
    return save_atomic(export_payload(model), out)


class EncoderOnnx(nn.Module):
    """Image encoder (+ AutoPPN maps and Point-NMS/top-N prompts) for ONNX export.

    ``forward(image, input_size)``: ``input_size`` int64 ``[2]`` (or ``[1, 2]``) is the ``(h, w)`` of the resized
    image before padding; only AutoPPN cells inside it are proposals (None: the whole padded square)."""

    def __init__(self, model: nn.Module, top_n: int = 256, nms_kernel: int = 3) -> None:
        super().__init__()
        self.model = model
        self.top_n = int(top_n)
        self.nms_kernel = int(nms_kernel)
        self.has_ppn = getattr(model, "autoppn", None) is not None

    def forward(self, image: Tensor, input_size: Optional[Tensor] = None):
        emb = self.model.image_encoder(image)
        if not self.has_ppn:
            return (emb,)
        maps = self.model.autoppn(emb)
        dec = self.model.autoppn.decode(
            maps, int(self.model.image_encoder.img_size), top_n=self.top_n, score_threshold=0.0,
            nms_kernel=self.nms_kernel, input_sizes=input_size,
        )
        return emb, maps["heatmap_logits"], maps["boxes"], dec["points"], dec["boxes"], dec["scores"], dec["valid"]

    @property
    def input_names(self) -> list:
        return ["image", "input_size"] if self.has_ppn else ["image"]

    @property
    def output_names(self) -> list:
        if not self.has_ppn:
            return ["image_embeddings"]
        return ["image_embeddings", "heatmap_logits", "box_maps", "points", "boxes", "scores", "valid"]


class DecoderOnnx(nn.Module):
    """Prompt encoder + our batched mask decoder (``FastMaskDecoder``) for N prompts of one image."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.fast = FastMaskDecoder(model.mask_decoder, model.prompt_encoder)

    def forward(self, image_embeddings: Tensor, point_coords: Tensor, point_labels: Tensor):
        pe = self.model.prompt_encoder
        sparse = embed_prompts(pe, point_coords, point_labels)
        if self.fast.supported and not uses_box_mask(pe):
            cache = self.fast.prepare_image(image_embeddings)
            return self.fast(cache, sparse, None)
        hw = (image_embeddings.shape[-2], image_embeddings.shape[-1])
        dense = dense_embeddings(pe, None, sparse.shape[0], hw)
        if uses_box_mask(pe):  # the box (corner labels 2 and 3) also as a dense mask prompt; prompts without one: none
            tl, br = (point_labels == LABEL_BOX_TL), (point_labels == LABEL_BOX_BR)
            boxes = torch.cat([(point_coords * tl[..., None]).sum(1), (point_coords * br[..., None]).sum(1)], 1)
            dense = torch.where(tl.any(1)[:, None, None, None], dense_embeddings(pe, boxes, sparse.shape[0], hw), dense)
        return self.model.mask_decoder.predict_masks(image_embeddings, pe.get_dense_pe(), sparse, dense)


def _missing_onnx_packages(check: bool = True) -> list:
    """The packages ONNX export lacks here: ``onnx`` (torch's exporter) and, for the check, ``onnxruntime``."""
    import importlib.util

    names = ("onnx", "onnxruntime") if check else ("onnx",)
    return [n for n in names if importlib.util.find_spec(n) is None]


def require_onnx(check: bool = True) -> None:
    """Raise ``ImportError`` with a one-line install hint when ``_missing_onnx_packages`` is not empty."""
    missing = _missing_onnx_packages(check)
    if missing:
        what = ("ONNX export checks its graphs with onnxruntime (not installed; --no-check skips the check)"
                if missing == ["onnxruntime"] else f"ONNX export needs {' and '.join(missing)} (not installed)")
        raise ImportError(f'{what}: pip install "litesam-pl[onnx]" (or: pip install onnx onnxruntime)')


def _onnx_export(module: nn.Module, args: tuple, path: Path, inputs: Sequence[str], outputs: Sequence[str],
                 dynamic_axes: Dict[str, Dict[int, str]], opset: int) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, str(path), input_names=list(inputs), output_names=list(outputs),
            dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True, dynamo=False,
        )


def _run_ort(path: Path, feeds: Dict[str, Tensor]) -> list:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {k: v.detach().cpu().numpy() for k, v in feeds.items()})


def _compare_with_torch(model: nn.Module, enc: nn.Module, enc_path: Path, dec_path: Path, image: torch.Tensor,
                        num_prompts: int, g: torch.Generator) -> Dict[str, float]:
    """``max_abs_diff`` per output of the exported graphs against PyTorch, on inputs unlike the export examples
    (``g`` continues the export's random stream)."""
    size = image.shape[-1]
    diffs: Dict[str, float] = {}
    # a non-square image (a different input_size than the export example): the graph must not bake it in
    part = torch.tensor([max(1, size * 5 // 8), size], dtype=torch.int64)
    feeds = {"image": image, "input_size": part} if enc.has_ppn else {"image": image}
    ref = enc(*feeds.values())
    got = _run_ort(enc_path, feeds)
    for name, r, o in zip(enc.output_names, ref, got):
        if name in ("points", "boxes", "scores", "valid"):  # ties in top-k may order differently
            continue
        diffs[f"encoder/{name}"] = float((r - torch.as_tensor(o)).abs().max())
    if enc.has_ppn:  # compare the sorted scores and the count of valid prompts
        diffs["encoder/scores"] = float((ref[5] - torch.as_tensor(got[5])).abs().max())
        diffs["encoder/valid_count"] = float(abs(int(ref[6].sum()) - int(got[6].sum())))
    # a different prompt count and layout than the export example (points + box corners)
    n2 = num_prompts + 3
    pts = torch.rand(n2, 1, 2, generator=g) * size
    box = torch.sort(torch.rand(n2, 2, 2, generator=g) * size, dim=1).values
    c2 = torch.cat([pts, box], dim=1)
    l2 = torch.tensor([[1.0, 2.0, 3.0]]).repeat(n2, 1)
    emb_ort = torch.as_tensor(got[0])
    ref_m, ref_i = _stock_reference(model, emb_ort, c2, l2)
    got_m, got_i = _run_ort(dec_path, {"image_embeddings": emb_ort, "point_coords": c2, "point_labels": l2})
    diffs["decoder/low_res_masks"] = float((ref_m - torch.as_tensor(got_m)).abs().max())
    diffs["decoder/iou_predictions"] = float((ref_i - torch.as_tensor(got_i)).abs().max())
    return diffs


@torch.no_grad()
def export_onnx(
    model: nn.Module,
    out_dir: str | os.PathLike,
    top_n: int = 256,
    num_prompts: int = 4,
    opset: int = 17,
    check: bool = True,
    seed: int = 0,
) -> Dict[str, Any]:
    """Export ``encoder.onnx`` and ``decoder.onnx`` into ``out_dir`` and compare them with PyTorch.

    Returns (and writes to ``report.json``) the paths and ``max_abs_diff`` per output. Raises ``ImportError``
    (one line: what to install) without ``onnx``, or without ``onnxruntime`` when ``check``. Running the graphs:
    ``examples/onnx_segment_everything.py`` and ``docs/onnx.md``."""
    require_onnx(check)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu().float()
    size = int(model.image_encoder.img_size)
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(1, 3, size, size, generator=g)

    enc = EncoderOnnx(model, top_n=top_n).eval()
    enc_path = out_dir / "encoder.onnx"
    full = torch.tensor([size, size], dtype=torch.int64)
    enc_args = (image, full) if enc.has_ppn else (image,)
    _onnx_export(enc, enc_args, enc_path, enc.input_names, enc.output_names, {}, opset)

    emb = model.image_encoder(image)
    dec = DecoderOnnx(model).eval()
    dec_path = out_dir / "decoder.onnx"
    coords = torch.rand(num_prompts, 2, 2, generator=g) * size
    labels = torch.tensor([[1, -1]], dtype=torch.float32).repeat(num_prompts, 1)
    _onnx_export(
        dec, (emb, coords, labels), dec_path, ["image_embeddings", "point_coords", "point_labels"],
        ["low_res_masks", "iou_predictions"],
        {"point_coords": {0: "num_prompts", 1: "num_points"}, "point_labels": {0: "num_prompts", 1: "num_points"},
         "low_res_masks": {0: "num_prompts"}, "iou_predictions": {0: "num_prompts"}},
        opset,
    )
    report: Dict[str, Any] = {"encoder": str(enc_path), "decoder": str(dec_path), "img_size": size, "top_n": top_n,
                              "opset": opset}
    if check:
        report["max_abs_diff"] = _compare_with_torch(model, enc, enc_path, dec_path, image, num_prompts, g)
    write_json(out_dir / "report.json", report, indent=2, newline=False)
    return report


def _stock_reference(model: nn.Module, emb: Tensor, coords: Tensor, labels: Tensor):
    """SAM's own prompt encoder + ``MaskDecoder.predict_masks`` (all four mask tokens) on the same prompts."""
    pts, pl = coords[:, :1], labels[:, :1]
    boxes = coords[:, 1:3].reshape(-1, 4) if coords.shape[1] == 3 else None
    sparse, dense = model.prompt_encoder(points=(pts, pl), boxes=boxes, masks=None)
    return model.mask_decoder.predict_masks(emb, model.prompt_encoder.get_dense_pe(), sparse, dense)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``litesam export --ckpt X --out Y.pt [--onnx DIR]``."""
    parser = argparse.ArgumentParser(
        prog="litesam export",
        description="Write a weights-only export (torch.load(weights_only=True)) and optionally ONNX graphs "
        "(encoder + AutoPPN, prompt encoder + mask decoder), checked against PyTorch with onnxruntime.",
    )
    parser.add_argument("--ckpt", required=True, help="Lightning checkpoint or an earlier export")
    parser.add_argument("--out", help="output .pt of the weights-only export")
    parser.add_argument("--onnx", metavar="DIR", help="also write encoder.onnx / decoder.onnx / report.json here "
                        '(needs pip install "litesam-pl[onnx]"; run them: examples/onnx_segment_everything.py)')
    parser.add_argument("--top-n", type=int, default=256,
                        help="prompts decoded inside encoder.onnx (default 256), at score threshold 0 inside its "
                        "input_size input ((h, w) of the resized image before padding), never in the padding")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime-vs-PyTorch check")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="max abs diff accepted by the check")
    args = parser.parse_args(argv)
    if not args.out and not args.onnx:
        parser.error("nothing to do: give --out and/or --onnx")
    if args.onnx:  # before loading the model: say at once what to install
        try:
            require_onnx(check=not args.no_check)
        except ImportError as err:
            print(f"litesam export: error: {err}", file=sys.stderr)
            return 2
    from litesam_pl.models.checkpoint import load_model

    try:
        model = load_model(args.ckpt)
    except (FileNotFoundError, ValueError) as err:
        print(f"litesam export: error: {err}", file=sys.stderr)
        return 2
    if args.out:
        path = export_weights(model, args.out)
        print(f"wrote {path}")
    if args.onnx:
        report = export_onnx(model, args.onnx, top_n=args.top_n, opset=args.opset, check=not args.no_check)
        print(json_text(report, indent=2))
        worst = max(report.get("max_abs_diff", {"none": 0.0}).values())
        if worst > args.tolerance:
            print(f"litesam export: ONNX differs from PyTorch by {worst:.3g} > {args.tolerance}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
