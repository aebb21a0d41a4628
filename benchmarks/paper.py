"""The Lite-SAM paper's figures, once: one dict per table (named by table and column), imported where printed.

Table 5 (mIoU, AP) and Table 6 (Mask AR@1000) of the COCO / LVIS benchmarks: ``PAPER_ROWS`` and
``PAPER_ROWS_R1024`` in ``benchmarks/_eval_score.py``.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

# Tables 1, 4 and 6 (complexity): model -> params (M), GMACs per input side, and the table it comes from ("source")
COMPLEXITY: Dict[str, Dict] = {
    "litevit": {"params_m": 1.16, "macs_g": {"640": 10.9}, "source": "Table 1"},
    "litevit_2x": {"params_m": 2.19, "macs_g": {"640": 22.3}, "source": "Table 1"},
    "litevit_3x": {"params_m": 3.63, "macs_g": {"640": 38.0}, "source": "Table 1"},
    "poolformer_s12": {"params_m": 11.9, "macs_g": {"640": 45.2}, "source": "Table 1"},
    "litesam": {"params_m": 4.2, "macs_g": {"640": 12.7, "1024": 32.5}, "source": "Table 6"},
    "litesam_2x": {"params_m": None, "macs_g": {}, "source": "-"},
    "litesam_3x": {"params_m": None, "macs_g": {}, "source": "-"},
    "sam_vit_b": {"params_m": 90.0, "macs_g": {"1024": 371.0}, "source": "Table 6"},
    "timm:mobilenetv2_100": {"params_m": 1.89, "macs_g": {"640": 4.0}, "source": "Table 4"},
    "torchvision:shufflenet_v2_x1_0": {"params_m": 1.52, "macs_g": {"640": 5.1}, "source": "Table 4"},
    "timm:mobilevit_s": {"params_m": 5.57, "macs_g": {"640": 13.7}, "source": "Table 4"},
    "timm:efficientvit_b2": {"params_m": 30.73, "macs_g": {"640": 106.5}, "source": "Table 4 (closest timm model)"},
    "timm:fastvit_t8": {"params_m": 3.98, "macs_g": {"640": 7.0}, "source": "Table 4"},
    "timm:tiny_vit_5m_224": {"params_m": 6.07, "macs_g": {"640": 36.6}, "source": "Table 4"},
}


def _macs(model: str, side: str) -> float:
    return COMPLEXITY[model]["macs_g"][side]


# MAC ratios the complexity tables imply
COMPLEXITY_RATIOS: Dict[str, float] = {
    "litesam MACs 1024/640": _macs("litesam", "1024") / _macs("litesam", "640"),
    "litevit / poolformer_s12 MACs @640": _macs("litevit", "640") / _macs("poolformer_s12", "640"),
    "litevit_2x / litevit MACs @640": _macs("litevit_2x", "640") / _macs("litevit", "640"),
    "litevit_3x / litevit MACs @640": _macs("litevit_3x", "640") / _macs("litevit", "640"),
}

# Table 2 (AutoPPN ablations), in the paper's row order: (stem, GT & loss, object groups) -> Mask AR@1000 (%) on COCO
TABLE2_MASK_AR1000: Dict[Tuple[str, str, int], float] = {
    ("conv", "gaussian", 1): 48.8,  # baseline
    ("mspm", "gaussian", 1): 49.5,  # MSPM only
    ("conv", "distance", 1): 50.1,  # new GT & loss only
    ("conv", "gaussian", 3): 49.7,  # object grouping only
    ("mspm", "distance", 1): 51.4,
    ("mspm", "gaussian", 3): 52.3,
    ("conv", "distance", 3): 51.1,
    ("mspm", "distance", 3): 53.0,  # all three (the paper's AutoPPN)
}

# Table 7 (zero-shot edge detection, BSDS500 test, 200 images): method -> ODS, OIS, AP, R50 (None: not reported);
# the first rows are quoted by the paper from SAM
TABLE7_COLUMNS = ("ods", "ois", "ap", "r50")
TABLE7: Dict[str, Dict[str, Optional[float]]] = {
    "HED": {"ods": 0.788, "ois": 0.808, "ap": 0.840, "r50": 0.923},
    "EDETR": {"ods": 0.840, "ois": 0.858, "ap": 0.896, "r50": 0.930},
    "Sobel filter": {"ods": 0.539, "ois": None, "ap": None, "r50": None},
    "Canny": {"ods": 0.600, "ois": 0.640, "ap": 0.580, "r50": None},
    "Felz-Hutt": {"ods": 0.610, "ois": 0.640, "ap": 0.560, "r50": None},
    "SAM-H": {"ods": 0.768, "ois": 0.786, "ap": 0.794, "r50": 0.928},
    "Fast-SAM": {"ods": 0.750, "ois": 0.790, "ap": 0.793, "r50": 0.903},
    "Lite-SAM": {"ods": 0.761, "ois": 0.788, "ap": 0.793, "r50": 0.919},
}
