"""What ``benchmarks.segevery`` and ``benchmarks.ci`` measure with: the photographs and the warm-up run's settings
(timing, quantiles, JSON and error text: ``benchmarks.toolkit``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

# the warm-up run of a row (same code path as the timed runs, few prompts): AutoPPN rows' top-N, grid rows' side
WARM_UP: Dict[str, Any] = {"top_n": 16, "points_per_side": 4}

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
