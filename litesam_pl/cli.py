"""The ``litesam`` command.

    litesam fit --config recipes/litesam.yaml [--trainer.num_nodes 16 --trainer.devices 8] [--ckpt_path last]
    litesam fit --config recipes/litesam.yaml --config recipes/litesam_r1024.yaml   (a base, then its overlays)
    litesam validate --config recipes/litesam.yaml --config recipes/smoke/litesam.yaml --ckpt_path runs/smoke/litesam/last.ckpt
    litesam test --config ...
    litesam segment-everything ...      (litesam_pl.inference.app)
    litesam export --ckpt X --out Y     (litesam_pl.inference.export)

``fit``/``validate``/``test``/``predict`` are LightningCLI subcommands: the model is any ``LiteSAMTaskBase`` subclass
(``model.class_path`` in the recipe: ``litesam_pl.modules.BackboneBoxModule``, ``AutoPPNModule``, ``LiteSAMModule``),
the data is ``litesam_pl.data.datamodule.SA1BDataModule``. W&B runs offline unless ``WANDB_MODE`` is set.
"""
from __future__ import annotations

import os
import sys
from typing import List, Optional, Sequence

__all__ = ["main", "run_lightning_cli"]

_TOOLS = {
    "segment-everything": ("litesam_pl.inference.app", "main"),
    "export": ("litesam_pl.inference.export", "main"),
}
_HELP = """usage: litesam {fit,validate,test,predict,segment-everything,export} ...

Lite-SAM training and tools.

subcommands:
  fit                 train from a recipe:      litesam fit --config recipes/litesam.yaml
  validate, test      evaluate a checkpoint:    litesam validate --config R.yaml --ckpt_path X.ckpt
  predict             LightningCLI predict
  segment-everything  SegEvery on images        (litesam segment-everything --help)
  export              weights-only / ONNX export (litesam export --help)

Run `litesam fit --help` for every training option. W&B logs offline unless WANDB_MODE=online is set.
"""


def run_lightning_cli(args: Optional[Sequence[str]] = None, run: bool = True):
    """Build (and by default run) the LightningCLI on ``args``; returns the CLI object."""
    from lightning.pytorch.cli import LightningCLI

    from litesam_pl.data.datamodule import SA1BDataModule
    from litesam_pl.modules.base import LiteSAMTaskBase

    return LightningCLI(
        model_class=LiteSAMTaskBase,
        subclass_mode_model=True,
        datamodule_class=SA1BDataModule,
        args=None if args is None else list(args),
        run=run,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"description": "Lite-SAM training (LightningCLI)."},
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point of the ``litesam`` console script."""
    args: List[str] = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in _TOOLS:
        import importlib

        mod, fn = _TOOLS[args[0]]
        result = getattr(importlib.import_module(mod), fn)(args[1:])
        if isinstance(result, int) and result:
            raise SystemExit(result)
        return
    if not args or args[0] in ("-h", "--help"):
        print(_HELP)
        return
    os.environ.setdefault("WANDB_MODE", "offline")  # no key, no network unless the user asks for it
    run_lightning_cli(None if argv is None else args)


if __name__ == "__main__":
    main()
