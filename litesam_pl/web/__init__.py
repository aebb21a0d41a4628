"""``litesam app``: a local Gradio page to look at a model (SegEvery, point/box prompts, comparisons).

- ``handlers``: the page's work as plain functions (no Gradio import; unit-tested without a server): reading the
  photo (an upload or a bundled scikit-image example), SegEvery with AutoPPN and its per-phase times, the
  grid-search baseline (``SamAutomaticMaskGenerator``), overlays and the COCO RLE JSON / PNG downloads;
- ``prompts``: the Prompt tab's clicks, ``SamPredictor`` point/box prompting and its pictures (no Gradio either);
- ``page``: the ``gr.Blocks`` that wires them to widgets (needs the ``app`` extra: ``pip install 'litesam-pl[app]'``).
- ``server``: ``main(argv)``, the ``litesam app`` command.
"""
