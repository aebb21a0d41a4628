"""Evaluation-only code, apart from what a user runs on images: prompts made from ground truth for the COCO / LVIS
protocols (``prompting``) and the edge maps of the BSDS500 benchmark (``edges``). The benchmarks (``benchmarks/``)
and tests import it; nothing under ``inference/``, ``web/`` or ``cli/`` does."""
