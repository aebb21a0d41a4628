"""The ``gr.Blocks`` of ``litesam app``: widgets wired to ``handlers`` (all the work is there).

Every callback turns a user error (``ValueError``: ``handlers.PageError``, ``ImageLoadError``, ``ModelError``)
into a readable line in the tab's message area, and an unexpected exception into an "internal error" line (its
traceback on the server's stderr): the server keeps serving either way. API names (``gradio_client``):
``/everything``, ``/prompt``, ``/compare``.
"""
from __future__ import annotations

import functools
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Optional, Tuple

import gradio as gr

from ..inference.overlay import draw_masks
from . import handlers as H
from . import prompts as P

__all__ = ["PageConfig", "build_page", "guarded", "theme", "CSS"]

RANDOM_BANNER = ("⚠️ **This model has RANDOM WEIGHTS** (the page was started without `--ckpt`): the masks are "
                 "meaningless. Start it with `litesam app --ckpt PATH` (a `litesam export` file or a Lightning "
                 "checkpoint, e.g. `runs/demo/last.ckpt` after `make demo`).")


@dataclass
class PageConfig:
    """What the page serves: the model, an optional second model for the comparison, the server's temp folder for
    the downloads, and the photo limits."""

    slot: H.Slot
    out_root: Path
    second: Optional[H.Slot] = None
    max_pixels: int = 40_000_000
    max_side: int = 1024
    pred_iou_thresh: Optional[float] = None  # slider defaults; None: 0.5 / 0.8, 0 / 0 for random weights
    stability_score_thresh: Optional[float] = None


CSS = ("#random-weights-banner {background: #fff4d6; border: 1px solid #f0b429; border-radius: 8px; "
       "padding: 4px 12px}")


def theme() -> Any:
    """Gradio's default look with the system fonts (the default theme fetches Google fonts: no network here)."""
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"])


def _message(err: BaseException) -> str:
    if isinstance(err, ValueError):
        return f"⚠️ **Error**: {' '.join(str(err).split())}"
    traceback.print_exc(file=sys.stderr)
    what = " ".join(str(err).split())[:300]
    return f"⚠️ **Internal error** ({type(err).__name__}: {what}); the traceback is in the server's log"


def guarded(fn: Callable[..., Tuple], n_out: int, msg_at: int, keep: bool = False) -> Callable[..., Tuple]:
    """``fn`` whose exceptions become ``n_out`` outputs: the message at ``msg_at`` (a user error's line, or an
    "internal error" line with the traceback on the server's stderr), the others emptied (left as they are with
    ``keep``). Every callback of the page is wrapped so: the server keeps serving."""
    @functools.wraps(fn)  # keeps the signature: Gradio reads the parameter names and the SelectData hint
    def run(*args: Any) -> Tuple:
        try:
            return fn(*args)
        except Exception as err:  # noqa: BLE001 - every failure is shown on the page, the server keeps serving
            out = [gr.skip() if keep else None] * n_out
            out[msg_at] = _message(err)
            return tuple(out)

    return run


def _default(given: Optional[float], trained: float, slot: H.Slot) -> float:
    """A filter slider's start value: ``given``, else ``trained`` (0 for random weights: they pass no filter)."""
    return float(given) if given is not None else (0.0 if slot.random_weights else trained)


def _grid_default(slot: H.Slot) -> int:
    """SAM's 32x32 grid on a GPU; 16x16 on a CPU (1024 prompts take minutes on a few cores)."""
    param = next(slot.model.parameters(), None)
    return 32 if param is not None and param.device.type == "cuda" else 16


def build_page(cfg: PageConfig) -> gr.Blocks:
    """The page: a photo source and the SegEvery filters, then the Everything, Prompt and Compare tabs, and their
    events (``_wire``)."""
    slot, second = cfg.slot, cfg.second
    with gr.Blocks(title="Lite-SAM", analytics_enabled=False, delete_cache=(3600, 3600)) as page:
        gr.Markdown(f"# Lite-SAM — look at a model\nModel: **{slot.label}**"
                    + (f" · compare: **{second.label}**" if second else ""))
        if slot.random_weights:
            gr.Markdown(RANDOM_BANNER, elem_id="random-weights-banner")
        source = _photo_source()
        filters = _filter_widgets(cfg)
        with gr.Tabs():
            with gr.Tab("Everything"):
                everything_tab = _everything_tab()
            with gr.Tab("Prompt"):
                prompt_tab = _prompt_tab()
            with gr.Tab("Compare"):
                compare_tab = _compare_tab(slot, second)
        _wire(page, _Work(cfg), source, filters, everything_tab, prompt_tab, compare_tab)
    return page


