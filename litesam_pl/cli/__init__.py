"""The ``litesam`` command (the front end): ``litesam fit|validate|test|predict`` (LightningCLI) and the tools
(``segment-everything``, ``export``, ``app``).

- ``entry.py``: the entry point (``main``: help, version, the tools, the Lightning subcommands; ``run_lightning_cli``);
- ``errors.py``: the one-line errors (``CLIError``, ``check_accelerator``, did-you-mean);
- ``run.py``: console noise, the run folder, warnings about the run;
- ``lightning.py``: the LightningCLI subclass and its parser (imports Lightning, so only when a Lightning
  subcommand runs: ``litesam --help`` and the tools stay light);
- ``config.py``: the data <-> model links, one-line config errors, old checkpoints' hyper-parameters.

The names tests and docs use are importable from here; ``python -m litesam_pl.cli`` runs ``main`` (``__main__.py``).
"""
from __future__ import annotations

from litesam_pl.cli.entry import (_TOOLS, SUBCOMMANDS, TOOL_SUBCOMMANDS, CLIError, _quiet_run, check_accelerator, fail,
                                  follow_run_dir, main, quiet_library_noise, run_lightning_cli, unknown_subcommand,
                                  user_errors, warn_global_batch)

__all__ = ["main", "run_lightning_cli", "check_accelerator", "quiet_library_noise", "CLIError", "SUBCOMMANDS",
           "follow_run_dir", "warn_global_batch"]
