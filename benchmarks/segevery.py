"""SegEvery latency (Lite-SAM Table 3 / Table 6): AutoPPN vs grid search, per phase, CPU and CUDA.

Rows (``--methods``):

==================  ==========================================================================================
``litesam_autoppn`` Lite-SAM, AutoPPN + Point-NMS + top-256 prompts, our batched pipeline (``segment_everything``)
``litesam_grid32``  Lite-SAM, our batched pipeline fed a 32x32 point grid (1024 prompts)
``litesam_amg32``   Lite-SAM driven by ``segment_anything.SamAutomaticMaskGenerator`` (32x32, its defaults)
``sam_b_amg32``     SAM-B (ViT-B encoder, random weights) with ``SamAutomaticMaskGenerator``
``sam_b_autoppn``   SAM-B + AutoPPN through our pipeline
``decoder_stock``   SAM's ``MaskDecoder`` on the same 256 AutoPPN prompts (decoder call only)
``decoder_ours``    our ``FastMaskDecoder`` on those prompts (decoder call only; ``max_abs_diff`` vs stock)
==================  ==========================================================================================

ONNX Runtime (CPU only, opt-in: not in the default ``--methods``; needs ``pip install "litesam-pl[onnx]"``):

=======================  =====================================================================================
``litesam_autoppn_ort``  the ``litesam_autoppn`` row with the exported graphs (``litesam export --onnx``) run by
                         onnxruntime's CPU provider instead of PyTorch: ``encoder.onnx`` (encoder + AutoPPN +
                         Point-NMS + top-N), then ``decoder.onnx`` once over all prompts; pre-processing
                         (``preprocess_images``), the score threshold, the prompt layout
                         (``segevery_prompts.prompt_tensors``) and the post-processing
                         (``segevery_masks.postprocess_image``: filters, mask NMS, upsampling) are the
                         PyTorch pipeline's own functions with the bench's ``SegEveryOptions``
``litesam_onnx_example`` the same sessions driven by ``examples/onnx_segment_everything.py``'s
                         ``segment_everything_onnx`` (numpy + OpenCV pre- and post-processing, no torch: what a
                         deployment without PyTorch runs; ``tests/examples/test_onnx_segment_everything.py``
                         checks it against ``segment_everything``)
=======================  =====================================================================================

How they run (export, threads, phases, the check against PyTorch): ``benchmarks/segevery_ort.py``.

Protocol: real photographs (``skimage.data`` and ``../shared/data`` COCO/BSDS images when present), each resized
so that its longer side equals the resolution; one warm-up run per method (same code path, few prompts); then,
image by image, every method in turn (interleaved, so machine-load drift hits all rows alike); wall time with device synchronisation; median and
p90 over images; per-phase medians. With random weights (no ``--ckpt``) AutoPPN's scores mean nothing, so exactly
``top_n`` = 256 prompts are taken (``score_threshold=0``); ``prompts`` in the JSON says how many were decoded.
SAM-B rows are slow on CPU: ``--sam-images`` (default 2 on CPU) limits them.

Precision (``dtype`` and ``autocast`` in each row): CPU rows run in fp32; CUDA rows in bf16 autocast (``--dtype fp32``
turns it off) for the networks (image encoder, prompt encoder, mask decoder) and in fp32 after the decoder: our
pipeline casts the decoder outputs to fp32 before upsampling and post-processing, and the AMG rows do the same
(a forward hook casts ``mask_decoder``'s outputs to fp32), since SAM's generator calls ``.numpy()`` on them, which
bf16 does not support. So every row times the same bf16 networks and fp32 post-processing.

Failures: each method row runs under try/except; a failing row records ``error`` (``"Type: message"``, one line)
and the run goes on; the table marks it, and ``python -m benchmarks.segevery`` exits with 1 if any row failed.
``--json`` is rewritten (atomically) after every (device, resolution) configuration; ``meta.complete`` is false
until the end.

Example::

    python -m benchmarks.segevery --device cpu --resolution 640 --images 5 --threads 1 --json results/segevery-cpu.json
    python -m benchmarks.segevery --device cpu --resolution 640 --images 5 --threads 2 \
        --methods litesam_autoppn litesam_autoppn_ort litesam_onnx_example --json results/segevery_ort_cpu.json
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from benchmarks._wandb import publish
from benchmarks.segevery_measure import WARM_UP, load_photos
from benchmarks.segevery_ort import ORT_METHODS, OrtRows
from benchmarks.segevery_report import (  # autocast_note: this module's interface too (a row's ``autocast``)
    TABLE3_LABELS, autocast_dtype, autocast_note, failed_row, measured_row, speedups, table3,  # noqa: F401
)
from litesam_pl.inference.segevery_options import add_option_flags
from benchmarks.toolkit.results import error_text, write_json
from benchmarks.toolkit.timing import Laps, ModuleTimer, interleaved

METHODS = tuple(TABLE3_LABELS)  # every row, in print order (labels: benchmarks/segevery_report.py)
DEFAULT_METHODS = tuple(m for m in METHODS if m not in ORT_METHODS)  # ORT rows: opt-in (optional extra, CPU only)


# ---------------------------------------------------------------------------------------------- precision
def _fp32_outputs(module: torch.nn.Module, args: Any, out: Any) -> Any:
    """Forward hook: floating-point tensor outputs (a tensor, or a tuple/list of them) cast to float32."""
    def cast(o: Any) -> Any:
        return o.float() if isinstance(o, torch.Tensor) and o.is_floating_point() else o

    if isinstance(out, (tuple, list)):
        return type(out)(cast(o) for o in out)
    return cast(out)


# ---------------------------------------------------------------------------------------------- methods
class Bench(OrtRows):
    """Models and per-method runners for one (device, resolution); the ONNX Runtime runners: ``OrtRows``."""

    def __init__(self, args: argparse.Namespace, device: torch.device, res: int, points_per_side: int = 32) -> None:
        self.args = args
        self.device = device
        self.res = res
        self.points_per_side = points_per_side  # the grid rows' side (litesam_grid32: 32)
        self.dtype = autocast_dtype(args, device)
        self._models: Dict[str, torch.nn.Module] = {}
        self.random_weights = not args.ckpt
        self.decoder_diffs: List[float] = []
        self._init_ort()

    def model(self, kind: str) -> torch.nn.Module:
        if kind not in self._models:
            import litesam_pl

            torch.manual_seed(self.args.seed)
            if kind == "litesam":
                from litesam_pl.models.checkpoint import load_or_random

                m, _ = load_or_random(self.args.ckpt, "litesam", seed=self.args.seed, img_size=self.res)
                if self.args.ckpt:
                    if int(m.image_encoder.img_size) != self.res:
                        print(f"note: --ckpt model has img_size {m.image_encoder.img_size}; building one at {self.res} "
                              "with the same weights", file=sys.stderr)
                        from litesam_pl.models.registry import model_config

                        cfg = model_config(m)
                        m2 = litesam_pl.create_model(cfg["name"], **{**cfg["kwargs"], "img_size": self.res})
                        m2.load_state_dict(m.state_dict(), strict=False)
                        m = m2
            elif kind == "sam_b":
                m = litesam_pl.create_model("sam_vit_b", img_size=self.res)
            else:
                raise KeyError(kind)
            self._models[kind] = m.eval().to(self.device)
        return self._models[kind]

    def _amp(self):
        return torch.autocast(self.device.type, dtype=self.dtype) if self.dtype is not None else nullcontext()

    def _segevery(self, kind: str, prompts: str, image: np.ndarray, warm: bool = False) -> Dict[str, Any]:
        """One ``SegEvery.run``: the option flags (``SegEveryOptions.from_args``) with the row's prompts."""
        from litesam_pl.inference.segevery import SegEvery, SegEveryOptions

        row = dict(prompts=prompts, points_per_side=self.points_per_side, output_mode="binary_mask",
                   autocast_dtype=self.dtype, score_threshold=0.0 if self.random_weights else None)
        options = SegEveryOptions.from_args(self.args).replace(**{**row, **(WARM_UP if warm else {})})
        segevery = SegEvery(self.model(kind), options)
        laps = Laps(self.device)
        result = segevery.run(image)
        return {"total": laps.lap(), "phases": result.timings, "prompts": result.stats["prompts"][0],
                "masks": len(result.masks)}

    def _amg(self, kind: str, image: np.ndarray, warm: bool = False) -> Dict[str, Any]:
        from segment_anything import SamAutomaticMaskGenerator

        model = self.model(kind)
        side = WARM_UP["points_per_side"] if warm else self.points_per_side
        amg = SamAutomaticMaskGenerator(model, points_per_side=side, pred_iou_thresh=self.args.pred_iou_thresh,
                                        stability_score_thresh=self.args.stability_score_thresh)
        # SAM's AMG utilities call .numpy() on the decoder's outputs (bf16 has no numpy dtype): under autocast, cast
        # them to fp32 as our pipeline does, so only the networks run in bf16 (registered first: timed as decoder).
        cast = model.mask_decoder.register_forward_hook(_fp32_outputs)
        timer = ModuleTimer({"encoder": model.image_encoder, "prompts": model.prompt_encoder,
                             "decoder": model.mask_decoder}, self.device)
        try:
            laps = Laps(self.device)
            with torch.no_grad(), self._amp():
                recs = amg.generate(image)
            total = laps.lap()
        finally:
            timer.close()
            cast.remove()
        phases = dict(timer.totals)
        phases["postprocess"] = max(0.0, total - sum(phases.values()))
        return {"total": total, "phases": phases, "prompts": amg.point_grids[0].shape[0], "masks": len(recs)}

    def _decoder(self, which: str, image: np.ndarray, warm: bool = False) -> Dict[str, Any]:
        """One decoder call (chunked by ``--decoder-chunk``) on the image's 256 AutoPPN prompts."""
        from litesam_pl.inference.fast_decoder import FastMaskDecoder, embed_prompts, stock_decode
        from litesam_pl.inference.sam_compat import as_image_list, preprocess_images
        from litesam_pl.inference.segevery_prompts import autoppn_prompts, prompt_tensors

        model = self.model("litesam")
        with torch.no_grad(), self._amp():
            imgs, _ = as_image_list(image)
            prep = preprocess_images(model, imgs, self.device)
            emb = model.image_encoder(prep.pixels)
            top_n = WARM_UP["top_n"] if warm else self.args.top_n
            pr = autoppn_prompts(model, emb, prep.input_sizes, top_n, 0.0, 3)[0]
            coords, labels = prompt_tensors(pr["points"], pr["boxes"], "point+box")
            sparse = embed_prompts(model.prompt_encoder, coords, labels)
            n = sparse.shape[0]
            chunk = self.args.decoder_chunk or n
            fast = FastMaskDecoder(model.mask_decoder, model.prompt_encoder)

            def run_stock():
                outs = [stock_decode(model.mask_decoder, model.prompt_encoder, emb, sparse[i:i + chunk], True)
                        for i in range(0, n, chunk)]
                return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])

            def run_ours():
                return fast.decode(emb, sparse, True, chunk_size=chunk)

            fn = run_stock if which == "stock" else run_ours
            laps = Laps(self.device)
            masks, iou = fn()
            total = laps.lap()
            if which == "ours" and self.args.check_decoder and not warm and not self.decoder_diffs:  # first image
                ref_m, ref_i = run_stock()  # (one more stock call: checked on the first timed image only)
                self.decoder_diffs.append(float(max((masks.float() - ref_m.float()).abs().max(),
                                                    (iou.float() - ref_i.float()).abs().max())))
        return {"total": total, "phases": {"decoder": total}, "prompts": n, "masks": int(masks.shape[0] * masks.shape[1])}

    def runner(self, method: str) -> Callable[..., Dict[str, Any]]:
        """``fn(image, warm=False)``; ``warm=True`` runs the same code path with few prompts (warm-up)."""
        return {
            "litesam_autoppn": lambda im, warm=False: self._segevery("litesam", "autoppn", im, warm),
            "litesam_grid32": lambda im, warm=False: self._segevery("litesam", "grid", im, warm),
            "litesam_amg32": lambda im, warm=False: self._amg("litesam", im, warm),
            "sam_b_amg32": lambda im, warm=False: self._amg("sam_b", im, warm),
            "sam_b_autoppn": lambda im, warm=False: self._segevery("sam_b", "autoppn", im, warm),
            "decoder_stock": lambda im, warm=False: self._decoder("stock", im, warm),
            "decoder_ours": lambda im, warm=False: self._decoder("ours", im, warm),
            "litesam_autoppn_ort": lambda im, warm=False: self._ort_row(im, warm),
            "litesam_onnx_example": lambda im, warm=False: self._example_row(im, warm),
        }[method]


