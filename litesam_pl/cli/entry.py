"""The ``litesam`` command.

    litesam fit --config recipes/litesam.yaml [--trainer.num_nodes 16 --trainer.devices 8] [--ckpt_path last]
    litesam fit --config recipes/litesam.yaml --config recipes/litesam_r1024.yaml   (a base, then its overlays)
    litesam validate --config recipes/litesam.yaml --config recipes/smoke/litesam.yaml --ckpt_path runs/smoke/litesam/last.ckpt
    litesam test --config ...
    litesam segment-everything ...      (litesam_pl.inference.app)
    litesam export --ckpt X --out Y     (litesam_pl.inference.export)
    litesam app [--ckpt X]              (litesam_pl.web.server: a local Gradio page)

``fit``/``validate``/``test``/``predict`` are LightningCLI subcommands: the model is any ``LiteSAMTaskBase`` subclass
(``model.class_path`` in the recipe: ``litesam_pl.modules.BackboneBoxModule``, ``AutoPPNModule``, ``LiteSAMModule``),
the data is ``litesam_pl.data.datamodule.SA1BDataModule``. W&B runs offline unless ``WANDB_MODE`` is set. What data and
model share (image size, AutoPPN size groups, target form -> point loss) is set once, in ``data``, and linked into
the model; the AutoPPN grid stride, a property of the network, is set in the model and linked into ``data``
(``litesam_pl.cli.config``).

Errors a user can act on (an unknown subcommand or option, a GPU recipe on a machine without CUDA, a model name or
file that cannot be used, a bad or contradictory config value, an output file of ``litesam predict`` that exists:
``errors.user_errors()``, e.g. ``CLIError``, ``litesam_pl.models.registry.ModelError``,
``litesam_pl.modules.config.ConfigError``) end in one line on stderr and exit
status 2, without a traceback; anything else is a bug and keeps its traceback.

This file is the entry point (``main``: help, version, the tools, the Lightning subcommands). The rest of the
``litesam_pl.cli`` package lives beside it: ``errors.py`` (the one-line errors, ``CLIError``, ``check_accelerator``),
``run.py`` (console noise, the run folder, warnings about the run), ``lightning.py`` (the LightningCLI subclass and
its parser: imports Lightning, so only when a Lightning subcommand runs), ``config.py`` (data <-> model links,
what the config errors need) and ``checks.py`` (the setting at fault in a command line jsonargparse refused). The
names tests and docs use are importable from ``litesam_pl.cli`` (its ``__init__`` re-exports them).
"""
from __future__ import annotations

import os
import sys
from typing import List, Optional, Sequence

from litesam_pl.cli.errors import (SUBCOMMANDS, TOOL_SUBCOMMANDS, CLIError, check_accelerator, fail, unknown_subcommand,
                                   user_errors)
from litesam_pl.cli.run import follow_run_dir, quiet_library_noise, warn_global_batch

__all__ = ["main", "run_lightning_cli", "check_accelerator", "quiet_library_noise", "CLIError", "SUBCOMMANDS",
           "TOOLS", "follow_run_dir", "warn_global_batch"]

# the tools' entry points: subcommand -> (module, function), the function called with the rest of the command line
TOOLS = {
    "segment-everything": ("litesam_pl.inference.app", "main"),
    "export": ("litesam_pl.inference.export", "main"),
    "app": ("litesam_pl.web.server", "main"),
}
assert tuple(TOOLS) == TOOL_SUBCOMMANDS
_HELP = """usage: litesam {fit,validate,test,predict,segment-everything,export,app} ...

Lite-SAM training and tools.

subcommands:
  fit                 train from a recipe:      litesam fit --config recipes/litesam.yaml
  validate, test      evaluate a checkpoint:    litesam validate --config R.yaml --ckpt_path X.ckpt
                      (test: --data.test_shards DIR, default the val shards; results in X.validate.json /
                      X.test.json beside the checkpoint, never over the run's metrics.json)
  predict             SegEvery over shards, segment-everything's files: litesam predict --config R.yaml
                      --ckpt_path X.ckpt --data.predict_shards DIR [--out DIR] [--overlays false]
                      (default a new runs/predict/predict<N>; any number of GPUs; photos: segment-everything)
  segment-everything  SegEvery on images        (litesam segment-everything --help)
  export              weights-only / ONNX export (litesam export --help)
  app                 a local web page to look at a model: SegEvery, prompts, compare (litesam app --ckpt X;
                      needs the app extra: pip install 'litesam-pl[app]')

Run `litesam fit --help` for every training option. W&B logs offline unless WANDB_MODE=online is set.
`litesam --version` prints the version.
"""


def run_lightning_cli(args: Optional[Sequence[str]] = None, run: bool = True):
    """Build (and by default run) the LightningCLI on ``args``; returns the CLI object. A GPU recipe without CUDA
    raises ``CLIError`` before the Trainer is built; a bad option exits with one error line (status 2)."""
    quiet_library_noise()  # before Lightning is imported
    from litesam_pl.cli.lightning import LiteSAMCLI, ShortErrorParser
    from litesam_pl.data.datamodule import SA1BDataModule
    from litesam_pl.modules.base import LiteSAMTaskBase

    return LiteSAMCLI(
        model_class=LiteSAMTaskBase,
        subclass_mode_model=True,
        datamodule_class=SA1BDataModule,
        args=None if args is None else list(args),
        run=run,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,  # the optimizer and its schedule are the module's (model.init_args.optimizer)
        parser_kwargs={"prog": "litesam", "description": "Lite-SAM training (LightningCLI).",
                       "predict": {"prediction_writer": True}},  # --out, --overlays (ShortErrorParser)
        parser_class=ShortErrorParser,
    )


def _run_tool(name: str, argv: Sequence[str]) -> None:
    """``segment-everything`` / ``export``: the tool's ``main(argv)``; a non-zero return is the exit status."""
    import importlib

    mod, fn = TOOLS[name]
    result = getattr(importlib.import_module(mod), fn)(list(argv))
    if isinstance(result, int) and result:
        raise SystemExit(result)


def _version() -> str:
    from litesam_pl import __version__

    return f"litesam-pl {__version__}"


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point of the ``litesam`` console script."""
    args: List[str] = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_HELP)
        return
    if args[0] in ("-V", "--version"):
        print(_version())
        return
    if not args[0].startswith("-") and args[0] not in SUBCOMMANDS:
        unknown_subcommand(args[0], SUBCOMMANDS)
    prog = f"litesam {args[0]}" if not args[0].startswith("-") else "litesam"
    try:
        if args[0] in TOOLS:
            _run_tool(args[0], args[1:])
            return
        os.environ.setdefault("WANDB_MODE", "offline")  # no key, no network unless the user asks for it
        run_lightning_cli(None if argv is None else args)
    except user_errors() as err:
        fail(prog, " ".join(str(err).split()))


if __name__ == "__main__":
    main()