# ------------------------------------------------------------------------------------------------ the callbacks
class _Work:
    """What the callbacks share: the config, the photo reader and the downloads."""

    def __init__(self, cfg: PageConfig):
        self.cfg, self.slot, self.second = cfg, cfg.slot, cfg.second

    def photo(self, upload: Any, example: Optional[str]) -> H.Photo:
        return H.read_photo(upload, example, max_pixels=self.cfg.max_pixels, max_side=self.cfg.max_side)

    def downloads(self, ph: H.Photo, records: list, caption: list) -> Tuple[str, str]:
        """The masks JSON and overlay PNG of a result of this page's model (``H.save_downloads``)."""
        files = H.save_downloads(self.cfg.out_root, ph, records, caption, H.random_weights_alert(self.slot))
        return str(files["masks"]), str(files["overlay"])


# The callbacks are closures, not methods: Gradio reads their names (the API names) and parameters.
def _everything_fn(work: _Work) -> Callable[..., Tuple]:
    slot = work.slot

    def everything(upload, example, pred_iou, stability, nms, top_n, max_masks, score, show_points):
        """SegEvery with AutoPPN on the photo: overlay, times per phase, COCO RLE JSON and overlay PNG."""
        ph = work.photo(upload, example)
        seg = H.run_everything(slot, ph, pred_iou, stability, nms, top_n, max_masks, score)
        js, png = work.downloads(ph, seg.records, [f"{seg.label}: {len(seg.records)} masks, {seg.total_ms:.0f} ms"])
        return H.draw_everything(ph, seg, bool(show_points)), H.segmentation_summary(seg), js, png

    return everything


def _prompt_fns(work: _Work) -> Tuple[Callable[..., Tuple], ...]:
    """The Prompt tab's callbacks: ``prompt`` (Segment), ``show_prompts`` (redraw the canvas), ``click``."""
    slot = work.slot

    def prompt(upload, example, points_text, box_text):
        """Points / a box through SamPredictor: the best mask, the three multimask outputs with predicted IoU."""
        ph = work.photo(upload, example)
        coords, labels = P.parse_points(points_text)
        box = P.parse_box(box_text)
        res = P.run_prompt(slot, ph, coords, labels, box)
        order = sorted(range(len(res.ious)), key=lambda i: -float(res.ious[i]))
        marked = lambda m: P.draw_prompts(draw_masks(ph.image, [m]), coords, labels, box)  # noqa: E731
        gallery = [(marked(res.masks[i]), f"output {i}: predicted IoU {res.ious[i]:.3f}") for i in range(3)]
        records = P.prompt_records(res, coords, box)
        enc = "cached" if res.encoder_ms == 0 else f"{res.encoder_ms:.0f} ms"
        text = (f"**{res.label}** — SamPredictor, multimask_output=True: best output {order[0]} (predicted IoU "
                f"**{res.ious[order[0]]:.3f}**); " + ", ".join(f"output {i}: {res.ious[i]:.3f}" for i in range(3))
                + f"\n\nencoder **{enc}** (once per photo) · prompt encoder + decoder **{res.decoder_ms:.0f} ms**")
        js, png = work.downloads(ph, records, [f"{res.label}: prompt, best IoU {res.ious[order[0]]:.3f}"])
        return marked(res.masks[order[0]]), gallery, text, js, png

    def show_prompts(upload, example, points_text, box_text):
        """The photo with the current prompts drawn on it (the picture to click on)."""
        ph = work.photo(upload, example)
        coords, labels = P.parse_points(points_text)
        parts = [v for v in (box_text or "").replace(",", " ").split()]
        corner = [float(v) for v in parts] if len(parts) == 2 else None
        box = None if corner is not None else P.parse_box(box_text)
        n = len(coords) + (box is not None)
        return P.draw_prompts(ph.image, coords, labels, box, corner), (
            f"{ph.image.shape[1]}x{ph.image.shape[0]} px; {n} prompt(s); click to add, then **Segment**")

    def click(points_text, box_text, kind, evt: gr.SelectData):
        x, y = evt.index[:2]
        return (*P.add_click(points_text, box_text, x, y, kind), gr.skip())

    return prompt, show_prompts, click