def run_config(args: argparse.Namespace, device: torch.device, res: int, *,
               photos: Optional[List[Tuple[str, np.ndarray]]] = None, rounds: int = 1, points_per_side: int = 32,
               full_warmup: bool = False) -> List[Dict[str, Any]]:
    """All requested methods at one (device, resolution), interleaved image by image.

    ``photos`` (name, RGB image) replaces ``load_photos(args.images, res, ...)``; ``rounds`` passes over them (the
    order of the methods alternates from one image to the next across rounds); ``points_per_side`` is the grid
    rows' side; ``full_warmup`` warms up with the timed settings instead of a few prompts. The defaults are
    ``python -m benchmarks.segevery``'s protocol; ``benchmarks.ci`` sets them all.
    """
    bench = Bench(args, device, res, points_per_side=points_per_side)
    try:
        return _run_config(args, device, res, bench, photos, rounds, full_warmup)
    finally:
        bench.close()


def _image_limits(args: argparse.Namespace, device: torch.device) -> Dict[str, int]:
    """Images per method: ``--images``; the SAM-B rows ``--sam-images`` (2 on CPU), the AMG and stock-decoder rows
    ``--heavy-images``."""
    sam_images = args.sam_images if args.sam_images is not None else (2 if device.type == "cpu" else args.images)
    return {m: (min(sam_images, args.images) if m.startswith("sam_b") else
                min(args.heavy_images or args.images, args.images) if m in ("litesam_amg32", "decoder_stock")
                else args.images) for m in args.methods}


