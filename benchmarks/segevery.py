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
                         (``preprocess_images``), the score threshold, the prompt layout (``_prompt_tensors``) and
                         the post-processing (``_postprocess_image``: filters, mask NMS, upsampling) are the
                         PyTorch pipeline's own functions with ``segment_everything``'s defaults
``litesam_onnx_example`` the same sessions driven by ``examples/onnx_segment_everything.py``'s
                         ``segment_everything_onnx`` (numpy + OpenCV pre- and post-processing, no torch: what a
                         deployment without PyTorch runs; ``tests/test_onnx_example.py`` checks it against
                         ``segment_everything``)
=======================  =====================================================================================

The ORT row exports the bench's model (the ``--ckpt`` weights or the seeded random model) once per resolution
into a temporary folder (not timed; ``export_s`` in the row); its sessions run with ``intra_op_num_threads`` =
``--threads`` (torch's thread count without it) and one inter-op thread, so both runtimes get the same cores
(OpenCV's own threads in the example row are left as they are).
Its phases: ``preprocess``, ``encoder`` (encoder + AutoPPN + Point-NMS, one graph), ``prompts`` (score threshold
and prompt layout), ``decoder`` (prompt encoder + mask decoder, one graph) and ``postprocess``; PyTorch's
``prompts`` phase holds AutoPPN and the prompt encoder instead. On the first timed image the row checks itself
against PyTorch (``check_vs_pytorch``, not timed): the prompt count and points, the embeddings, the decoder's
low-res logits and IoU on the same prompts (``max_abs_diff``), and the final masks of ``segment_everything``
(count and pairwise IoU) with the row's thresholds and with the filters off (the example row: the final masks).
Without onnx / onnxruntime, or on
``--device cuda``, the row fails cleanly (``error``, one line) and the others run.

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
import json
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

ORT_METHODS = ("litesam_autoppn_ort", "litesam_onnx_example")
METHODS = ("litesam_autoppn", "litesam_grid32", "litesam_amg32", "sam_b_amg32", "sam_b_autoppn",
           "decoder_stock", "decoder_ours") + ORT_METHODS
DEFAULT_METHODS = tuple(m for m in METHODS if m not in ORT_METHODS)  # ORT rows: opt-in (optional extra, CPU only)
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "hubble_deep_field",
                  "immunohistochemistry", "retina", "moon", "cell", "colorwheel", "brick", "grass", "gravel")


# ---------------------------------------------------------------------------------------------- images
def _resize_long_side(img: np.ndarray, side: int) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    s = side / max(h, w)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp)


def load_photos(n: int, side: int, shared: Optional[Path] = None) -> List[Tuple[str, np.ndarray]]:
    """``n`` real photographs as RGB uint8, longer side ``side``: skimage.data first, then shared COCO/BSDS."""
    from litesam_pl.inference.images import load_image, to_rgb_uint8

    out: List[Tuple[str, np.ndarray]] = []
    try:
        import skimage.data as skd

        for name in SKIMAGE_PHOTOS:
            if len(out) >= n:
                break
            try:
                out.append((f"skimage:{name}", _resize_long_side(to_rgb_uint8(getattr(skd, name)()), side)))
            except Exception:  # a data file that would need a download: skip
                continue
    except ImportError:
        pass
    if shared is not None and len(out) < n:
        files: List[Path] = []
        for sub in ("coco2017_subset/val2017", "bsds500/images/test"):
            d = shared / sub
            if d.is_dir():
                files.extend(sorted(d.glob("*.jpg")))
        for f in files[: max(0, n - len(out))]:
            out.append((f"shared:{f.parent.parent.name}/{f.name}", _resize_long_side(load_image(f), side)))
    if not out:
        raise RuntimeError("no benchmark images found (scikit-image data or ../shared/data)")
    while len(out) < n:  # fewer photos than requested: cycle
        out.append(out[len(out) % max(1, len(out))])
    return out[:n]


