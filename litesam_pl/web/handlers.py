"""The work behind ``litesam app``'s page, as plain functions (no Gradio here: tested without a server).

Everything user-facing that can go wrong (no photo, a file that is not an image, a photo above the pixel limit, an
odd mode or prompt, an option out of range) raises :class:`PageError` (or ``images.ImageLoadError``, both
``ValueError``) with one readable line; the page shows it and keeps serving.

The model work is the library's own: SegEvery is ``SegEvery(model, options).run`` with the options checked by
``LiteSamEverything``, the baseline is ``SamAutomaticMaskGenerator`` on the same model, prompting is
``SamPredictor`` (``sam_compat.predictor``), the overlays are ``overlay.draw_masks`` and the downloads are
``inference.app.write_outputs`` (the files of ``litesam segment-everything``).
"""
from __future__ import annotations

import hashlib
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..inference.images import ImageLoadError, load_image
from ..inference.outputs import limit_side
from ..inference.overlay import draw_masks
from ..inference.timing import ModuleTimer

__all__ = [
    "PageError", "Slot", "Photo", "Segmentation", "EXAMPLES", "COMPARE_WITH", "example_photos", "load_slot",
    "read_photo", "run_everything", "run_grid", "draw_everything", "segmentation_summary", "save_downloads",
    "random_weights_alert", "dot", "marker_radius",
]

#: scikit-image's bundled photos (files inside the installed package: nothing is downloaded)
EXAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left")
COMPARE_WITH = ("second checkpoint", "grid search")
PHASE_NAMES = (("preprocess", "preprocess"), ("encoder", "encoder"), ("prompts", "AutoPPN"), ("decoder", "decoder"),
               ("postprocess", "post-processing"))
# the CLI flags filter_report suggests -> the page's sliders
_SLIDERS = {"--pred-iou-thresh": "predicted IoU threshold", "--stability-score-thresh": "stability threshold",
            "--score-threshold": "AutoPPN score threshold", "--max-masks": "at most N masks",
            "--prompts grid": "grid prompts (a model with an AutoPPN head)"}


class PageError(ValueError):
    """Input the page cannot use; the message is one line for the person at the page."""


def example_photos() -> Dict[str, Path]:
    """``name -> file`` of the bundled examples that exist in the installed scikit-image."""
    import skimage.data

    root = Path(skimage.data.__file__).parent
    found = {}
    for name in EXAMPLES:
        hits = sorted(root.glob(f"{name}.*"))
        if hits:
            found[name] = hits[0]
    return found


# ------------------------------------------------------------------------------------------------------ models
@dataclass
class Slot:
    """A model on the page: its label, whether its weights are random, a lock (one inference at a time) and the
    ``SamPredictor`` that keeps the embedding of the last prompted photo."""

    model: torch.nn.Module
    label: str
    random_weights: bool
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _predictor: Any = field(default=None, repr=False)
    _embedded: Optional[str] = field(default=None, repr=False)

    def prompt_predictor(self) -> Any:
        """The slot's ``SamPredictor`` (``inference.sam_compat.predictor``), made on first use."""
        if self._predictor is None:
            from ..inference.sam_compat import predictor

            self._predictor = predictor(self.model)
        return self._predictor

    def embed(self, key: str, image: np.ndarray) -> bool:
        """Give ``image`` (the photo ``key``, RGB) to the slot's predictor unless it is the photo embedded last;
        True when it was (its embedding is reused). Call it holding ``lock``."""
        if self._embedded == key:
            return True
        self.prompt_predictor().set_image(image, image_format="RGB")
        self._embedded = key
        return False

    @property
    def has_autoppn(self) -> bool:
        return getattr(self.model, "autoppn", None) is not None

    @property
    def default_score_threshold(self) -> float:
        """AutoPPN's score threshold for the page: its decode default, 0 for random weights (nothing passes it)."""
        if self.random_weights or not self.has_autoppn:
            return 0.0
        import inspect

        default = inspect.signature(self.model.autoppn.decode).parameters["score_threshold"].default
        return float(default or 0.0)


def load_slot(ckpt: Optional[str] = None, model_name: str = "litesam", img_size: int = 640, seed: int = 0,
              device: str = "cpu") -> Slot:
    """A model from ``ckpt`` (export or Lightning checkpoint), else ``model_name`` with random weights (seeded).
    A bad name or file raises ``ModelError`` (one line)."""
    from ..models.checkpoint import load_or_random

    model, info = load_or_random(ckpt, model_name, seed=seed, check=True, img_size=img_size)
    if info["random_weights"]:
        label = f"{model_name} (random weights)"
    else:
        label = f"{info['model']} ({ckpt})"
    return Slot(model.eval().to(device), label, info["random_weights"])


# ------------------------------------------------------------------------------------------------------ photos
@dataclass
class Photo:
    """The picture the page works on (``image``: RGB uint8, downscaled to the page's longest side), its name and
    the size of the file."""

    image: np.ndarray
    name: str
    original_size: Tuple[int, int]

    @property
    def key(self) -> str:
        return hashlib.sha1(self.image.tobytes() + str(self.image.shape).encode()).hexdigest()


