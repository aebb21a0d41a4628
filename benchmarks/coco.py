"""MSCOCO 2017 zero-shot segmentation (Lite-SAM Table 5, COCO columns; Table 6, Mask AR@1000).

- 1-box / 1-point mIoU: GT box / the GT mask's farthest interior point as the prompt; each read from the output
  training supervises (--mask-select prompt_form: the single-mask output for a box, the highest predicted IoU
  of the 3 multimask outputs for a point); IoU at original resolution; overall and small/medium/large
  (COCO area ranges 32^2, 96^2 on the annotation's area). Crowd annotations (iscrowd=1) are not prompted.
- Mask AP / AP_S/M/L (pycocotools): GT boxes as prompts (paper's note (3)); each mask keeps the GT category
  and takes its predicted IoU as score.
- Mask AR@1000: class-agnostic COCOeval (useCats=0) of SegEvery proposals under SAM's proposal protocol.
- Classical references (benchmarks.baselines; --no-baselines to skip): 1-box mIoU of "box fill" (the GT box
  as the mask) and GrabCut (cv2.grabCut from the GT box, 5 iterations) on the same instances; JSON "baselines".

Examples:
  python -m benchmarks.coco --ann ../shared/data/coco2017_subset/annotations/instances_val2017_subset.json \\
      --images ../shared/data/coco2017_subset/val2017 --ckpt litesam.pt --json results/coco.json
  python -m benchmarks.coco --ann instances_val2017.json --images val2017 --limit 2 --img-size 256 \\
      --skip-ar --json /tmp/coco.json      # random weights: pipeline check only
  python -m benchmarks.coco --ann instances_val2017.json --images val2017 --baselines-only \\
      --json results/coco_baselines.json   # box fill + GrabCut only: no model, no --ckpt
  torchrun --nproc_per_node 8 -m benchmarks.coco --ann instances_val2017.json --images val2017 \\
      --ckpt litesam.pt --device cuda --json results/coco.json   # 8 GPUs: the numbers of one process

Several devices (torchrun): each rank takes every N-th image id and runs it on cuda:<LOCAL_RANK> (--device cpu:
N CPU processes); rank 0 gathers the IoUs, detections, proposals and baselines, restores the one-process order and
alone prints and writes the JSON (identical to one process but for world_size, device and the seconds_* fields).
"""
from __future__ import annotations

import sys
from typing import Any, Sequence

from benchmarks._eval_common import main_for


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return main_for("coco", argv, __doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