def _compare_fn(work: _Work) -> Callable[..., Tuple]:
    slot, second = work.slot, work.second

    def compare(upload, example, against, grid_side, pred_iou, stability, nms, top_n, max_masks, score, show_points):
        """The same photo through this model and a second checkpoint (or the grid-search baseline)."""
        if against not in H.COMPARE_WITH:
            raise H.PageError(f"unknown comparison {against!r}; choose one of {', '.join(H.COMPARE_WITH)}")
        if against == "second checkpoint" and second is None:
            raise H.PageError("no second checkpoint: start the page with `litesam app --ckpt A --compare B`, or "
                              "compare with the grid search")
        ph = work.photo(upload, example)
        left = H.run_everything(slot, ph, pred_iou, stability, nms, top_n, max_masks, score)
        if against == "grid search":
            right = H.run_grid(slot, ph, grid_side, pred_iou, stability, nms)
            speed = (f"\n\ngrid search took **{right.total_ms / max(left.total_ms, 1e-6):.1f}x** the time of SegEvery "
                     "with AutoPPN")
        else:
            right = H.run_everything(second, ph, pred_iou, stability, nms, top_n, max_masks, score)
            speed = ""
        return (H.draw_everything(ph, left, bool(show_points)), H.segmentation_summary(left),
                H.draw_everything(ph, right, bool(show_points)), H.segmentation_summary(right) + speed)

    return compare


# ------------------------------------------------------------------------------------------------ the layout
# Each builder is called inside the ``gr.Blocks`` (and tab) context, which its components join; the builders run
# in page order, so the components get the same ids as in one long function.
def _photo_source() -> SimpleNamespace:
    """The photo: ``upload`` (a file) and ``example`` (the bundled examples' dropdown)."""
    examples = list(H.example_photos())
    with gr.Row():
        # any file type: load_image decides, and says why a file is not a photo (file_types=["image"] would
        # answer with Gradio's own error)
        upload = gr.File(label="Upload a photo (it wins over the example)", type="filepath", height=120)
        example = gr.Dropdown(examples, value=examples[0] if examples else None, label="…or a bundled example "
                              "(scikit-image's photos)", allow_custom_value=False)
    return SimpleNamespace(upload=upload, example=example)


def _filter_widgets(cfg: PageConfig) -> SimpleNamespace:
    """SegEvery's filter ``sliders``, in the order of the callbacks' parameters, and the ``show_points`` box."""
    slot = cfg.slot
    with gr.Accordion("Filters (SegEvery)", open=True):
        with gr.Row():
            pred_iou = gr.Slider(0, 1, value=_default(cfg.pred_iou_thresh, 0.5, slot), step=0.01,
                                 label="predicted IoU threshold (pred_iou_thresh; SAM: 0.88)")
            stability = gr.Slider(0, 1, value=_default(cfg.stability_score_thresh, 0.8, slot), step=0.01,
                                  label="stability threshold (stability_score_thresh; SAM: 0.95)")
            nms = gr.Slider(0, 1, value=0.7, step=0.01, label="NMS IoU (box_nms_thresh)")
        with gr.Row():
            top_n = gr.Slider(1, 1024, value=256, step=1, label="AutoPPN top-N prompts")
            score = gr.Slider(0, 1, value=slot.default_score_threshold, step=0.01, label="AutoPPN score threshold")
            max_masks = gr.Slider(0, 1024, value=0, step=1, label="at most N masks (0: all)")
            show_points = gr.Checkbox(value=True, label="show the AutoPPN points")
    return SimpleNamespace(sliders=[pred_iou, stability, nms, top_n, max_masks, score], show_points=show_points)


def _everything_tab() -> SimpleNamespace:
    """The Everything tab: ``run``, ``image``, ``msg``, ``json``, ``png``."""
    run = gr.Button("Segment everything", variant="primary", elem_id="run-everything")
    image = gr.Image(label="SegEvery", format="png", interactive=False, elem_id="everything-output", height=560)
    msg = gr.Markdown(elem_id="everything-summary")
    with gr.Row():
        json_file = gr.File(label="masks (COCO RLE JSON)", interactive=False)
        png_file = gr.File(label="overlay (PNG)", interactive=False)
    return SimpleNamespace(run=run, image=image, msg=msg, json=json_file, png=png_file)