def read_photo(upload: Any = None, example: Optional[str] = None, max_pixels: int = 40_000_000,
               max_side: int = 1024) -> Photo:
    """The uploaded file (a path; it wins when both are given) or the bundled example ``example``, read with
    ``load_image`` (any image mode; refuses non-images and photos above ``max_pixels`` before decoding them) and
    downscaled to ``max_side``."""
    if isinstance(upload, dict):  # a FileData-like dict
        upload = upload.get("path")
    if upload:
        path = Path(str(upload))
    elif example:
        photos = example_photos()
        if example not in photos:
            raise PageError(f"unknown example {example!r}; choose one of {', '.join(photos) or '(none installed)'}")
        path = photos[example]
    else:
        raise PageError("no photo: upload one or pick a bundled example")
    try:
        full = load_image(path, max_pixels=max_pixels)
    except ImageLoadError as err:  # name the file by its name, not by the server's temp path
        text = str(err)
        raise ImageLoadError(path.name + text[len(str(path)):] if text.startswith(str(path)) else text) from None
    return Photo(limit_side(full, max_side), path.stem, full.shape[:2])


# ---------------------------------------------------------------------------------------------------- SegEvery
@dataclass
class Segmentation:
    """One SegEvery (or grid-search) result: COCO RLE ``records``, their masks, the AutoPPN proposals (``[N, 2]``
    xy image pixels), per-phase and total milliseconds, the filter funnel (``stats["filters"]``) and a method name."""

    records: List[Dict[str, Any]]
    masks: List[np.ndarray]
    proposals: np.ndarray
    phases_ms: Dict[str, float]
    total_ms: float
    funnel: Optional[Dict[str, Any]]
    method: str
    label: str


@contextmanager
def _capture_proposals(model: torch.nn.Module, sink: List[Dict[str, Any]]) -> Iterator[None]:
    """Append what ``model.autoppn.decode`` returns to ``sink`` while the block runs (the proposals before the
    mask filters; ``segment_everything`` keeps only the points of the masks it returns)."""
    ppn = getattr(model, "autoppn", None)
    if ppn is None:
        yield
        return
    decode = ppn.decode

    def recording(*args: Any, **kwargs: Any) -> Dict[str, Any]:
        out = decode(*args, **kwargs)
        sink.append(out)
        return out

    ppn.decode = recording
    try:
        yield
    finally:
        del ppn.decode


def _masks(records: Sequence[Dict[str, Any]]) -> List[np.ndarray]:
    from ..data.rle import decode_rle

    return [decode_rle(r["segmentation"]) for r in records]


def _int_or_none(value: Any) -> Optional[int]:
    return None if value in (None, "", 0) else int(round(float(value)))


def run_everything(slot: Slot, photo: Photo, pred_iou_thresh: float = 0.5, stability_score_thresh: float = 0.8,
                   box_nms_thresh: float = 0.7, top_n: int = 256, max_masks: Optional[int] = None,
                   score_threshold: Optional[float] = None) -> Segmentation:
    """SegEvery with AutoPPN prompts (grid prompts for a model without AutoPPN head), masks as COCO RLE at the
    photo's size; ``max_masks`` 0/None: all. Options out of range raise ``PageError``."""
    from ..inference.everything import LiteSamEverything
    from ..inference.segevery import SegEvery
    from segment_anything.utils.transforms import ResizeLongestSide

    prompts = "autoppn" if slot.has_autoppn else "grid"
    try:
        gen = LiteSamEverything(slot.model, pred_iou_thresh=float(pred_iou_thresh),
                                stability_score_thresh=float(stability_score_thresh),
                                box_nms_thresh=float(box_nms_thresh), output_mode="coco_rle", prompts=prompts,
                                top_n=int(round(float(top_n))), max_masks=_int_or_none(max_masks),
                                score_threshold=None if score_threshold is None else float(score_threshold))
    except (TypeError, ValueError) as err:
        raise PageError(str(err).replace("LiteSamEverything: ", "")) from None
    decoded: List[Dict[str, Any]] = []
    with slot.lock, _capture_proposals(slot.model, decoded):
        t0 = time.perf_counter()
        result = SegEvery(slot.model, gen.segevery_options).run(photo.image)
        total = time.perf_counter() - t0
    records, timings, stats = result.masks, result.timings, result.stats
    proposals = np.zeros((0, 2), np.float32)
    if decoded:
        h, w = photo.image.shape[:2]
        nh, nw = ResizeLongestSide.get_preprocess_shape(h, w, int(slot.model.image_encoder.img_size))
        pts = decoded[0]["points"][0][decoded[0]["valid"][0]].float().cpu().numpy()
        proposals = (pts * np.array([w / nw, h / nh], np.float32)).astype(np.float32)
    method = (f"SegEvery, AutoPPN top-{gen.top_n}" if prompts == "autoppn"
              else f"SegEvery, {gen.points_per_side}x{gen.points_per_side} grid (this model has no AutoPPN head)")
    return Segmentation(records, _masks(records), proposals, {k: v * 1e3 for k, v in timings.items()},
                        total * 1e3, (stats.get("filters") or [None])[0], method, slot.label)