# ---------------------------------------------------------------------------------------------- timing helpers
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class ModuleTimer:
    """Accumulates the wall time of ``module.forward`` calls (device synchronised) via forward hooks."""

    def __init__(self, modules: Dict[str, torch.nn.Module], device: torch.device) -> None:
        self.device = device
        self.totals: Dict[str, float] = {k: 0.0 for k in modules}
        self._start: Dict[str, float] = {}
        self._handles = []
        for name, mod in modules.items():
            self._handles.append(mod.register_forward_pre_hook(self._pre(name)))
            self._handles.append(mod.register_forward_hook(self._post(name)))

    def _pre(self, name: str):
        def hook(module, args):
            _sync(self.device)
            self._start[name] = time.perf_counter()
        return hook

    def _post(self, name: str):
        def hook(module, args, out):
            _sync(self.device)
            self.totals[name] += time.perf_counter() - self._start.pop(name)
        return hook

    def reset(self) -> None:
        self.totals = {k: 0.0 for k in self.totals}

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def _error_text(exc: BaseException, limit: int = 400) -> str:
    """``"Type: message"`` on one line (whitespace collapsed, cut at ``limit`` characters)."""
    msg = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fp32_outputs(module: torch.nn.Module, args: Any, out: Any) -> Any:
    """Forward hook: floating-point tensor outputs (a tensor, or a tuple/list of them) cast to float32."""
    def cast(o: Any) -> Any:
        return o.float() if isinstance(o, torch.Tensor) and o.is_floating_point() else o

    if isinstance(out, (tuple, list)):
        return type(out)(cast(o) for o in out)
    return cast(out)


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


def _quantile(xs: Sequence[float], q: float) -> float:
    return float(np.quantile(np.asarray(xs, dtype=np.float64), q)) if xs else float("nan")