def _run_config(args: argparse.Namespace, device: torch.device, res: int, bench: Bench,
                photos: Optional[List[Tuple[str, np.ndarray]]], rounds: int, full_warmup: bool) -> List[Dict[str, Any]]:
    from tqdm import tqdm

    if photos is None:
        try:
            photos = load_photos(args.images, res, Path(args.shared) / "data" if args.shared else None)
        except Exception as exc:  # no images: every row of this configuration fails alike
            return [failed_row(args, device, res, m, error_text(exc), stage="images") for m in args.methods]
    limits = _image_limits(args, device)
    results: Dict[str, List[Dict[str, Any]]] = {m: [] for m in args.methods}
    runners = {m: bench.runner(m) for m in args.methods}
    errors: Dict[str, Tuple[str, str]] = {}  # method -> (error, stage); a failed method is not run again

    def attempt(m: str, name: str, img: np.ndarray, warm: bool = False) -> Optional[Dict[str, Any]]:
        try:
            return runners[m](img, warm=warm)
        except Exception as exc:
            stage = "warm-up" if warm else name
            errors[m] = (error_text(exc), stage)
            print(f"segevery {device.type} r{res}: {m} failed ({stage}): {errors[m][0]}", file=sys.stderr)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            return None

    for m in args.methods:  # warm-up: model build, allocator, kernels (same code path, few prompts unless full)
        attempt(m, photos[0][0], photos[0][1], warm=not full_warmup)
    turns = [(i, name, img) for _ in range(rounds) for i, (name, img) in enumerate(photos)]
    with tqdm(total=sum(limits.values()) * rounds, desc=f"segevery {device.type} r{res}", unit="run",
              disable=None) as bar:
        for (i, name, img), m in interleaved(turns, args.methods):  # image by image, every method in turn
            if i >= limits[m] or m in errors:
                continue
            r = attempt(m, name, img)
            if r is None:
                continue
            r["image"] = name
            results[m].append(r)
            bar.update(1)
            bar.set_postfix_str(f"{m} {r['total'] * 1e3:.0f} ms")
    return _rows(args, device, res, bench, results, errors)


