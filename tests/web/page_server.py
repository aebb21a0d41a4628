"""The ``litesam app`` page served on a free local port, for tests/web/test_server.py and test_browser.py.

Import this module before Gradio: it points Gradio's temp folder (fixed at Gradio's import) into a temp folder of this
session, and skips the importing test module where Gradio or gradio_client is missing."""
from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Tuple

import pytest

# before Gradio is imported (some of its folders are fixed at import): its files in a temp folder of this session
_GRADIO_TMP = tempfile.mkdtemp(prefix="litesam-test-gradio-")
os.environ.setdefault("GRADIO_TEMP_DIR", _GRADIO_TMP)
atexit.register(shutil.rmtree, _GRADIO_TMP, ignore_errors=True)
gradio = pytest.importorskip("gradio", reason="the app extra is not installed (pip install 'litesam-pl[app]')")
gradio_client = pytest.importorskip("gradio_client", reason="gradio_client is not installed")

from litesam_pl.web import handlers as H  # noqa: E402

SIDE = 96  # the page's photo side in these tests: a tiny model on tiny pictures


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_page(root: Path, slot: H.Slot, second: Optional[H.Slot] = None, max_side: int = SIDE,
                 **options) -> Iterator[Tuple[str, object]]:
    """The page for ``slot`` served on a free local port with every server file under ``root``; yields
    ``(url, PageConfig)`` and stops the server after (``options``: more ``PageConfig`` fields)."""
    from litesam_pl.web.page import PageConfig
    from litesam_pl.web.server import serve

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(root / "gradio"))
        mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        cfg = PageConfig(slot, root / "downloads", second, max_side=max_side, **options)
        page, url = serve(cfg, "127.0.0.1", free_port(), block=False, quiet=True)
        try:
            yield url, cfg
        finally:
            page.close()
