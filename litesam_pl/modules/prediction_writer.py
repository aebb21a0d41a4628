"""``SegEveryWriter``: the files of ``litesam predict`` (SegEvery over shards through Lightning, any number of GPUs).

It writes what ``litesam segment-everything`` writes for photos (``litesam_pl.inference.app.write_outputs`` and
``litesam_pl.inference.outputs.write_coco``), from the per-image dicts of ``LiteSAMTaskBase.predict_step``:

- per image (``<stem>`` = the shard sample key, characters other than ``A-Za-z0-9._-`` replaced by ``_``):
  ``<stem>_masks.json`` (SA-1B layout: ``{"image": {image_id, width, height, file_name}, "annotations": [records
  with an "id", masks as COCO RLE at the original image size]}``) and, with ``overlays``, ``<stem>_overlay.png``
  (``inference.overlay.draw_overlay``: outlined colour fills under a caption band with model, mask count and
  thresholds; in amber, random weights and why there are (almost) no masks). The picture is the model input
  (``LiteSAMTaskBase.batch_photos``) resized to the original size, the size the masks are at;
- at the end: ``results.json`` (COCO results over all images: ``image_id``, ``category_id`` 1, ``segmentation``,
  ``score`` = predicted IoU, ``bbox``) and ``images.json`` (a COCO dataset of the ids, with each image's ``key``),
  so that ``COCO("images.json").loadRes("results.json")`` works, then one line ``results saved to DIR (N images,
  M masks)``.

``image_id``: the number the key ends with (SA-1B ``sa_223750`` -> 223750, converted COCO ``coco_17627`` -> 17627),
else a 48-bit hash of the key, so that ranks never need to agree on a numbering; a duplicate id is reported.

Output folder: ``output_dir`` (created when missing), else a NEW ``runs/predict/predict``, ``predict2``, ...
(``outputs.new_run_dir``, chosen by rank 0 and broadcast). An existing output file is never overwritten: a folder
that already holds ``results.json`` / ``images.json`` / part files is refused at setup, before any image is run,
and an existing per-image file when it would be written (``PredictOutputError``, a one-line ``litesam predict``
error).

DDP: every rank writes the files of its own images (the data module gives each rank different shards) and appends
its COCO entries to ``results.rank<r>.jsonl`` / ``images.rank<r>.jsonl`` as it goes (no masks are kept in memory
nor gathered); at the epoch end, after a barrier, rank 0 streams the parts, in rank order, into ``results.json`` /
``images.json`` and deletes them. The output folder must therefore be on a filesystem all nodes share (a cluster's
usual scratch or home): a part rank 0 cannot see is reported by name and its ranks are missing from
``results.json`` (their per-image files are wherever those ranks wrote them).
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from lightning.pytorch.callbacks import BasePredictionWriter

from litesam_pl.files import json_text, write_json
from litesam_pl.inference.outputs import plural, write_masks_json

__all__ = ["SegEveryWriter", "PredictOutputError", "attach_writer", "add_writer_arguments", "key_image_id",
           "DEFAULT_PREDICT_PROJECT"]

DEFAULT_PREDICT_PROJECT = Path("runs") / "predict"
PROG = "litesam predict"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_TRAILING_INT = re.compile(r"(\d{1,15})$")
_FRESH = "leave --out out for a new runs/predict/predict<N>"


class PredictOutputError(ValueError):
    """An output setting of ``litesam predict`` that cannot be used (an output file exists already, the output
    folder is a file, ``--out`` beside a configured prediction writer). The user's to fix: ``litesam`` prints it as
    one line and exits with status 2 (it is one of ``litesam_pl.cli.errors.user_errors``)."""


def key_image_id(key: str) -> int:
    """COCO ``image_id`` of a shard sample key: the number it ends with, else a 48-bit hash of the key."""
    m = _TRAILING_INT.search(key)
    if m:
        return int(m.group(1))
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=6).digest(), "big")


def _settings(f: Optional[Dict[str, Any]]) -> str:
    """The caption's settings line from a ``segment_everything`` ``stats["filters"]`` entry."""
    if not f:
        return ""
    th = f["thresholds"]
    if f["prompt_source"] == "autoppn":
        prompts = f"AutoPPN top-{th.get('top_n')}, score >= {th.get('score_threshold')}"
    else:
        prompts = f"grid {th.get('points_per_side')}x{th.get('points_per_side')}"
    nms = "no NMS" if th.get("box_nms_thresh") is None else f"NMS {th['box_nms_thresh']:g}"
    return f"{prompts}; pred IoU > {th['pred_iou_thresh']:g}, stability >= {th['stability_score_thresh']:g}, {nms}"


