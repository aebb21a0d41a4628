"""LVIS zero-shot segmentation (Lite-SAM Table 5, LVIS columns), on the official LVIS annotation file.

Same protocol as ``benchmarks.coco`` (1-box / 1-point mIoU, mask AP with GT boxes as prompts), scored with
the official LVIS evaluator (federated: negative and not-exhaustive categories; 300 detections per image)
and reported with AP_r / AP_c / AP_f. LVIS images are COCO images: they are found in ``--images`` (COCO's
``val2017/``) through each record's ``coco_url`` / id, not its ``file_name``. Images without a file are
skipped and counted (``missing_images`` in the JSON). AR@1000 (class-agnostic, not in the paper for LVIS)
is computed as for COCO unless --skip-ar. The classical 1-box references (box fill, GrabCut; JSON
"baselines") run as for COCO (--no-baselines, --baselines-only).

Example:
  python -m benchmarks.lvis --ann ../shared/data/lvis_v0.5_val100/annotations/lvis_v0.5_val100_subset.json \\
      --images ../shared/data/lvis_v0.5_val100/val2017 --ckpt litesam.pt --json results/lvis.json
  torchrun --nproc_per_node 8 -m benchmarks.lvis --ann lvis_v1_val.json --images val2017 --ckpt litesam.pt \\
      --device cuda --json results/lvis.json   # 8 GPUs, as benchmarks.coco: the numbers of one process
"""
from __future__ import annotations

import sys
from typing import Any, Sequence

from benchmarks._eval_common import main_for


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return main_for("lvis", argv, __doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
