"""``litesam app [--ckpt PATH] [--compare PATH] [--host 127.0.0.1] [--port N]``: the page on a local server.

It binds to 127.0.0.1 unless ``--host`` says otherwise, sends nothing anywhere (no analytics, no share link, no web
fonts, no server-side rendering process) and writes only inside one temp folder (Gradio's uploads and cache, the
downloads), removed when the server stops. Without ``--ckpt`` the model has random weights and the page says so.
Gradio is the optional ``app`` extra: without it the command says how to install it (one line, exit status 2).
"""
from __future__ import annotations

import argparse
import atexit
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple

__all__ = ["main", "build_parser", "gradio_missing", "prepare_temp", "serve", "INSTALL_HINT"]

PROG = "litesam app"
INSTALL_HINT = "pip install 'litesam-pl[app]'   (or: pip install gradio)"


def gradio_missing() -> Optional[str]:
    """One line saying how to install Gradio, or None when it is installed."""
    if importlib.util.find_spec("gradio") is not None:
        return None
    return f"Gradio is not installed (the page's optional 'app' extra); install it with: {INSTALL_HINT}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="A local web page to look at a Lite-SAM model: SegEvery with AutoPPN (filters as sliders, "
        "time per phase), point/box prompts through SamPredictor, a side-by-side comparison with a second "
        "checkpoint or with grid search, COCO RLE JSON and PNG downloads.",
    )
    p.add_argument("--ckpt", help="export (litesam export) or Lightning checkpoint; random weights when absent")
    p.add_argument("--compare", metavar="CKPT", help="a second checkpoint shown side by side in the Compare tab")
    p.add_argument("--model", default="litesam", help="model name for random weights (default litesam)")
    p.add_argument("--img-size", type=int, default=640, help="input side for random weights (default 640)")
    p.add_argument("--seed", type=int, default=0, help="seed for random weights")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or N")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 shows it to your network)")
    p.add_argument("--port", type=int, default=None,
                   help="port (default: the first free one from 7860, or $GRADIO_SERVER_PORT)")
    p.add_argument("--pred-iou-thresh", type=float, default=None,
                   help="start value of the predicted-IoU slider (default 0.5; 0 with random weights)")
    p.add_argument("--stability-score-thresh", type=float, default=None,
                   help="start value of the stability slider (default 0.8; 0 with random weights)")
    p.add_argument("--max-side", type=int, default=1024,
                   help="photos are downscaled to this longer side on the page (default 1024)")
    p.add_argument("--max-pixels", type=int, default=40_000_000,
                   help="refuse photos above this many pixels (default 40 MP)")
    p.add_argument("--max-file-size", default="50mb", help="refuse uploads above this size (default 50mb)")
    return p


def prepare_temp() -> Path:
    """A new temp folder for everything the server writes (Gradio's uploads and cache via ``GRADIO_TEMP_DIR``,
    the downloads), removed at exit; also switches Gradio's analytics off. Call before building the page."""
    root = Path(tempfile.mkdtemp(prefix="litesam-app-"))
    os.environ["GRADIO_TEMP_DIR"] = str(root / "gradio")
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


def serve(cfg: Any, host: str = "127.0.0.1", port: Optional[int] = None, block: bool = True,
          max_file_size: str = "50mb", quiet: bool = False) -> Tuple[Any, str]:
    """Build the page for ``cfg`` (``page.PageConfig``) and start its server; returns ``(page, local URL)``
    (``block=False``: the server runs in a thread until ``page.close()``)."""
    from .page import CSS, build_page, theme

    page = build_page(cfg)
    page.queue(default_concurrency_limit=1)
    _, url, _ = page.launch(server_name=host, server_port=port, share=False, inbrowser=False, show_error=True,
                            prevent_thread_lock=not block, quiet=quiet, ssr_mode=False, theme=theme(), css=CSS,
                            allowed_paths=[str(cfg.out_root)], max_file_size=max_file_size, pwa=False,
                            mcp_server=False, enable_monitoring=False)
    return page, url


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    missing = gradio_missing()
    if missing:
        print(f"{PROG}: error: {missing}", file=sys.stderr)
        return 2
    from ..inference.app import resolve_device
    from ..models.registry import ModelError
    from . import handlers as H

    device, why = resolve_device(args.device)
    if device is None:
        print(f"{PROG}: error: {why}", file=sys.stderr)
        return 2
    try:
        slot = H.load_slot(args.ckpt, args.model, args.img_size, args.seed, str(device))
        second = H.load_slot(args.compare, device=str(device)) if args.compare else None
    except (ModelError, FileNotFoundError, ValueError) as err:
        print(f"{PROG}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    if slot.random_weights:
        print(f"{PROG}: warning: no --ckpt: the model has RANDOM WEIGHTS (the page says so too)", file=sys.stderr)
    root = prepare_temp()
    from .page import PageConfig

    cfg = PageConfig(slot, root / "downloads", second, max_pixels=args.max_pixels, max_side=args.max_side,
                     pred_iou_thresh=args.pred_iou_thresh, stability_score_thresh=args.stability_score_thresh)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # `kill PID` also removes the temp folder (atexit)
    print(f"{PROG}: model {slot.label} on {device}; files in {root} (removed at exit); Ctrl+C stops the server",
          file=sys.stderr)
    try:
        page, url = serve(cfg, args.host, args.port, block=False, max_file_size=args.max_file_size, quiet=True)
    except OSError as err:  # e.g. the port is taken
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    print(f"{PROG}: open {url} in a browser", file=sys.stderr)
    try:
        page.block_thread()  # until Ctrl+C (or SIGTERM)
    except KeyboardInterrupt:
        pass
    finally:
        page.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