class SegEveryWriter(BasePredictionWriter):
    """Write ``litesam segment-everything``'s files for ``LiteSAMTaskBase.predict_step``'s predictions (module
    docstring). ``litesam predict`` adds one unless the trainer's callbacks already have a prediction writer.

    Args:
        output_dir: the output folder (created when missing; existing output files are refused); ``None``: a new
            ``runs/predict/predict<N>`` (relative to the working directory).
        overlays: also write ``<stem>_overlay.png`` per image (the masks JSON is always written).
        alpha: the overlays' fill opacity (as ``segment-everything --alpha``).
        random_weights: say "random weights" in every overlay (``litesam predict`` sets it without ``--ckpt_path``).
    """

    def __init__(self, output_dir: Optional[str] = None, overlays: bool = True, alpha: float = 0.5,
                 random_weights: bool = False) -> None:
        super().__init__("batch")  # per-image files per batch; results.json / images.json at the epoch end
        self.output_dir = None if output_dir is None else str(output_dir)
        self.overlays = bool(overlays)
        self.alpha = float(alpha)
        self.random_weights = bool(random_weights)
        self.out_dir: Optional[Path] = None  # the folder of this run (set in setup)
        self.num_images = 0  # this rank's
        self.num_masks = 0
        self._parts: List[Any] = []
        self._stems: set = set()

    # --- the output folder ------------------------------------------------------------------------------------------
    def _part(self, kind: str, rank: int) -> Path:
        assert self.out_dir is not None
        return self.out_dir / f"{kind}.rank{rank}.jsonl"

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Choose the output folder (before any image is run): ``output_dir``, refused when it is a file or already
        holds a run's results, else a new ``runs/predict/predict<N>`` made by rank 0 and broadcast to every rank."""
        super().setup(trainer, pl_module, stage)
        if stage != "predict":
            return
        import warnings

        from litesam_pl.inference.outputs import IMAGES_FILE, RESULTS_FILE, new_run_dir, out_dir_error

        # with a prediction writer, Lightning's predict loop looks for the sample indices of each batch (which the
        # shard streams do not have) and warns that it found none; this writer does not use them
        warnings.filterwarnings("ignore", message="Couldn't infer the batch indices fetched from your dataloader",
                                category=UserWarning)

        if self.output_dir is None:
            path = str(new_run_dir(DEFAULT_PREDICT_PROJECT, "predict")) if trainer.is_global_zero else None
            self.out_dir = Path(trainer.strategy.broadcast(path, src=0))
        else:
            problem = out_dir_error(self.output_dir)
            if problem:
                raise PredictOutputError(problem)
            out = Path(self.output_dir)
            taken = [out / RESULTS_FILE, out / IMAGES_FILE, *sorted(out.glob("results.rank*.jsonl")),
                     *sorted(out.glob("images.rank*.jsonl"))]
            first = next((p for p in taken if p.exists()), None)
            if first is not None:
                raise PredictOutputError(f"{first} already exists (an earlier run's output); give another --out, "
                                         f"or {_FRESH}")
            out.mkdir(parents=True, exist_ok=True)
            self.out_dir = out
        self.num_images = self.num_masks = 0
        self._stems = set()

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        """Create this rank's part files (after setup's barrier: every rank has checked the folder by then)."""
        rank = trainer.global_rank
        try:
            self._parts = [open(self._part(kind, rank), "x", encoding="utf-8") for kind in ("results", "images")]
        except FileExistsError as err:
            raise PredictOutputError(f"{err.filename} already exists; give another --out, or {_FRESH}") from None

    def _close_parts(self) -> None:
        for f in self._parts:
            f.close()
        self._parts = []

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._close_parts()  # after an error too

    # --- per batch ------------------------------------------------------------------------------------------------
    def _stem(self, key: str) -> str:
        """A file stem for ``key``, ``_1``, ``_2``, ... when this rank already used it in this run."""
        base = _UNSAFE.sub("_", key).strip("._") or "image"
        stem, n = base, 0
        while stem in self._stems:
            n += 1
            stem = f"{base}_{n}"
        self._stems.add(stem)
        return stem

    def _caption(self, trainer: Any, pl_module: Any, n_masks: int, f: Optional[Dict[str, Any]]) -> tuple:
        """``(caption lines, alert lines)`` of one overlay."""
        from litesam_pl.inference.filter_report import filter_report, needs_filter_report

        ckpt = getattr(trainer, "ckpt_path", None)
        label = type(pl_module).__name__ + (f" ({Path(str(ckpt)).name})" if ckpt else "")
        lines = [f"{label}: {plural(n_masks, 'mask')}"] + ([_settings(f)] if f else [])
        alerts = ["random weights (no --ckpt_path): the masks are meaningless"] if self.random_weights else []
        if f and needs_filter_report(f):  # why there are (almost) no masks; segment-everything's relaxing flags dropped
            alerts.append(filter_report(f).split("; to keep more", 1)[0])
        return lines, alerts

    def write_on_batch_end(self, trainer: Any, pl_module: Any, prediction: Sequence[Dict[str, Any]],
                           batch_indices: Any, batch: Dict[str, Any], batch_idx: int, dataloader_idx: int) -> None:
        """Write each image's ``<stem>_masks.json`` (+ ``<stem>_overlay.png``) and append its COCO entries to this
        rank's part files."""
        from litesam_pl.inference.app import write_outputs
        from litesam_pl.inference.outputs import coco_results

        assert self.out_dir is not None, "SegEveryWriter.setup was not called"
        photos = pl_module.batch_photos(batch) if self.overlays else [None] * len(prediction)
        for i, (pred, photo) in enumerate(zip(prediction, photos)):
            key = str(pred.get("key") or f"rank{trainer.global_rank}_batch{batch_idx}_{i}")
            stem, image_id = self._stem(key), key_image_id(key)
            h, w = (int(x) for x in pred["original_size"])
            records = pred["records"]
            files = [self.out_dir / f"{stem}_masks.json"] + ([self.out_dir / f"{stem}_overlay.png"]
                                                             if self.overlays else [])
            taken = next((p for p in files if p.exists()), None)
            if taken is not None:
                raise PredictOutputError(f"{taken} already exists; give another --out, or {_FRESH}")
            if self.overlays:
                import cv2

                view = photo if photo.shape[:2] == (h, w) else cv2.resize(photo, (w, h),
                                                                          interpolation=cv2.INTER_LINEAR)
                caption, alerts = self._caption(trainer, pl_module, len(records), pred.get("filters"))
                write_outputs(Path(stem), np.ascontiguousarray(view), records, self.out_dir, alpha=self.alpha,
                              caption=caption, alerts=alerts, image_id=image_id, stem=stem)
            else:
                write_masks_json(self.out_dir / f"{stem}_masks.json", records, image_id, (h, w), stem)
            results, images = self._parts
            for entry in coco_results(records, image_id):
                results.write(json_text(entry) + "\n")
            images.write(json_text({"id": image_id, "file_name": stem, "key": key, "height": h, "width": w,
                                    "masks": f"{stem}_masks.json"}) + "\n")
            self.num_images += 1
            self.num_masks += len(records)
        for f in self._parts:
            f.flush()

    # --- the end --------------------------------------------------------------------------------------------------
    def on_predict_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Close the parts; after a barrier, rank 0 merges them into ``results.json`` / ``images.json``."""
        self._close_parts()
        trainer.strategy.barrier("SegEveryWriter")
        if trainer.is_global_zero:
            self.merge(trainer.world_size)

    def merge(self, world_size: int = 1) -> Dict[str, int]:
        """Stream ``results.rank<r>.jsonl`` (r < ``world_size``, in rank order) into ``results.json`` and the
        images parts into ``images.json``, delete the parts and print ``results saved to DIR (N images, M masks)``.
        Returns ``{"images": N, "masks": M}``."""
        from litesam_pl.inference.outputs import IMAGES_FILE, RESULTS_FILE, coco_images

        assert self.out_dir is not None
        parts = [(self._part("results", r), self._part("images", r)) for r in range(world_size)]
        missing = [r for r, pair in enumerate(parts) if not all(p.exists() for p in pair)]
        n_masks = 0
        images: List[Dict[str, Any]] = []
        with open(self.out_dir / RESULTS_FILE, "x", encoding="utf-8") as out:
            out.write("[")
            for r, (res, img) in enumerate(parts):
                if r in missing:
                    continue
                with open(res, encoding="utf-8") as f:
                    for line in f:
                        if line.strip():
                            out.write(("," if n_masks else "") + line.strip())
                            n_masks += 1
                with open(img, encoding="utf-8") as f:
                    images += [json.loads(line) for line in f if line.strip()]
            out.write("]")
        coco = coco_images(images)
        coco["info"]["description"] = "litesam predict inputs (shard sample keys)"
        write_json(self.out_dir / IMAGES_FILE, coco, indent=None, newline=False)  # refused at setup if it existed
        for pair in parts:
            for p in pair:
                p.unlink(missing_ok=True)
        if missing:
            print(f"{PROG}: warning: no part files of rank(s) {', '.join(map(str, missing))} in {self.out_dir}: "
                  f"{RESULTS_FILE} lacks their images (is the output folder on a filesystem every node shares?)",
                  file=sys.stderr)
        ids = [im["id"] for im in images]
        if len(set(ids)) != len(ids):
            print(f"{PROG}: warning: {len(ids) - len(set(ids))} duplicate image_id(s) in {IMAGES_FILE} (keys "
                  "ending in the same number, or a key seen twice)", file=sys.stderr)
        print(f"{PROG}: results saved to {self.out_dir} ({plural(len(images), 'image')}, "
              f"{plural(n_masks, 'mask')})")
        return {"images": len(images), "masks": n_masks}


# --- litesam predict (litesam_pl.cli) ---------------------------------------------------------------------------------
def add_writer_arguments(parser: Any) -> None:
    """``litesam predict``'s own options (``--out``, ``--overlays``) on its LightningCLI subcommand parser."""
    parser.add_argument("--out", type=Optional[str], default=None,
                        help="output folder of the SegEvery files (default: a new runs/predict/predict<N>; existing "
                             "output files are refused)")
    parser.add_argument("--overlays", type=bool, default=True,
                        help="also write <key>_overlay.png per image (false: masks JSON and COCO results only)")


def attach_writer(trainer: Any, out: Optional[str] = None, overlays: bool = True,
                  random_weights: bool = False) -> Optional[SegEveryWriter]:
    """Add a ``SegEveryWriter(out, overlays)`` to ``trainer.callbacks`` unless one of them is a prediction writer
    already (then ``--out`` is refused: that writer has its own settings). Returns the writer added, or None."""
    writers = [cb for cb in trainer.callbacks if isinstance(cb, BasePredictionWriter)]
    if writers:
        if out is not None:
            raise PredictOutputError(f"--out {out}: the trainer's callbacks already have a prediction writer "
                                     f"({type(writers[0]).__name__}); set its output folder in its init_args instead")
        for w in writers:
            if isinstance(w, SegEveryWriter):
                w.random_weights = w.random_weights or random_weights
        return None
    writer = SegEveryWriter(output_dir=out, overlays=overlays, random_weights=random_weights)
    trainer.callbacks.append(writer)
    return writer
