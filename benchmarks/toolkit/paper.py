"""The Lite-SAM paper's figures, once: one dict per table (named by table and column), imported where printed
(``benchmarks.complexity``: Tables 1, 4, 6; ``benchmarks.table2``: Table 2; ``benchmarks._eval_score`` for
``benchmarks.coco`` / ``lvis``: Tables 5, 6; ``benchmarks.bsds``: Table 7) and by the tests that compare with them.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

__all__ = ["COMPLEXITY", "COMPLEXITY_RATIO_PAIRS", "COMPLEXITY_RATIOS", "TABLE2_MASK_AR1000", "TABLE5_6",
           "TABLE5_6_R1024", "TABLE7_COLUMNS", "TABLE7"]

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

# the MAC ratios compared with ours (absolute MACs depend on the counter): name -> ((model, side), (model, side)),
# numerator over denominator
COMPLEXITY_RATIO_PAIRS: Dict[str, Tuple[Tuple[str, str], Tuple[str, str]]] = {
    "litesam MACs 1024/640": (("litesam", "1024"), ("litesam", "640")),
    "litevit / poolformer_s12 MACs @640": (("litevit", "640"), ("poolformer_s12", "640")),
    "litevit_2x / litevit MACs @640": (("litevit_2x", "640"), ("litevit", "640")),
    "litevit_3x / litevit MACs @640": (("litevit_3x", "640"), ("litevit", "640")),
}


def _macs(model_side: Tuple[str, str]) -> float:
    model, side = model_side
    return COMPLEXITY[model]["macs_g"][side]


# those ratios in the paper's tables
COMPLEXITY_RATIOS: Dict[str, float] = {k: _macs(num) / _macs(den) for k, (num, den) in COMPLEXITY_RATIO_PAIRS.items()}

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

# Lite-SAM (ours in the paper) per dataset, percent: Table 5 (1-box / 1-point mIoU, AP, AP_S/M/L) and Table 6 (Mask
# AR@1000, COCO only; None: not reported), at r640 and at r1024
TABLE5_6: Dict[str, Dict[str, Optional[float]]] = {
    "coco": {"miou_1box": 74.8, "miou_1point": 55.8, "ap": 55.8, "ap_s": 46.7, "ap_m": 59.6, "ap_l": 69.6,
             "ar1000": 52.8},
    "lvis": {"miou_1box": 73.2, "miou_1point": 54.4, "ap": 58.4, "ap_s": 45.9, "ap_m": 66.9, "ap_l": 77.5,
             "ar1000": None},
}
TABLE5_6_R1024: Dict[str, Dict[str, Optional[float]]] = {
    "coco": {"miou_1box": 76.3, "miou_1point": 56.9, "ap": 56.5, "ap_s": 47.4, "ap_m": 61.0, "ap_l": 70.7,
             "ar1000": 54.1},
    "lvis": {"miou_1box": 75.7, "miou_1point": 57.3, "ap": 60.7, "ap_s": 49.3, "ap_m": 71.9, "ap_l": 79.8,
             "ar1000": None},
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
