"""What ``litesam fit|validate|test|predict`` does around a Lightning run (``litesam_pl.cli``).

Console noise: the library messages every Lightning command printed (``quiet_library_noise``, ``quiet_wandb``,
``quiet_run``); warnings about the run itself (``warn_random_weights``, ``warn_global_batch``); the run folder
(``follow_run_dir``: loggers and checkpoints follow ``--trainer.default_root_dir``). Standard library only at
import time; ``litesam_pl.cli`` re-exports the public names.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Any, Optional

__all__ = ["quiet_library_noise", "quiet_wandb", "quiet_run", "warn_random_weights", "follow_run_dir",
           "warn_global_batch", "PAPER_GLOBAL_BATCH"]


# --- console noise ---------------------------------------------------------------------------------------------------
# Messages about the libraries, not about the run, that every Lightning command printed. Each filter names one message
# precisely; every other warning (and these same messages where they can matter, see ``quiet_run``) still shows.
_NOISY_WARNINGS = (
    # torch >= 2.10 deprecates ``LeafSpec``; lightning.pytorch.utilities._pytree still builds one (their code, not ours)
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
    # SA1BDataModule's streams define ``__len__`` (samples per rank) and split shards per rank and per worker
    # themselves, which is the case this warning says to take care of
    (r"Your `IterableDataset` has `__len__` defined", UserWarning),
)
# Lightning's advertisement, logged at INFO by rank_zero_info on every Trainer (no switch turns it off); the logger that
# carries it is whichever of these imported last (each reassigns lightning_utilities' ``rank_zero_module.log``)
_NOISY_LOG_LINES = ("💡 Tip: For seamless cloud logging",)
_RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                      "lightning_fabric.utilities.rank_zero", "pytorch_lightning.utilities.rank_zero",
                      "lightning_utilities.core.rank_zero")
# ModelCheckpoint notices that are noise in some cases only (``quiet_run``)
_CKPT_DIR_NOT_EMPTY = "Checkpoint directory {} exists and is not empty."
_CKPT_DIRPATH_CHANGED = r"The dirpath has changed from .* therefore `best_model_score`"
_EVAL_SUBCOMMANDS = ("validate", "test", "predict")


def _drop_noisy_lines(record: Any) -> bool:
    """``logging`` filter: ``False`` for a record that is one of ``_NOISY_LOG_LINES``."""
    try:
        message = str(record.getMessage())
    except Exception:  # noqa: BLE001 - a record that cannot format itself is not ours to drop
        return True
    return not message.startswith(_NOISY_LOG_LINES)


def quiet_library_noise() -> None:
    """Silence the library messages of ``_NOISY_WARNINGS`` / ``_NOISY_LOG_LINES`` (idempotent)."""
    import logging
    import warnings

    for message, category in _NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name in _RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if _drop_noisy_lines not in logger.filters:
            logger.addFilter(_drop_noisy_lines)


def quiet_wandb(trainer: Any) -> None:
    """Before a WandbLogger starts its run: drop the ``anonymous=None`` that Lightning passes to ``wandb.init`` (wandb
    >= 0.19 prints ``WARNING The anonymous setting has no effect`` for any value given, None included), and create its
    ``save_dir``, which wandb takes as the root of its git lookup (``WARNING git root X does not exist`` and no commit
    recorded when it is not there yet; inside a checkout the run then records the commit). The logger's
    ``wandb.init`` arguments: ``litesam_pl.compat.wandb_logger_init_kwargs``."""
    from litesam_pl.compat import wandb_logger_init_kwargs

    for logger in getattr(trainer, "loggers", None) or ():
        init = wandb_logger_init_kwargs(logger)
        if init is None:
            continue
        if init.get("anonymous", "absent") is None:
            init.pop("anonymous")
        save_dir = init.get("dir")
        if save_dir and "://" not in str(save_dir):
            os.makedirs(save_dir, exist_ok=True)


def quiet_run(trainer: Any, subcommand: str, ckpt_path: Any) -> None:
    """ModelCheckpoint's notices where they say nothing about this run: ``Checkpoint directory X exists and is not
    empty`` when X holds no checkpoint (only this run's logs, metrics.json, images) or the run resumes (``ckpt_path``),
    and, for validate/test/predict (nothing is saved), ``The dirpath has changed``. A fit into a directory holding
    another run's checkpoints, or resuming into a new directory, still warns."""
    import glob
    import warnings

    if subcommand in _EVAL_SUBCOMMANDS:
        warnings.filterwarnings("ignore", message=_CKPT_DIRPATH_CHANGED, category=UserWarning)
        return
    for cb in getattr(trainer, "checkpoint_callbacks", None) or ():
        dirpath = getattr(cb, "dirpath", None)
        if not dirpath or "://" in str(dirpath):
            continue
        if ckpt_path or not glob.glob(os.path.join(glob.escape(str(dirpath)), "*.ckpt")):
            warnings.filterwarnings("ignore", message=re.escape(_CKPT_DIR_NOT_EMPTY.format(dirpath)),
                                    category=UserWarning)


def warn_random_weights(subcommand: str, model: Any, ckpt_path: Any) -> None:
    """One stderr line before ``validate``/``test`` without ``--ckpt_path`` nor ``model.init_args.init_from``, and
    before ``predict`` without ``--ckpt_path``."""
    if subcommand not in _EVAL_SUBCOMMANDS or ckpt_path:
        return
    hparams = getattr(model, "hparams", None) or {}
    if hparams.get("init_from") and subcommand != "predict":
        return  # NB: LiteSAMTaskBase applies init_from in fit only; MetricsJSON still warns after such a run
    verb = {"validate": "validating", "test": "testing", "predict": "predicting with"}[subcommand]
    sys.stderr.write(f"litesam {subcommand}: warning: no --ckpt_path: {verb} random weights (pass --ckpt_path PATH)\n")
    sys.stderr.flush()


def _get(ns: Any, key: str) -> Any:
    return ns.get(key) if isinstance(ns, dict) else getattr(ns, key, None)


def _set(ns: Any, key: str, value: Any) -> None:
    if isinstance(ns, dict):
        ns[key] = value
    else:
        setattr(ns, key, value)


def follow_run_dir(cfg: Any) -> Optional[str]:
    """Move the loggers' ``save_dir`` and ``ModelCheckpoint``'s ``dirpath`` to ``trainer.default_root_dir`` when
    they all name one other folder (a recipe's run folder that ``--trainer.default_root_dir`` overrode): every
    recipe writes its run folder in those three places, and Lightning moves none of them itself. A config whose
    loggers and checkpoints name different folders is left alone. Returns the folder they moved from, or None."""
    trainer = _get(cfg, "trainer")
    root = _get(trainer, "default_root_dir") if trainer is not None else None
    if not root:
        return None
    slots = []  # (init_args namespace, key)
    loggers = _get(trainer, "logger")
    for item in loggers if isinstance(loggers, list) else []:
        args = _get(item, "init_args")
        if args is not None and _get(args, "save_dir"):
            slots.append((args, "save_dir"))
    for item in _get(trainer, "callbacks") or []:
        args = _get(item, "init_args")
        if str(_get(item, "class_path") or "").endswith("ModelCheckpoint") and args is not None and _get(args, "dirpath"):
            slots.append((args, "dirpath"))
    dirs = {os.path.normpath(str(_get(a, k))) for a, k in slots}
    if len(dirs) != 1 or dirs == {os.path.normpath(str(root))}:
        return None
    for args, key in slots:
        _set(args, key, str(root))
    return dirs.pop()


PAPER_GLOBAL_BATCH = 256  # Sec. 4.2: 128 A40s x 2 images


def warn_global_batch(trainer: Any, datamodule: Any) -> Optional[str]:
    """One warning line when a multi-GPU run's global batch (ranks x ``data.batch_size``) is not the paper's 256
    (the recipes keep 16 nodes x 8 GPUs x 2; on other clusters ``data.batch_size`` or the learning rate must follow).
    Single-process runs (CPU smoke, one GPU) are scale overlays on purpose and are not warned about."""
    world = int(getattr(trainer, "world_size", 1) or 1)
    batch = int(getattr(datamodule, "batch_size", 0) or 0)
    if world <= 1 or not batch or world * batch == PAPER_GLOBAL_BATCH:
        return None
    nodes, devices = int(getattr(trainer, "num_nodes", 1) or 1), world // max(1, int(getattr(trainer, "num_nodes", 1) or 1))
    fit = PAPER_GLOBAL_BATCH / world
    hint = (f"--data.batch_size {int(fit)}" if fit == int(fit) else
            f"a global batch of 256 (e.g. nodes x devices = {PAPER_GLOBAL_BATCH // 2} with batch 2)")
    msg = (f"litesam fit: warning: global batch = {nodes} nodes x {devices} devices x data.batch_size {batch} = "
           f"{world * batch}, not the paper's {PAPER_GLOBAL_BATCH} (lr 4e-5 is set for 256): use {hint}, or scale "
           f"the learning rate")
    sys.stderr.write(msg + "\n")
    return msg