def run_grid(slot: Slot, photo: Photo, points_per_side: int = 32, pred_iou_thresh: float = 0.5,
             stability_score_thresh: float = 0.8, box_nms_thresh: float = 0.7) -> Segmentation:
    """The grid-search baseline on the same model: ``SamAutomaticMaskGenerator`` (no crops), timed per phase."""
    from ..inference.sam_compat import automatic_mask_generator

    n = int(round(float(points_per_side)))
    if not 1 <= n <= 64:
        raise PageError(f"grid points per side must be in 1..64, got {points_per_side}")
    for name, value in (("pred_iou_thresh", pred_iou_thresh), ("stability_score_thresh", stability_score_thresh),
                        ("box_nms_thresh", box_nms_thresh)):
        if not 0.0 <= float(value) <= 1.0:
            raise PageError(f"{name} must be in [0, 1], got {value}")
    amg = automatic_mask_generator(slot.model, points_per_side=n, pred_iou_thresh=float(pred_iou_thresh),
                                   stability_score_thresh=float(stability_score_thresh),
                                   box_nms_thresh=float(box_nms_thresh), output_mode="coco_rle")
    model = slot.model
    with slot.lock, torch.no_grad():
        timer = ModuleTimer({"encoder": model.image_encoder, "prompts": model.prompt_encoder,
                             "decoder": model.mask_decoder}, next(model.parameters()).device)
        try:
            t0 = time.perf_counter()
            records = amg.generate(photo.image)
            total = (time.perf_counter() - t0) * 1e3
        finally:
            timer.close()
    phases = {k: v * 1e3 for k, v in timer.totals.items()}
    phases["postprocess"] = max(0.0, total - sum(phases.values()))
    return Segmentation(records, _masks(records), np.zeros((0, 2), np.float32), phases, total, None,
                        f"grid search, SamAutomaticMaskGenerator {n}x{n}", slot.label)


def dot(image: np.ndarray, xy: Sequence[float], colour: Tuple[int, int, int], radius: int) -> None:
    import cv2

    centre = (int(round(float(xy[0]))), int(round(float(xy[1]))))
    cv2.circle(image, centre, radius + 1, (0, 0, 0), -1, cv2.LINE_AA)
    cv2.circle(image, centre, radius, colour, -1, cv2.LINE_AA)


def marker_radius(image: np.ndarray) -> int:
    return max(2, round(max(image.shape[:2]) / 160))


def draw_everything(photo: Photo, seg: Segmentation, show_points: bool = True, alpha: float = 0.5) -> np.ndarray:
    """Masks as fills plus contours (``overlay.draw_masks``), and the AutoPPN proposals as dots when asked."""
    out = draw_masks(photo.image, seg.masks, alpha=alpha)
    if show_points:
        r = max(1, marker_radius(out) // 2)
        for xy in seg.proposals:
            dot(out, xy, (255, 230, 0), r)
    return out


def segmentation_summary(seg: Segmentation) -> str:
    """Markdown under the picture: masks kept, the time of each phase, and where the masks went when few are left."""
    from ..inference.filter_report import filter_report

    phases = " · ".join(f"{title} **{seg.phases_ms[k]:.0f} ms**" for k, title in PHASE_NAMES if k in seg.phases_ms)
    if "grid" in seg.method:
        phases = phases.replace("AutoPPN", "prompt encoder")
    n = len(seg.records)
    lines = [f"**{seg.label}** — {seg.method}: **{n} mask{'' if n == 1 else 's'}** in **{seg.total_ms:.0f} ms**",
             f"{phases}"]
    if len(seg.proposals):
        lines.append(f"{len(seg.proposals)} AutoPPN proposals")
    if seg.funnel is not None and (seg.funnel["kept"] == 0 or seg.funnel["kept"] < 0.01 * seg.funnel["candidates"]):
        report = filter_report(seg.funnel)
        for flag, slider in _SLIDERS.items():
            report = report.replace(flag, slider)
        lines.append("filters: " + report)
    return "\n\n".join(lines)


# --------------------------------------------------------------------------------------------------- downloads
def save_downloads(out_root: Path, photo: Photo, records: List[Dict[str, Any]], caption: Sequence[str] = (),
                   alerts: Sequence[str] = ()) -> Dict[str, Path]:
    """``<name>_masks.json`` (SA-1B layout, COCO RLE) and ``<name>_overlay.png`` (masks + a caption band) in a new
    folder under ``out_root`` (the server's temp folder): ``inference.app.write_outputs``, as the CLI writes them."""
    from ..inference.app import write_outputs

    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="result-", dir=out_root))
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in photo.name)[:64] or "photo"
    return write_outputs(Path(f"{safe}.png"), photo.image, records, folder, caption=caption, alerts=alerts,
                         original_size=photo.original_size, stem=safe)


def random_weights_alert(slot: Slot) -> List[str]:
    return ["random weights (no --ckpt): the masks are meaningless"] if slot.random_weights else []