def _prompt_tab() -> SimpleNamespace:
    """The Prompt tab: the canvas to click on with the prompts' widgets, and the outputs."""
    with gr.Row():
        with gr.Column():
            canvas = gr.Image(label="click the photo", format="png", interactive=False, elem_id="prompt-canvas")
            kind = gr.Radio(list(P.CLICK_KINDS), value=P.CLICK_KINDS[0], label="a click adds")
            points = gr.Textbox(label="points: [[x, y, label], ...] (1 positive, 0 negative)",
                                elem_id="prompt-points")
            box = gr.Textbox(label="box: x0, y0, x1, y1 (two 'box corner' clicks)")
            with gr.Row():
                clear = gr.Button("Clear prompts")
                run = gr.Button("Segment", variant="primary", elem_id="run-prompt")
            canvas_msg = gr.Markdown()
        with gr.Column():
            image = gr.Image(label="best mask", format="png", interactive=False)
            msg = gr.Markdown(elem_id="prompt-summary")
            gallery = gr.Gallery(label="the three multimask outputs", columns=3, format="png")
            with gr.Row():
                json_file = gr.File(label="masks (COCO RLE JSON)", interactive=False)
                png_file = gr.File(label="overlay (PNG)", interactive=False)
    return SimpleNamespace(canvas=canvas, kind=kind, points=points, box=box, clear=clear, run=run,
                           canvas_msg=canvas_msg, image=image, msg=msg, gallery=gallery, json=json_file, png=png_file)


def _compare_tab(slot: H.Slot, second: Optional[H.Slot]) -> SimpleNamespace:
    """The Compare tab: what to compare with, the grid side, ``run``, and the two sides' pictures and summaries."""
    with gr.Row():
        against = gr.Radio(list(H.COMPARE_WITH), label="compare with",
                           value=H.COMPARE_WITH[0] if second else H.COMPARE_WITH[1])
        grid_side = gr.Slider(1, 64, value=_grid_default(slot), step=1, label="grid points per side (SAM: 32)")
        run = gr.Button("Compare", variant="primary")
    with gr.Row():
        with gr.Column():
            left_img = gr.Image(label=slot.label, format="png", interactive=False, height=480)
            left_msg = gr.Markdown()
        with gr.Column():
            right_img = gr.Image(label=second.label if second else "grid search", format="png", interactive=False,
                                 height=480)
            right_msg = gr.Markdown()
    return SimpleNamespace(against=against, grid_side=grid_side, run=run, left_img=left_img, left_msg=left_msg,
                           right_img=right_img, right_msg=right_msg)


def _wire(page: gr.Blocks, work: _Work, source: SimpleNamespace, filters: SimpleNamespace,
          ev: SimpleNamespace, pr: SimpleNamespace, cm: SimpleNamespace) -> None:
    """Every event of the page: the three tabs' buttons (the API: ``/everything``, ``/prompt``, ``/compare``), a
    click on the prompt canvas, Clear, the canvas redrawn whenever the prompts, the photo or the page change, and a
    new photo clearing the prompts."""
    upload, example = source.upload, source.example
    prompt, show_prompts, click = _prompt_fns(work)
    ev.run.click(guarded(_everything_fn(work), 4, 1), [upload, example, *filters.sliders, filters.show_points],
                 [ev.image, ev.msg, ev.json, ev.png], api_name="everything")
    pr.run.click(guarded(prompt, 5, 2), [upload, example, pr.points, pr.box],
                 [pr.image, pr.gallery, pr.msg, pr.json, pr.png], api_name="prompt")
    cm.run.click(guarded(_compare_fn(work), 4, 3),
                 [upload, example, cm.against, cm.grid_side, *filters.sliders, filters.show_points],
                 [cm.left_img, cm.left_msg, cm.right_img, cm.right_msg], api_name="compare")
    pr.canvas.select(guarded(click, 3, 2, keep=True), [pr.points, pr.box, pr.kind],
                     [pr.points, pr.box, pr.canvas_msg], api_visibility="private")
    pr.clear.click(lambda: ("", ""), None, [pr.points, pr.box], api_visibility="private")
    redraw = dict(fn=guarded(show_prompts, 2, 1, keep=True), inputs=[upload, example, pr.points, pr.box],
                  outputs=[pr.canvas, pr.canvas_msg], api_visibility="private")
    for trigger in (pr.points.change, pr.box.change, upload.change, example.change, page.load):
        trigger(**redraw)
    upload.upload(lambda: ("", ""), None, [pr.points, pr.box], api_visibility="private")
    example.input(lambda: (None, "", ""), None, [upload, pr.points, pr.box], api_visibility="private")
