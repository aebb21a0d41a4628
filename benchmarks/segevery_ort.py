"""The ONNX Runtime rows of ``benchmarks.segevery``: ``litesam_autoppn_ort`` and ``litesam_onnx_example``.

The ORT row exports the bench's model (the ``--ckpt`` weights or the seeded random model) once per resolution
into a temporary folder (not timed; ``export_s`` in the row); its sessions run with ``intra_op_num_threads`` =
``--threads`` (torch's thread count without it) and one inter-op thread, so both runtimes get the same cores
(OpenCV's own threads in the example row are left as they are).
Its phases: ``preprocess``, ``encoder`` (encoder + AutoPPN + Point-NMS, one graph), ``prompts`` (score threshold
and prompt layout), ``decoder`` (prompt encoder + mask decoder, one graph) and ``postprocess``; PyTorch's
``prompts`` phase holds AutoPPN and the prompt encoder instead. On the first timed image the row checks itself
against PyTorch (``check_vs_pytorch``, not timed): the prompt count and points, the embeddings, the decoder's
low-res logits and IoU on the same prompts (``max_abs_diff``), and the final masks of ``SegEvery``
(count and pairwise IoU) with the row's thresholds and with the filters off (the example row: the final masks).
Without onnx / onnxruntime, or on ``--device cuda``, the row fails cleanly (``error``, one line) and the others run.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

import numpy as np
import torch

from benchmarks.segevery_measure import WARM_UP
from benchmarks.toolkit.timing import Laps

if TYPE_CHECKING:
    from litesam_pl.inference.segevery_options import SegEveryOptions

ORT_METHODS = ("litesam_autoppn_ort", "litesam_onnx_example")


def _ort_prompts(enc: Dict[str, np.ndarray], thr: Optional[float], form: str, warm: bool) -> Dict[str, Any]:
    """``encoder.onnx``'s AutoPPN proposals (``enc``) with a score of at least ``thr`` (the warm-up: the first few),
    and their decoder prompts in ``form`` (``segevery_prompts.prompt_tensors``: ``coords``, ``labels``)."""
    from litesam_pl.inference.segevery_prompts import prompt_tensors

    ok = enc["valid"][0] & (enc["scores"][0] >= (thr or 0.0))
    if warm:
        ok &= np.cumsum(ok) <= WARM_UP["top_n"]
    pr = {k: torch.from_numpy(np.ascontiguousarray(enc[k][0][ok])) for k in ("points", "boxes", "scores")}
    pr["coords"], pr["labels"] = prompt_tensors(pr["points"], pr["boxes"], form)
    return pr


class OrtRows:
    """The ONNX Runtime runners of ``benchmarks.segevery.Bench`` (a mixin: it uses the bench's ``args``, ``device``,
    ``random_weights`` and ``model("litesam")``)."""

    def _init_ort(self) -> None:
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

    def ort_sessions(self) -> Dict[str, Any]:
        """Export the bench's Lite-SAM (``export_onnx``, a CPU fp32 copy, ``--top-n`` prompts) to a temporary
        folder once and open onnxruntime CPU sessions with ``--threads`` intra-op threads (not timed)."""
        if self._ort is None:
            import copy
            import tempfile

            if self.device.type != "cpu":
                raise RuntimeError("the ONNX Runtime rows run on the CPU only (CPUExecutionProvider); use --device cpu")
            from litesam_pl.inference.export import require_onnx, export_onnx

            require_onnx(check=True)  # ImportError, one line: what to install
            import onnxruntime as ort

            model = self.model("litesam")
            tmp = tempfile.TemporaryDirectory(prefix="segevery-onnx-")
            try:
                laps = Laps()
                export_onnx(copy.deepcopy(model).cpu().float(), tmp.name, top_n=self.args.top_n, check=False)
                export_s = laps.lap()
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

    def _segevery_options(self) -> "SegEveryOptions":
        """The options of the bench's flags (``SegEveryOptions.from_args``: what the PyTorch row runs)."""
        from litesam_pl.inference.segevery_options import SegEveryOptions

        options = SegEveryOptions.from_args(self.args)
        if self.random_weights:
            options = options.replace(score_threshold=0.0)
        return options

    def _ort_segevery(self, image: np.ndarray, warm: bool = False, output_mode: str = "binary_mask",
                      opts: Optional["SegEveryOptions"] = None, keep: Optional[Dict[str, Any]] = None
                      ) -> Dict[str, Any]:
        """The ``litesam_autoppn`` pipeline with encoder+AutoPPN and decoder run by onnxruntime; pre- and
        post-processing are ``SegEvery``'s own functions, one timed phase each, with the options ``opts`` (the
        bench's flags by default) and ``output_mode``. ``keep`` (a dict) receives the intermediate arrays (for the
        check)."""
        from litesam_pl.inference.sam_compat import as_image_list, preprocess_images
        from litesam_pl.inference.segevery_prompts import score_threshold_used
        from litesam_pl.models.prompt_forms import multimask_output_for

        sess, model = self.ort_sessions(), self.model("litesam")
        o = (opts or self._segevery_options()).replace(output_mode=output_mode, return_logits=False)
        multimask = o.multimask_output if o.multimask_output is not None else multimask_output_for(o.prompt_type)
        k = int(model.mask_decoder.num_mask_tokens)
        tokens = list(range(1, k)) if multimask else [0]
        thr = score_threshold_used(model, o.score_threshold)
        laps = Laps()
        with torch.no_grad():
            prep = preprocess_images(model, as_image_list(image)[0], torch.device("cpu"))
            laps.lap("preprocess")
            enc = dict(zip(sess["enc_names"], sess["encoder"].run(
                None, {"image": prep.pixels.numpy(), "input_size": np.asarray(prep.input_sizes[0], dtype=np.int64)})))
            laps.lap("encoder")
            pr = _ort_prompts(enc, thr, o.prompt_type, warm)
            laps.lap("prompts")
            low_all, iou_all = self._ort_decode(enc, pr, k)
            low, iou = (torch.from_numpy(np.ascontiguousarray(a[:, tokens])) for a in (low_all, iou_all))
            laps.lap("decoder")
            out = self._ort_postprocess(low, iou, pr, prep, o)
            laps.lap("postprocess")
        if keep is not None:
            keep.update(prep=prep, enc=enc, points=pr["points"], scores=pr["scores"], coords=pr["coords"],
                        labels=pr["labels"], low_all=low_all, iou_all=iou_all, out=out)
        masks = len(out["masks"]) if output_mode == "tensors" else len(out)
        return {"total": laps.total, "phases": laps.phases, "prompts": int(pr["points"].shape[0]), "masks": masks}

    def _ort_decode(self, enc: Dict[str, np.ndarray], pr: Dict[str, Any], k: int) -> Tuple[np.ndarray, np.ndarray]:
        """``decoder.onnx`` once over all prompts: low-res logits ``[N, k, S/4, S/4]`` and IoU ``[N, k]`` of all
        ``k`` mask tokens (empty arrays of those shapes without prompts)."""
        if not int(pr["points"].shape[0]):
            side = int(self.model("litesam").image_encoder.img_size) // 4
            return np.zeros((0, k, side, side), np.float32), np.zeros((0, k), np.float32)
        low_all, iou_all = self.ort_sessions()["decoder"].run(None, {
            "image_embeddings": enc["image_embeddings"], "point_coords": pr["coords"].float().contiguous().numpy(),
            "point_labels": pr["labels"].float().contiguous().numpy()})
        return low_all, iou_all

    def _ort_postprocess(self, low: torch.Tensor, iou: torch.Tensor, pr: Dict[str, Any], prep: Any,
                         o: "SegEveryOptions") -> Any:
        """``segevery_masks.postprocess_image`` (filters, mask NMS, upsampling) on the float32 decoder outputs of
        every prompt in ``pr`` with the options ``o``: its masks."""
        from litesam_pl.inference.segevery_masks import Decoded, postprocess_image

        model = self.model("litesam")
        decoded = Decoded(low, iou, torch.arange(int(pr["points"].shape[0])), None)
        return postprocess_image(
            decoded, pr, o, input_size=prep.input_sizes[0], output_size=prep.original_sizes[0],
            size=int(model.image_encoder.img_size), mask_threshold=float(getattr(model, "mask_threshold", 0.0)),
        ).masks

    def _ort_row(self, image: np.ndarray, warm: bool = False) -> Dict[str, Any]:
        r = self._ort_segevery(image, warm)
        if not warm and self.ort_check is None:  # first timed image: agreement with PyTorch (not timed)
            self.ort_check = self.ort_check_vs_pytorch(image)
        return r

    @torch.no_grad()
    def ort_check_vs_pytorch(self, image: np.ndarray) -> Dict[str, Any]:
        """ORT against PyTorch on one image: prompts, embeddings, decoder logits on the same prompts, and the
        final masks of ``SegEvery`` (count, pairwise IoU) with the row's thresholds and filters off."""
        from litesam_pl.inference.export import DecoderOnnx
        from litesam_pl.inference.segevery_prompts import autoppn_prompts, score_threshold_used

        model = self.model("litesam")
        o = self._segevery_options()
        kept: Dict[str, Any] = {}
        self._ort_segevery(image, output_mode="tensors", opts=o, keep=kept)
        prep = kept["prep"]
        emb = model.image_encoder(prep.pixels)
        thr = score_threshold_used(model, o.score_threshold)
        pr = autoppn_prompts(model, emb, prep.input_sizes, o.top_n, thr, o.nms_kernel)[0]
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
        off = o.replace(pred_iou_thresh=0.0, stability_score_thresh=0.0)
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
    def _vs_segevery(self, image: np.ndarray, opts: "SegEveryOptions", masks: torch.Tensor,
                     iou_preds: torch.Tensor) -> Dict[str, Any]:
        """Final masks (bool ``[K, H, W]``) against ``SegEvery``'s with the same options: the counts,
        each mask's best-twin IoU (min, median), the most pixels a mask differs by, the sorted predicted IoUs."""
        from litesam_pl.inference.segevery import SegEvery

        options = opts.replace(output_mode="tensors", return_logits=False)
        ref = SegEvery(self.model("litesam"), options).run(image, collect_timings=False, collect_stats=False).masks
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

    def _example_options(self, o: "SegEveryOptions") -> Dict[str, Any]:
        """``SegEveryOptions`` -> the example's ``segment_everything_onnx`` keywords."""
        from litesam_pl.inference.segevery_prompts import score_threshold_used

        if o.rank_by != "iou" or o.multimask_output is not None:
            raise ValueError("the ONNX example ranks by predicted IoU with the prompt form's own mask tokens")
        return dict(prompt_form=o.prompt_type,
                    score_thresh=score_threshold_used(self.model("litesam"), o.score_threshold) or 0.0,
                    pred_iou_thresh=o.pred_iou_thresh, stability_score_thresh=o.stability_score_thresh,
                    stability_score_offset=o.stability_score_offset, nms=o.nms, nms_thresh=o.box_nms_thresh,
                    nms_resolution=o.nms_resolution, max_masks=o.max_masks)

    def _example_row(self, image: np.ndarray, warm: bool = False) -> Dict[str, Any]:
        """``examples/onnx_segment_everything.py``'s ``segment_everything_onnx`` (no torch) on the same sessions."""
        sess = self.ort_sessions()
        ex = self.example_module()
        o = self._segevery_options()
        phases: Dict[str, float] = {}
        laps = Laps()
        res = ex.segment_everything_onnx(image, sess["encoder"], sess["decoder"], timings=phases,
                                         **self._example_options(o))
        total = laps.lap()
        if not warm and self.example_check is None:  # first timed image: agreement with PyTorch (not timed)
            off = o.replace(pred_iou_thresh=0.0, stability_score_thresh=0.0)
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