def _rows(args: argparse.Namespace, device: torch.device, res: int, bench: Bench,
          results: Dict[str, List[Dict[str, Any]]], errors: Dict[str, Tuple[str, str]]) -> List[Dict[str, Any]]:
    """The configuration's JSON rows in ``--methods`` order: measured, or failed with the runs made before."""
    rows = []
    for m in args.methods:
        rs = results[m]
        if m in errors:
            row = failed_row(args, device, res, m, errors[m][0], stage=errors[m][1])
            row.update(images=len(rs), per_image_ms=[r["total"] * 1e3 for r in rs], random_weights=bench.random_weights)
            rows.append(row)
        elif rs:
            rows.append(measured_row(m, rs, device, res, bench))
    return rows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.segevery", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--device", nargs="+", default=["cpu"], choices=["cpu", "cuda"],
                   help="devices (default cpu; cuda rows run in bf16 autocast unless --dtype fp32)")
    p.add_argument("--resolution", nargs="+", type=int, action="extend", default=None,
                   help="input sides, repeatable (default 640 1024)")
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS,
                   help="rows to run (default: all but the ONNX Runtime row litesam_autoppn_ort)")
    p.add_argument("--images", type=int, default=20, help="images per row (default 20)")
    p.add_argument("--sam-images", type=int, default=None, help="images for sam_b rows (default 2 on CPU)")
    p.add_argument("--heavy-images", type=int, default=None,
                   help="images for litesam_amg32 and decoder_stock (default: --images)")
    p.add_argument("--ckpt", help="Lite-SAM export/checkpoint (random weights when absent)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch (and onnxruntime) intra-op threads on CPU (default: torch's)")
    p.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16", help="CUDA autocast dtype (default bf16)")
    # SegEvery's own options (the AMG rows take the two filters too): SegEveryOptions' defaults, SAM AMG's filters
    add_option_flags(p, ("top_n", "pred_iou_thresh", "stability_score_thresh"))
    p.add_argument("--decoder-chunk", type=int, default=0,
                   help="prompts per call in the decoder rows (default 0: all 256 in one call)")
    p.add_argument("--no-check-decoder", dest="check_decoder", action="store_false",
                   help="skip the decoder_ours vs stock output check")
    p.add_argument("--shared", default=os.environ.get("LITESAM_SHARED", str(Path(__file__).resolve().parents[2] / "shared")),
                   help="the shared folder with data/ (default ../shared)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write {'rows': [...], 'speedups': {...}, 'meta': {...}} here")
    return p


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = build_parser().parse_args(argv)
    args.resolution = args.resolution or [640, 1024]
    if args.threads:
        torch.set_num_threads(args.threads)
    rows: List[Dict[str, Any]] = []

    def summary(complete: bool) -> Dict[str, Any]:
        return {
            "rows": rows,
            "speedups": speedups(rows),
            "failed": [f"{r['device']}/r{r['resolution']}/{r['method']}" for r in rows if r.get("error")],
            "meta": {
                "command": " ".join([os.path.basename(sys.executable), "-m", "benchmarks.segevery"]
                                    + list(sys.argv[1:] if argv is None else argv)),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "cpu": platform.processor() or platform.machine(),
                "cpu_count": os.cpu_count(),
                "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                "random_weights": not args.ckpt,
                "complete": complete,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        }

    for dev in args.device:
        if dev == "cuda" and not torch.cuda.is_available():
            print("CUDA not available: skipping the cuda rows", file=sys.stderr)
            continue
        for res in args.resolution:
            device = torch.device(dev)
            try:
                rows.extend(run_config(args, device, res))
            except Exception as exc:  # outside any one row (set-up): the whole configuration fails, the run goes on
                err = error_text(exc)
                print(f"segevery {dev} r{res}: configuration failed: {err}", file=sys.stderr)
                rows.extend(failed_row(args, device, res, m, err, stage="configuration") for m in args.methods)
            if args.json:  # after every configuration: a crash or kill loses at most the one in progress
                write_json(args.json, summary(complete=False))
    out = summary(complete=True)
    print(table3(rows) if rows else "no rows")
    for k, v in out["speedups"].items():
        print(f"{k}: {v:.2f}x")
    if args.json:
        write_json(args.json, out)
        print(f"wrote {args.json}")
    if out["failed"]:
        print(f"{len(out['failed'])} row(s) failed: {', '.join(out['failed'])}", file=sys.stderr)
    publish("segevery", out)
    return out



def cli(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m benchmarks.segevery``: 0 when every row ran, 1 when any failed (its row holds the error)."""
    return 1 if main(argv)["failed"] else 0


if __name__ == "__main__":
    sys.exit(cli())
