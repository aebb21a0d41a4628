"""The LightningCLI of ``litesam fit|validate|test|predict`` (``litesam_pl.cli.run_lightning_cli`` builds it).

``LiteSAMCLI``: LightningCLI with the checks and quieting of ``litesam`` (a GPU recipe without CUDA, linked values set
by hand, one-line config errors, ``--ckpt_path`` hyper-parameters of older checkpoints, the prediction writer);
``ShortErrorParser``: its parser, whose errors are one line. This module imports Lightning; ``litesam_pl.cli``
imports it only when a Lightning subcommand runs (``litesam --help`` and the tools stay light). It uses LightningCLI's
public hooks, but for one private method (``_parse_ckpt_path``: see ``litesam_pl.compat``).
"""
from __future__ import annotations

import os
import sys
from typing import Any, Optional, Sequence

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from litesam_pl.cli.checks import command_line, refused_setting
from litesam_pl.cli.config import add_links, ckpt_model_config, config_error_in, linked_value_set_by_user
from litesam_pl.cli.errors import (CLIError, check_accelerator, fail, jsonargparse_message, parse_error_line,
                                   recipe_files, unknown_subcommand)
from litesam_pl.cli.run import follow_run_dir, quiet_run, quiet_wandb, warn_global_batch, warn_random_weights
from litesam_pl.compat import argparse_option_strings, jsonargparse_debug_mode_active
from litesam_pl.modules.prediction_writer import add_writer_arguments, attach_writer

__all__ = ["LiteSAMCLI", "ShortErrorParser"]


class ShortErrorParser(LightningArgumentParser):
    """``LightningArgumentParser`` whose errors are the error line first (with a did-you-mean for an unknown option)
    and a one-line ``--help`` hint, instead of ~70 lines of usage before the line that matters.

    ``prediction_writer``: the parser of ``litesam predict``, which takes the prediction writer's options (``--out``,
    ``--overlays``: ``LiteSAMCLI.add_arguments_to_parser``). ``argv``: the command line it parses (``LiteSAMCLI``
    sets it), where an error looks for the setting at fault (``litesam_pl.cli.checks``)."""

    def __init__(self, *args: Any, prediction_writer: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prediction_writer = prediction_writer
        self.argv: Sequence[str] = ()

    def error(self, message: str, ex: Optional[Exception] = None):  # noqa: D102 (jsonargparse's signature)
        if not self.exit_on_error or jsonargparse_debug_mode_active():  # as jsonargparse's own error()
            return super().error(message, ex)
        choice = jsonargparse_message("invalid_subcommand", message)
        if choice:
            unknown_subcommand(choice["name"])
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        known = [o for o in argparse_option_strings(parser) if o.startswith("--")]
        line = parse_error_line(message, ex, known, lambda: refused_setting(self.argv))
        no_recipe = jsonargparse_message("model_required", message)
        if no_recipe:  # `litesam fit` without --config
            prog = f"litesam {no_recipe['subcommand']}"
            line += f" (give a recipe: {prog} --config recipes/<stage>.yaml)"
        fail(prog, line, f"run `{prog} --help` for every option")


class LiteSAMCLI(LightningCLI):
    """LightningCLI with ``litesam``'s checks before the classes are built and before each run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._parsers: list = []  # the subcommand parsers (add_arguments_to_parser), told the command line
        super().__init__(*args, **kwargs)

    def before_instantiate_classes(self) -> None:
        """Refuse a GPU trainer on a machine without CUDA (one line, see ``check_accelerator``); let the
        loggers and checkpoints follow ``--trainer.default_root_dir`` (``follow_run_dir``)."""
        sub = self.subcommand
        cfg = self.config[sub] if sub else self.config
        check_accelerator(cfg)
        follow_run_dir(cfg)
        refused = linked_value_set_by_user(recipe_files(cfg), self._argv, cfg)
        if refused:
            raise CLIError(refused)

    def parse_arguments(self, parser: Any, args: Any) -> None:
        """LightningCLI's, with the command line told to the parsers first (where an error looks for the setting at
        fault): ``args`` (else ``sys.argv``) as ``litesam_pl.cli.checks.command_line`` reads it, a dict or
        ``Namespace`` (which LightningCLI parses with ``parse_object``) as one more config source. Such a dict's
        link targets are left to the links (``before_instantiate_classes`` refuses the ones options and recipe
        files set)."""
        self._argv = command_line(sys.argv[1:] if args is None else args)
        for each in (parser, *self._parsers):
            each.argv = self._argv  # where their errors look for the setting at fault
        super().parse_arguments(parser, args)

    def instantiate_classes(self) -> None:
        """As LightningCLI's; a bad value of a config part (``ConfigError``, which jsonargparse wraps in a
        dump of the whole model config) is one line."""
        try:
            super().instantiate_classes()
        except (TypeError, ValueError) as err:
            config_error = config_error_in(err)
            if config_error is None:
                raise
            raise CLIError(str(config_error)) from err

    # a private LightningCLI method: litesam_pl/compat.py's docstring, "Overrides" (checked with lightning 2.6.6)
    def _parse_ckpt_path(self) -> None:
        """LightningCLI's reading of the ``--ckpt_path`` checkpoint's hyper-parameters into the config, with a
        checkpoint written before the typed config parts (flat ``lr``, ``model_kwargs``, ...) upgraded to them
        and the values the data links into the model left to the data (``upgrade_ckpt_hparams``)."""
        sub = self.config.get("subcommand")
        ckpt_path = self.config[sub].get("ckpt_path") if sub else None
        model = ckpt_model_config(ckpt_path) if ckpt_path and os.path.isfile(ckpt_path) else None
        if not model:
            return
        try:
            self.config = self.parser.parse_object({sub: {"model": model}}, self.config)
        except SystemExit:
            sys.stderr.write("Parsing of ckpt_path hyperparameters failed!\n")
            raise

    def _before_run(self) -> None:
        """Quiet the library notices of this run (``quiet_wandb``, ``quiet_run``) and warn before scoring
        random weights (``warn_random_weights``)."""
        sub = self.subcommand
        ckpt_path = self.config_init[sub].get("ckpt_path") if sub else None
        quiet_wandb(self.trainer)
        quiet_run(self.trainer, sub, ckpt_path)
        warn_random_weights(sub, self.model, ckpt_path)
        if sub == "fit":
            warn_global_batch(self.trainer, self.datamodule)
        if hasattr(self.model, "check_datamodule"):
            self.model.check_datamodule(self.datamodule)  # data vs model: one line naming both options
        if sub and hasattr(self.datamodule, "check_shards"):
            self.datamodule.check_shards(sub)  # a missing shard path: one line naming the option, now

    before_fit = before_validate = before_test = _before_run

    def add_arguments_to_parser(self, parser: Any) -> None:
        """The data <-> model links (``add_links``); on ``litesam predict``'s parser (``parser_kwargs`` of
        ``run_lightning_cli``), also ``--out`` and ``--overlays`` (``litesam_pl.modules.prediction_writer``)."""
        add_links(parser)
        if getattr(parser, "prediction_writer", False):
            add_writer_arguments(parser)
        self._parsers.append(parser)

    def before_predict(self) -> None:
        """``_before_run``, then a ``SegEveryWriter`` unless the callbacks have a prediction writer; the
        predictions are not also kept in memory (they are on disk)."""
        self._before_run()
        cfg = self.config_init["predict"]
        if attach_writer(self.trainer, cfg.get("out"), cfg.get("overlays", True), not cfg.get("ckpt_path")):
            if cfg.get("return_predictions") is None:
                cfg["return_predictions"] = False
