"""Prompt forms: which prompt the decoder is given and which of its outputs that prompt trains and is read from.

One place that training (``litesam_pl.modules``), SegEvery (``litesam_pl.inference.segevery``) and the benchmarks
read, so evaluation always uses an output that training supervises (tests tie them together):

- ``"box"``: one box, the single-mask output (SAM's token 0, ``multimask_output=False``).
- ``"point"``: one foreground point, the three ambiguity outputs (tokens 1-3, ``multimask_output=True``); training
  back-propagates the min-loss one, inference picks the highest predicted IoU.
- ``"point+box"``: a point and a box together (AutoPPN's proposal form), the single-mask output.

``SEGEVERY_PROMPT_FORM`` is the form SegEvery feeds AutoPPN's proposals in by default; the joint training stage
trains every form of ``TRAINED_PROMPT_FORMS``.
SegEvery's ``multimask_output=None`` default is ``multimask_output_for(prompt_type)`` (``"point"`` for grid
prompts); the COCO / LVIS benchmarks' default ``--mask-select prompt_form`` reads 1-box and 1-point prompts with
``multimask_output_for("box")`` / ``multimask_output_for("point")`` (``benchmarks._eval_prompting.mask_select_for``).
"""
from __future__ import annotations

__all__ = ["PROMPT_FORMS", "TRAINED_PROMPT_FORMS", "SEGEVERY_PROMPT_FORM", "multimask_output_for"]

# form -> multimask_output of the decoder call that trains / reads it
PROMPT_FORMS = {"box": False, "point": True, "point+box": False}
# the forms the joint stage trains (every form SegEvery and the benchmarks may use by default)
TRAINED_PROMPT_FORMS = ("box", "point", "point+box")
# AutoPPN proposals are a point and a box: SegEvery gives the decoder both
SEGEVERY_PROMPT_FORM = "point+box"


def multimask_output_for(form: str) -> bool:
    """``multimask_output`` of the decoder call for prompt ``form`` (see ``PROMPT_FORMS``)."""
    try:
        return PROMPT_FORMS[form]
    except KeyError:
        raise ValueError(f"unknown prompt form {form!r}; use one of {tuple(PROMPT_FORMS)}") from None
