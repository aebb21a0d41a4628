"""The ``litesam`` command (the front end): ``litesam fit|validate|test|predict`` (LightningCLI) and the tools
(``segment-everything``, ``export``, ``app``).

- ``entry.py``: the entry point (``main``: help, version, the tools, the Lightning subcommands; ``run_lightning_cli``);
- ``errors.py``: the one-line errors (``CLIError``, ``check_accelerator``, did-you-mean);
- ``run.py``: console noise, the run folder, warnings about the run;
- ``lightning.py``: the LightningCLI subclass and its parser (imports Lightning, so only when a Lightning
  subcommand runs: ``litesam --help`` and the tools stay light);
- ``config.py``: the data <-> model links, what the config errors need, old checkpoints' hyper-parameters;
- ``checks.py``: the setting at fault in a command line jsonargparse refused.

The names tests and docs use are importable from here; ``python -m litesam_pl.cli`` runs ``main`` (``__main__.py``).
"""
from __future__ import annotations

from litesam_pl.cli.entry import (SUBCOMMANDS, TOOL_SUBCOMMANDS, TOOLS, CLIError, check_accelerator, fail,
                                  follow_run_dir, main, quiet_library_noise, run_lightning_cli, unknown_subcommand,
                                  user_errors, warn_global_batch)
from litesam_pl.cli.run import quiet_run

__all__ = ["main", "run_lightning_cli", "check_accelerator", "quiet_library_noise", "quiet_run", "CLIError",
           "SUBCOMMANDS", "TOOLS", "follow_run_dir", "warn_global_batch"]