# ---------------------------------------------------------------------------------------------- methods
class Bench:
    """Models and per-method runners for one (device, resolution)."""

    def __init__(self, args: argparse.Namespace, device: torch.device, res: int) -> None:
        self.args = args
        self.device = device
        self.res = res
        self.dtype = autocast_dtype(args, device)
        self._models: Dict[str, torch.nn.Module] = {}
        self.random_weights = not args.ckpt
        self.decoder_diffs: List[float] = []
        self._ort: Optional[Dict[str, Any]] = None  # ONNX export + onnxruntime sessions (built on first use)
        self.ort_info: Dict[str, Any] = {}  # export time, thread settings, versions (-> the ORT row)
        self.ort_check: Optional[Dict[str, Any]] = None  # agreement with PyTorch on the first timed image
        self.example_check: Optional[Dict[str, Any]] = None  # the same for the example's numpy pipeline
        self._example: Any = None

    def close(self) -> None:
        """Remove the ONNX export's temporary folder."""
        if self._ort is not None:
            self._ort["tmp"].cleanup()
            self._ort = None

    def model(self, kind: str) -> torch.nn.Module:
        if kind not in self._models:
            import litesam_pl

            torch.manual_seed(self.args.seed)
            if kind == "litesam":
                if self.args.ckpt:
                    m = litesam_pl.load_model(self.args.ckpt)
                    if int(m.image_encoder.img_size) != self.res:
                        print(f"note: --ckpt model has img_size {m.image_encoder.img_size}; building one at {self.res} "
                              "with the same weights", file=sys.stderr)
                        from litesam_pl.models.registry import model_config

                        cfg = model_config(m)
                        m2 = litesam_pl.create_model(cfg["name"], **{**cfg["kwargs"], "img_size": self.res})
                        m2.load_state_dict(m.state_dict(), strict=False)
                        m = m2
                else:
                    m = litesam_pl.create_model("litesam", img_size=self.res)
            elif kind == "sam_b":
                m = litesam_pl.create_model("sam_vit_b", img_size=self.res)
            else:
                raise KeyError(kind)
            self._models[kind] = m.eval().to(self.device)
        return self._models[kind]

    def _amp(self):
        return torch.autocast(self.device.type, dtype=self.dtype) if self.dtype is not None else nullcontext()

    def _segevery(self, kind: str, prompts: str, image: np.ndarray, warm: bool = False) -> Dict[str, Any]:
        from litesam_pl.inference.segevery import segment_everything

        model = self.model(kind)
        phases: Dict[str, float] = {}
        stats: Dict[str, Any] = {}
        kw: Dict[str, Any] = dict(prompts=prompts, top_n=16 if warm else self.args.top_n,
                                  points_per_side=4 if warm else 32, timings=phases,
                                  stats=stats, output_mode="binary_mask", autocast_dtype=self.dtype,
                                  pred_iou_thresh=self.args.pred_iou_thresh,
                                  stability_score_thresh=self.args.stability_score_thresh)
        if self.random_weights:
            kw["score_threshold"] = 0.0
        _sync(self.device)
        t0 = time.perf_counter()
        recs = segment_everything(model, image, **kw)
        _sync(self.device)
        total = time.perf_counter() - t0
        return {"total": total, "phases": phases, "prompts": stats["prompts"][0], "masks": len(recs)}

    def _amg(self, kind: str, image: np.ndarray, warm: bool = False) -> Dict[str, Any]:
        from segment_anything import SamAutomaticMaskGenerator

        model = self.model(kind)
        amg = SamAutomaticMaskGenerator(model, points_per_side=4 if warm else 32,
                                        pred_iou_thresh=self.args.pred_iou_thresh,
                                        stability_score_thresh=self.args.stability_score_thresh)
        # SAM's AMG utilities call .numpy() on the decoder's outputs (bf16 has no numpy dtype): under autocast, cast
        # them to fp32 as our pipeline does, so only the networks run in bf16 (registered first: timed as decoder).
        cast = model.mask_decoder.register_forward_hook(_fp32_outputs)
        timer = ModuleTimer({"encoder": model.image_encoder, "prompts": model.prompt_encoder,
                             "decoder": model.mask_decoder}, self.device)
        try:
            _sync(self.device)
            t0 = time.perf_counter()
            with torch.no_grad(), self._amp():
                recs = amg.generate(image)
            _sync(self.device)
            total = time.perf_counter() - t0
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
        from litesam_pl.inference.segevery import _autoppn_prompts, _prompt_tensors

        model = self.model("litesam")
        with torch.no_grad(), self._amp():
            imgs, _ = as_image_list(image)
            prep = preprocess_images(model, imgs, self.device)
            emb = model.image_encoder(prep.pixels)
            pr = _autoppn_prompts(model, emb, prep.input_sizes, 16 if warm else self.args.top_n, 0.0, 3)[0]
            coords, labels = _prompt_tensors(pr["points"], pr["boxes"], "point+box")
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
            _sync(self.device)
            t0 = time.perf_counter()
            masks, iou = fn()
            _sync(self.device)
            total = time.perf_counter() - t0
            if which == "ours" and self.args.check_decoder and not warm and not self.decoder_diffs:  # first image
                ref_m, ref_i = run_stock()  # (one more stock call: checked on the first timed image only)
                self.decoder_diffs.append(float(max((masks.float() - ref_m.float()).abs().max(),
                                                    (iou.float() - ref_i.float()).abs().max())))
        return {"total": total, "phases": {"decoder": total}, "prompts": n, "masks": int(masks.shape[0] * masks.shape[1])}

    # ------------------------------------------------------------------------------------------ ONNX Runtime
    def ort_sessions(self) -> Dict[str, Any]:
        """Export the bench's Lite-SAM (``export_onnx``, a CPU fp32 copy, ``--top-n`` prompts) to a temporary
        folder once and open onnxruntime CPU sessions with ``--threads`` intra-op threads (not timed)."""
        if self._ort is None:
            import copy
            import tempfile

            if self.device.type != "cpu":
                raise RuntimeError("the ONNX Runtime rows run on the CPU only (CPUExecutionProvider); use --device cpu")
            from litesam_pl.inference.export import _require_onnx, export_onnx

            _require_onnx(check=True)  # ImportError, one line: what to install
            import onnxruntime as ort

            model = self.model("litesam")
            tmp = tempfile.TemporaryDirectory(prefix="segevery-onnx-")
            try:
                t0 = time.perf_counter()
                export_onnx(copy.deepcopy(model).cpu().float(), tmp.name, top_n=self.args.top_n, check=False)
                export_s = time.perf_counter() - t0
                threads = int(self.args.threads or torch.get_num_threads())
                so = ort.SessionOptions()
                so.intra_op_num_threads = threads
                so.inter_op_num_threads = 1
                so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                enc, dec = (ort.InferenceSession(str(Path(tmp.name) / f), sess_options=so,
                                                 providers=["CPUExecutionProvider"])
                            for f in ("encoder.onnx", "decoder.onnx"))
            except BaseException:
                tmp.cleanup()
                raise
            if "input_size" not in [i.name for i in enc.get_inputs()]:
                tmp.cleanup()
                raise ValueError("encoder.onnx has no AutoPPN outputs (a model without AutoPPN)")
            self._ort = {"tmp": tmp, "encoder": enc, "decoder": dec,
                         "enc_names": [o.name for o in enc.get_outputs()]}
            self.ort_info = {"export_s": export_s, "ort_intra_op_threads": threads, "ort_inter_op_threads": 1,
                             "onnxruntime": ort.__version__, "providers": enc.get_providers(),
                             "opset": 17, "top_n_exported": int(self.args.top_n)}
        return self._ort

    def _segevery_options(self) -> Dict[str, Any]:
        """``segment_everything``'s keyword defaults with the bench's thresholds (what the PyTorch row runs)."""
        import inspect

        from litesam_pl.inference.segevery import segment_everything

        opts = {k: p.default for k, p in inspect.signature(segment_everything).parameters.items()
                if p.default is not inspect.Parameter.empty}
        opts.update(pred_iou_thresh=self.args.pred_iou_thresh, stability_score_thresh=self.args.stability_score_thresh,
                    top_n=self.args.top_n, score_threshold=0.0 if self.random_weights else opts["score_threshold"])
        return opts

    def _ort_segevery(self, image: np.ndarray, warm: bool = False, output_mode: str = "binary_mask",
                      opts: Optional[Dict[str, Any]] = None, keep: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """The ``litesam_autoppn`` pipeline with encoder+AutoPPN and decoder run by onnxruntime; pre- and
        post-processing are ``segment_everything``'s own functions. ``keep`` (a dict) receives the intermediate
        arrays (for the check)."""
        from litesam_pl.inference.sam_compat import as_image_list, preprocess_images
        from litesam_pl.inference.segevery import (
            _postprocess_image, _prompt_tensors, _score_threshold_used, multimask_output_for,
        )

        sess = self.ort_sessions()
        model = self.model("litesam")
        o = opts or self._segevery_options()
        form = o["prompt_type"]
        multimask = o["multimask_output"] if o["multimask_output"] is not None else multimask_output_for(form)
        k = int(model.mask_decoder.num_mask_tokens)
        tokens = list(range(1, k)) if multimask else [0]
        size = int(model.image_encoder.img_size)
        thr = _score_threshold_used(model, o["score_threshold"])
        phases: Dict[str, float] = {}
        t0 = time.perf_counter()
        with torch.no_grad():
            imgs, _ = as_image_list(image)
            prep = preprocess_images(model, imgs, torch.device("cpu"))
            pixels = prep.pixels.numpy()
            in_hw = prep.input_sizes[0]
            t1 = time.perf_counter()
            enc = dict(zip(sess["enc_names"], sess["encoder"].run(
                None, {"image": pixels, "input_size": np.asarray(in_hw, dtype=np.int64)})))
            t2 = time.perf_counter()
            ok = enc["valid"][0] & (enc["scores"][0] >= (thr or 0.0))
            if warm:
                ok &= np.cumsum(ok) <= 16
            points = torch.from_numpy(np.ascontiguousarray(enc["points"][0][ok]))
            boxes = torch.from_numpy(np.ascontiguousarray(enc["boxes"][0][ok]))
            scores = torch.from_numpy(np.ascontiguousarray(enc["scores"][0][ok]))
            coords, labels = _prompt_tensors(points, boxes, form)
            coords_np = coords.float().contiguous().numpy()
            labels_np = labels.float().contiguous().numpy()
            n = int(points.shape[0])
            t3 = time.perf_counter()
            if n:
                low_all, iou_all = sess["decoder"].run(None, {"image_embeddings": enc["image_embeddings"],
                                                               "point_coords": coords_np, "point_labels": labels_np})
            else:
                low_all = np.zeros((0, k, size // 4, size // 4), np.float32)
                iou_all = np.zeros((0, k), np.float32)
            low = torch.from_numpy(np.ascontiguousarray(low_all[:, tokens]))
            iou = torch.from_numpy(np.ascontiguousarray(iou_all[:, tokens]))
            t4 = time.perf_counter()
            out = _postprocess_image(
                low, iou, torch.arange(n), points, scores, in_hw, prep.original_sizes[0], size,
                float(getattr(model, "mask_threshold", 0.0)), o["pred_iou_thresh"], o["stability_score_thresh"],
                o["stability_score_offset"], o["box_nms_thresh"], o["nms"], o["nms_resolution"], o["rank_by"],
                o["max_masks"], output_mode, False, None,
            )
            t5 = time.perf_counter()
        phases.update(preprocess=t1 - t0, encoder=t2 - t1, prompts=t3 - t2, decoder=t4 - t3, postprocess=t5 - t4)
        if keep is not None:
            keep.update(prep=prep, enc=enc, points=points, scores=scores, coords=coords, labels=labels,
                        low_all=low_all, iou_all=iou_all, out=out)
        masks = len(out["masks"]) if output_mode == "tensors" else len(out)
        return {"total": t5 - t0, "phases": phases, "prompts": n, "masks": masks}

    def _ort_row(self, image: np.ndarray, warm: bool = False) -> Dict[str, Any]:
        r = self._ort_segevery(image, warm)
        if not warm and self.ort_check is None:  # first timed image: agreement with PyTorch (not timed)
            self.ort_check = self.ort_check_vs_pytorch(image)
        return r

    @torch.no_grad()
    def ort_check_vs_pytorch(self, image: np.ndarray) -> Dict[str, Any]:
        """ORT against PyTorch on one image: prompts, embeddings, decoder logits on the same prompts, and the
        final masks of ``segment_everything`` (count, pairwise IoU) with the row's thresholds and filters off."""
        from litesam_pl.inference.export import DecoderOnnx
        from litesam_pl.inference.segevery import _autoppn_prompts, _score_threshold_used

        model = self.model("litesam")
        o = self._segevery_options()
        kept: Dict[str, Any] = {}
        self._ort_segevery(image, output_mode="tensors", opts=o, keep=kept)
        prep = kept["prep"]
        emb = model.image_encoder(prep.pixels)
        thr = _score_threshold_used(model, o["score_threshold"])
        pr = _autoppn_prompts(model, emb, prep.input_sizes, o["top_n"], thr, o["nms_kernel"])[0]
        n_ort = int(kept["points"].shape[0])
        check: Dict[str, Any] = {
            "image": "first timed image",
            "prompts_pytorch": int(pr["points"].shape[0]), "prompts_ort": n_ort,
            "max_abs_diff": {"image_embeddings": float((emb - torch.from_numpy(kept["enc"]["image_embeddings"]))
                                                       .abs().max())},
        }
        if int(pr["points"].shape[0]) == n_ort:
            # order-free (equal scores may be ranked differently by the two top-k's): sorted by (x, y) / by score
            def by_xy(pts: torch.Tensor) -> np.ndarray:
                a = pts.float().numpy()
                return a[np.lexsort((a[:, 1], a[:, 0]))]

            check["max_abs_diff"]["points"] = float(np.abs(by_xy(pr["points"]) - by_xy(kept["points"])).max()) \
                if n_ort else 0.0
            check["max_abs_diff"]["ppn_scores"] = float((pr["scores"].float().sort().values
                                                         - kept["scores"].float().sort().values).abs().max()) \
                if n_ort else 0.0
        if n_ort:  # PyTorch's prompt + mask decoder (the exported module) on the ORT prompts and PyTorch's embeddings
            ref_low, ref_iou = DecoderOnnx(model).eval()(emb, kept["coords"].float(), kept["labels"].float())
            check["max_abs_diff"]["decoder_low_res_logits"] = float(
                (ref_low - torch.from_numpy(kept["low_all"])).abs().max())
            check["max_abs_diff"]["decoder_iou_predictions"] = float(
                (ref_iou - torch.from_numpy(kept["iou_all"])).abs().max())
        check["row_thresholds"] = self._vs_segevery(image, o, kept["out"]["masks"], kept["out"]["iou_preds"])
        off = dict(o, pred_iou_thresh=0.0, stability_score_thresh=0.0)
        kept_off: Dict[str, Any] = {}
        self._ort_segevery(image, output_mode="tensors", opts=off, keep=kept_off)
        check["filters_off"] = self._vs_segevery(image, off, kept_off["out"]["masks"], kept_off["out"]["iou_preds"])
        rt, fo = check["row_thresholds"], check["filters_off"]
        check["agrees"] = bool(
            check["prompts_pytorch"] == check["prompts_ort"]
            and rt["masks_pytorch"] == rt["masks_ort"] and fo["masks_pytorch"] == fo["masks_ort"]
            and all(r.get("mask_iou_min", 1.0) >= 0.99 for r in (rt, fo))
        )
        return check

    @torch.no_grad()
    def _vs_segevery(self, image: np.ndarray, opts: Dict[str, Any], masks: torch.Tensor,
                     iou_preds: torch.Tensor) -> Dict[str, Any]:
        """Final masks (bool ``[K, H, W]``) against ``segment_everything``'s with the same options: the counts,
        each mask's best-twin IoU (min, median), the most pixels a mask differs by, the sorted predicted IoUs."""
        from litesam_pl.inference.segevery import segment_everything

        kw = {k: v for k, v in opts.items() if k not in ("output_mode", "timings", "stats", "return_logits")}
        ref = segment_everything(self.model("litesam"), image, output_mode="tensors", **kw)
        a, b = torch.as_tensor(masks), ref["masks"]
        res: Dict[str, Any] = {"masks_pytorch": int(b.shape[0]), "masks_ort": int(a.shape[0])}
        if a.shape[0] and b.shape[0]:
            fa, fb = a.flatten(1).float(), b.flatten(1).float()
            inter = fa @ fb.t()
            union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
            iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter))
            res["mask_iou_min"] = float(min(iou.max(1).values.min(), iou.max(0).values.min()))  # best twins
            res["mask_iou_median"] = float(iou.max(1).values.median())
            res["pixels_differing_max"] = int((fa != fb[iou.argmax(1)]).sum(1).max())
            if a.shape[0] == b.shape[0]:  # order-free: the sorted predicted IoUs
                res["pred_iou_max_abs_diff"] = float((torch.as_tensor(iou_preds).float().sort().values
                                                      - ref["iou_preds"].float().sort().values).abs().max())
        return res

    def example_module(self) -> Any:
        """``examples/onnx_segment_everything.py`` (numpy + OpenCV + onnxruntime), loaded once."""
        if self._example is None:
            import importlib.util

            path = Path(__file__).resolve().parents[1] / "examples" / "onnx_segment_everything.py"
            spec = importlib.util.spec_from_file_location("onnx_segment_everything", path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            self._example = mod
        return self._example

    def _example_options(self, o: Dict[str, Any]) -> Dict[str, Any]:
        """``segment_everything`` options -> the example's ``segment_everything_onnx`` keywords."""
        from litesam_pl.inference.segevery import _score_threshold_used

        if o["rank_by"] != "iou" or o["multimask_output"] is not None:
            raise ValueError("the ONNX example ranks by predicted IoU with the prompt form's own mask tokens")
        return dict(prompt_form=o["prompt_type"],
                    score_thresh=_score_threshold_used(self.model("litesam"), o["score_threshold"]) or 0.0,
                    pred_iou_thresh=o["pred_iou_thresh"], stability_score_thresh=o["stability_score_thresh"],
                    stability_score_offset=o["stability_score_offset"], nms=o["nms"], nms_thresh=o["box_nms_thresh"],
                    nms_resolution=o["nms_resolution"], max_masks=o["max_masks"])

    def _example_row(self, image: np.ndarray, warm: bool = False) -> Dict[str, Any]:
        """``examples/onnx_segment_everything.py``'s ``segment_everything_onnx`` (no torch) on the same sessions."""
        sess = self.ort_sessions()
        ex = self.example_module()
        o = self._segevery_options()
        phases: Dict[str, float] = {}
        t0 = time.perf_counter()
        res = ex.segment_everything_onnx(image, sess["encoder"], sess["decoder"], timings=phases,
                                         **self._example_options(o))
        total = time.perf_counter() - t0
        if not warm and self.example_check is None:  # first timed image: agreement with PyTorch (not timed)
            off = dict(o, pred_iou_thresh=0.0, stability_score_thresh=0.0)
            res_off = ex.segment_everything_onnx(image, sess["encoder"], sess["decoder"], **self._example_options(off))
            self.example_check = {
                "image": "first timed image",
                "row_thresholds": self._vs_segevery(image, o, torch.from_numpy(res["masks"]),
                                                    torch.from_numpy(res["iou_preds"])),
                "filters_off": self._vs_segevery(image, off, torch.from_numpy(res_off["masks"]),
                                                 torch.from_numpy(res_off["iou_preds"])),
            }
            self.example_check["agrees"] = all(
                c["masks_pytorch"] == c["masks_ort"] and c.get("mask_iou_min", 1.0) >= 0.99
                for c in (self.example_check["row_thresholds"], self.example_check["filters_off"]))
        return {"total": total, "phases": phases, "prompts": res["prompts"], "masks": len(res["masks"])}

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


def run_config(args: argparse.Namespace, device: torch.device, res: int) -> List[Dict[str, Any]]:
    """All requested methods at one (device, resolution), interleaved image by image."""
    bench = Bench(args, device, res)
    try:
        return _run_config(args, device, res, bench)
    finally:
        bench.close()


def _run_config(args: argparse.Namespace, device: torch.device, res: int, bench: Bench) -> List[Dict[str, Any]]:
    from tqdm import tqdm

    try:
        photos = load_photos(args.images, res, Path(args.shared) / "data" if args.shared else None)
    except Exception as exc:  # no images: every row of this configuration fails alike
        return [failed_row(args, device, res, m, _error_text(exc), stage="images") for m in args.methods]
    sam_images = args.sam_images if args.sam_images is not None else (2 if device.type == "cpu" else args.images)
    limits = {m: (min(sam_images, args.images) if m.startswith("sam_b") else
                  min(args.heavy_images or args.images, args.images) if m in ("litesam_amg32", "decoder_stock")
                  else args.images) for m in args.methods}
    results: Dict[str, List[Dict[str, Any]]] = {m: [] for m in args.methods}
    runners = {m: bench.runner(m) for m in args.methods}
    errors: Dict[str, Tuple[str, str]] = {}  # method -> (error, stage); a failed method is not run again

    def attempt(m: str, name: str, img: np.ndarray, warm: bool = False) -> Optional[Dict[str, Any]]:
        try:
            return runners[m](img, warm=warm)
        except Exception as exc:
            stage = "warm-up" if warm else name
            errors[m] = (_error_text(exc), stage)
            print(f"segevery {device.type} r{res}: {m} failed ({stage}): {errors[m][0]}", file=sys.stderr)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            return None

    for m in args.methods:  # warm-up: model build, allocator, kernels (same code path, few prompts)
        attempt(m, photos[0][0], photos[0][1], warm=True)
    total_runs = sum(limits.values())
    with tqdm(total=total_runs, desc=f"segevery {device.type} r{res}", unit="run", disable=None) as bar:
        for i, (name, img) in enumerate(photos):
            order = args.methods if i % 2 == 0 else list(reversed(args.methods))  # alternate the order
            for m in order:
                if i >= limits[m] or m in errors:
                    continue
                r = attempt(m, name, img)
                if r is None:
                    continue
                r["image"] = name
                results[m].append(r)
                bar.update(1)
                bar.set_postfix_str(f"{m} {r['total'] * 1e3:.0f} ms")
    rows = []
    for m in args.methods:
        rs = results[m]
        if m in errors:
            row = failed_row(args, device, res, m, errors[m][0], stage=errors[m][1])
            row.update(images=len(rs), per_image_ms=[r["total"] * 1e3 for r in rs], random_weights=bench.random_weights)
            rows.append(row)
            continue
        if not rs:
            continue
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
            "median_ms": _quantile(totals, 0.5),
            "p90_ms": _quantile(totals, 0.9),
            "prompts": int(np.median([r["prompts"] for r in rs])),
            "masks": float(np.median([r["masks"] for r in rs])),
            "phases": {k: _quantile([r["phases"].get(k, 0.0) * 1e3 for r in rs], 0.5) for k in phase_names},
            "per_image_ms": totals,
            "random_weights": bench.random_weights,
        }
        if m == "decoder_ours" and bench.decoder_diffs:
            row["max_abs_diff_vs_stock"] = max(bench.decoder_diffs)
        if m in ORT_METHODS:
            row.update(bench.ort_info)
            row["check_vs_pytorch"] = bench.ort_check if m == "litesam_autoppn_ort" else bench.example_check
        rows.append(row)
    return rows


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
                out[f"{dev}/r{res}/{name}_paired_median"] = _quantile([a / b for a, b in zip(num, den)], 0.5)
    return out


def table3(rows: List[Dict[str, Any]]) -> str:
    """Rows shaped like the paper's Table 3 (model, sampling strategy, SegEvery time, speed-up)."""
    labels = {
        "sam_b_amg32": ("SAM-B", "Grid-Search (32 x 32), SAM AMG"),
        "sam_b_autoppn": ("SAM-B + AutoPPN", "AutoPPN (256 points)"),
        "litesam_amg32": ("LiteViT (Lite-SAM)", "Grid-Search (32 x 32), SAM AMG"),
        "litesam_grid32": ("LiteViT (Lite-SAM)", "Grid-Search (32 x 32), our batched path"),
        "litesam_autoppn": ("LiteViT + AutoPPN (Lite-SAM)", "AutoPPN (256 points)"),
        "decoder_stock": ("mask decoder only", "stock MaskDecoder, 256 prompts"),
        "decoder_ours": ("mask decoder only", "our batched decoder, 256 prompts"),
        "litesam_autoppn_ort": ("Lite-SAM + AutoPPN, ONNX Runtime", "AutoPPN (256 points), CPU provider"),
        "litesam_onnx_example": ("Lite-SAM + AutoPPN, ONNX example", "AutoPPN (256 points), numpy post-proc."),
    }
    base = {"sam_b_autoppn": "sam_b_amg32", "litesam_grid32": "litesam_amg32", "litesam_autoppn": "litesam_amg32",
            "decoder_ours": "decoder_stock", "litesam_autoppn_ort": "litesam_autoppn",
            "litesam_onnx_example": "litesam_autoppn"}
    by = {(r["device"], r["resolution"], r["method"]): r for r in rows}
    lines = []
    for dev, res in sorted({(r["device"], r["resolution"]) for r in rows}):
        lines.append(f"\n{dev}, r{res} ({by.get((dev, res, rows[0]['method']), rows[0])['dtype']}):")
        lines.append(f"| {'Model':30s} | {'Sampling Strategy':40s} | {'SegEvery Time (ms)':>18s} | {'p90 (ms)':>9s} "
                     f"| prompts | masks | images |")
        lines.append("|" + "-" * 32 + "|" + "-" * 42 + "|" + "-" * 20 + "|" + "-" * 11 + "|---------|-------|--------|")
        for m in METHODS:
            r = by.get((dev, res, m))
            if r is None:
                continue
            model, strat = labels[m]
            if r.get("error"):
                lines.append(f"| {model:30s} | {strat:40s} | {'FAILED':>18s} | {'-':>9s} | {'-':>7s} | {'-':>5s} "
                             f"| {r.get('images', 0):6d} |")
                continue
            t = f"{r['median_ms']:.0f}"
            b = by.get((dev, res, base.get(m, "")))
            if b is not None and not b.get("error"):
                t += f" ({b['median_ms'] / r['median_ms']:.1f}x up)"
            lines.append(f"| {model:30s} | {strat:40s} | {t:>18s} | {r['p90_ms']:9.0f} | {r['prompts']:7d} "
                         f"| {r['masks']:5.0f} | {r['images']:6d} |")
        for m in METHODS:
            r = by.get((dev, res, m))
            if r is not None and r.get("error"):
                lines.append(f"FAILED {m} ({r.get('failed_at') or '?'}): {r['error']}")
    return "\n".join(lines)


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
    p.add_argument("--top-n", type=int, default=256, help="AutoPPN prompts (default 256)")
    p.add_argument("--pred-iou-thresh", type=float, default=0.88, help="as SAM's AMG (default 0.88)")
    p.add_argument("--stability-score-thresh", type=float, default=0.95, help="as SAM's AMG (default 0.95)")
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
                err = _error_text(exc)
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


def write_json(path: str | Path, obj: Any) -> None:
    """``json.dumps(obj)`` to ``path`` atomically: a temporary file beside it, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=1))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def cli(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m benchmarks.segevery``: 0 when every row ran, 1 when any failed (its row holds the error)."""
    return 1 if main(argv)["failed"] else 0


if __name__ == "__main__":
    sys.exit(cli())
