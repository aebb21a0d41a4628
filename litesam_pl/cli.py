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
the model (``litesam_pl.cli_config``).

Errors a user can act on (an unknown subcommand or option, a GPU recipe on a machine without CUDA, a model name or
file that cannot be used, a bad or contradictory config value: ``CLIError``, ``litesam_pl.models.registry.ModelError``,
``litesam_pl.modules.config.ConfigError``) end in one line on stderr and exit
status 2, without a traceback; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import difflib
import os
import re
import sys
from typing import Any, List, Optional, Sequence

__all__ = ["main", "run_lightning_cli", "check_accelerator", "quiet_library_noise", "CLIError", "SUBCOMMANDS"]

_TOOLS = {
    "segment-everything": ("litesam_pl.inference.app", "main"),
    "export": ("litesam_pl.inference.export", "main"),
    "app": ("litesam_pl.web.server", "main"),
}
_LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")
SUBCOMMANDS = (*_LIGHTNING_SUBCOMMANDS, *_TOOLS)
# what a GPU recipe needs on a CPU-only machine (tests/test_cli.py's LOCAL, less the logger)
_CPU_OVERRIDES = ("--trainer.accelerator cpu --trainer.devices 1 --trainer.num_nodes 1 --trainer.strategy auto "
                  "--trainer.precision 32-true")
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


class CLIError(ValueError):
    """A command line the user can fix (unknown subcommand, a GPU recipe without CUDA): one line, no traceback."""


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    """``did you mean 'x'?`` for the closest of ``choices`` (difflib), or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}?" if close else ""


def _fail(prog: str, message: str, hint: str = "") -> None:
    """Print ``prog: error: message`` (+ a short hint line) on stderr and exit with status 2."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    if hint:
        sys.stderr.write(f"{hint}\n")
    raise SystemExit(2)


def _unknown_subcommand(name: str) -> None:
    """Exit (status 2) naming every subcommand and the closest one."""
    guess = _did_you_mean(name, SUBCOMMANDS)
    _fail("litesam", f"unknown subcommand {name!r}" + (f"; {guess}" if guess else ""),
          f"subcommands: {', '.join(SUBCOMMANDS)} (litesam --help)")


def _unrecognized_options(message: str) -> List[str]:
    """The ``--option`` names in jsonargparse's ``unrecognized arguments: --a 3 --b=x`` message."""
    if "unrecognized arguments" not in message:
        return []
    rest = message.split("unrecognized arguments:", 1)[1]
    return [tok.split("=", 1)[0] for tok in rest.split() if tok.startswith("--")]


def _rejected_init_arg(message: str) -> str:
    """One line for jsonargparse's multi-line ``Parser key "model": ... class_path 'X': Option 'y' is not
    accepted`` (an unknown ``--model.init_args.y``), with a did-you-mean; ``""`` for any other message."""
    from litesam_pl.cli_config import init_options, suggest_option

    m = re.search(r'Parser key "([^"]+)".*?class_path \'([^\']+)\'.*?Option \'([^\']+)\' is not accepted', message,
                  re.S)
    if not m:
        return ""
    key, class_path, option = m.groups()
    guess = suggest_option(option, init_options(class_path))
    return (f"unrecognized option --{key}.init_args.{option}: {class_path.rsplit('.', 1)[-1]} has no argument "
            f"{option!r}" + (f" ({guess})" if guess else ""))


def _short(message: str, max_lines: int = 3) -> str:
    """A short multi-line parser message on one line; a longer one (a validation dump) as it is."""
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    return " ".join(lines) if len(lines) <= max_lines else message.rstrip()


def _parser_class():
    """``LightningArgumentParser`` whose errors are the error line first (with a did-you-mean for an unknown option)
    and a one-line ``--help`` hint, instead of ~70 lines of usage before the line that matters."""
    from lightning.pytorch.cli import LightningArgumentParser

    from litesam_pl.cli_config import config_error_in, unknown_part_field

    try:  # the same guard as jsonargparse's ArgumentParser.error (a private helper: tolerate its absence)
        from jsonargparse._common import debug_mode_active
    except ImportError:  # pragma: no cover - another jsonargparse layout
        def debug_mode_active() -> bool:
            return bool(os.environ.get("JSONARGPARSE_DEBUG"))

    class ShortErrorParser(LightningArgumentParser):
        def error(self, message: str, ex: Optional[Exception] = None):  # noqa: D102 (jsonargparse's signature)
            if not self.exit_on_error or debug_mode_active():
                return super().error(message, ex)
            choice = re.search(r"argument subcommand: invalid choice: '([^']*)'", message)
            if choice:
                _unknown_subcommand(choice.group(1))
            parser = getattr(ex, "subcommand_parser", None) or self
            prog = parser.prog.replace(" [options]", "")
            known = [o for o in getattr(parser, "_option_string_actions", {}) if o.startswith("--")]
            guesses = [g for g in (_did_you_mean(o, known) for o in _unrecognized_options(message)) if g]
            config_error = config_error_in(ex) if ex is not None else None
            line = (str(config_error) if config_error else "") or _rejected_init_arg(message) \
                or unknown_part_field(message) or _short(message)
            if guesses and not line.startswith("unrecognized option"):
                line += f" ({'; '.join(guesses)})"
            no_recipe = re.search(r"arguments are required: (\w+)\.model\b", message)
            if no_recipe:  # `litesam fit` without --config
                prog = f"litesam {no_recipe.group(1)}"
                line += f" (give a recipe: {prog} --config recipes/<stage>.yaml)"
            _fail(prog, line, f"run `{prog} --help` for every option")

    return ShortErrorParser


def _accelerator_name(value: Any) -> str:
    """``trainer.accelerator`` as a lower-case name (a string, or the class path of an Accelerator object)."""
    if isinstance(value, str):
        return value.lower()
    class_path = getattr(value, "class_path", None) or (value.get("class_path") if isinstance(value, dict) else None)
    return str(class_path or "").rsplit(".", 1)[-1].lower()


def _recipe_files(config: Any) -> List[str]:
    """The ``--config`` files of a parsed config (relative paths as given)."""
    files = config.get("config") if hasattr(config, "get") else None
    out = []
    for f in files or []:
        rel = getattr(f, "relative", None) or str(f)
        out.append(str(rel))
    return out


def _smoke_overlay(recipes: Sequence[str]) -> str:
    """``recipes/smoke/<name>.yaml`` next to the first base recipe that has one, else a generic pattern."""
    for r in recipes:
        head, name = os.path.split(r)
        cand = os.path.join(head, "smoke", name)
        if os.path.basename(head) != "smoke" and os.path.isfile(cand):
            return f"--config {r} --config {cand}"
    return "--config recipes/<stage>.yaml --config recipes/smoke/<stage>.yaml"


def check_accelerator(config: Any) -> None:
    """``CLIError`` when the trainer asks for GPUs (``accelerator: gpu``/``cuda``) and CUDA is unavailable, before
    the Trainer is built (Lightning would end in a 33-line ``No supported gpu backend found!`` traceback)."""
    import torch

    trainer = config.get("trainer") if hasattr(config, "get") else None
    if trainer is None:
        return
    acc = _accelerator_name(trainer.get("accelerator"))
    if acc not in ("gpu", "cuda", "cudaaccelerator") or torch.cuda.is_available():
        return
    recipes = _recipe_files(config)
    what = " + ".join(recipes) if recipes else "this configuration"
    raise CLIError(
        f"{what} wants GPUs (trainer.accelerator: {trainer.get('accelerator')}) but CUDA is not available on this "
        f"machine; to run on the CPU add {_CPU_OVERRIDES}, or use a smoke overlay: {_smoke_overlay(recipes)}"
    )


# --- console noise (issue 13, point 12) ------------------------------------------------------------------------------
# Messages about the libraries, not about the run, that every Lightning command printed. Each filter names one message
# precisely; every other warning (and these same messages where they can matter, see ``_quiet_run``) still shows.
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
# ModelCheckpoint notices that are noise in some cases only (``_quiet_run``)
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


def _quiet_wandb(trainer: Any) -> None:
    """Before a WandbLogger starts its run: drop the ``anonymous=None`` that Lightning passes to ``wandb.init`` (wandb
    >= 0.19 prints ``WARNING The anonymous setting has no effect`` for any value given, None included), and create its
    ``save_dir``, which wandb takes as the root of its git lookup (``WARNING git root X does not exist`` and no commit
    recorded when it is not there yet; inside a checkout the run then records the commit)."""
    for logger in getattr(trainer, "loggers", None) or ():
        init = getattr(logger, "_wandb_init", None)
        if not isinstance(init, dict) or getattr(logger, "_experiment", None) is not None:
            continue
        if init.get("anonymous", "absent") is None:
            init.pop("anonymous")
        save_dir = init.get("dir")
        if save_dir and "://" not in str(save_dir):
            os.makedirs(save_dir, exist_ok=True)


def _quiet_run(trainer: Any, subcommand: str, ckpt_path: Any) -> None:
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


def _warn_random_weights(subcommand: str, model: Any, ckpt_path: Any) -> None:
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


def run_lightning_cli(args: Optional[Sequence[str]] = None, run: bool = True):
    """Build (and by default run) the LightningCLI on ``args``; returns the CLI object. A GPU recipe without CUDA
    raises ``CLIError`` before the Trainer is built; a bad option exits with one error line (status 2)."""
    quiet_library_noise()
    from lightning.pytorch.cli import LightningCLI

    from litesam_pl.cli_config import (ckpt_model_config, config_error_in, link_data_into_model,
                                       linked_value_set_by_user)
    from litesam_pl.data.datamodule import SA1BDataModule
    from litesam_pl.modules.base import LiteSAMTaskBase
    from litesam_pl.modules.prediction_writer import add_writer_arguments, attach_writer

    class LiteSAMCLI(LightningCLI):
        def before_instantiate_classes(self) -> None:
            """Refuse a GPU trainer on a machine without CUDA (one line, see ``check_accelerator``); let the
            loggers and checkpoints follow ``--trainer.default_root_dir`` (``follow_run_dir``)."""
            sub = self.subcommand
            cfg = self.config[sub] if sub else self.config
            check_accelerator(cfg)
            follow_run_dir(cfg)
            refused = linked_value_set_by_user(_recipe_files(cfg), self._argv)
            if refused:
                raise CLIError(refused)

        def parse_arguments(self, parser: Any, args: Any) -> None:
            raw = sys.argv[1:] if args is None else args
            self._argv = [str(a) for a in raw] if isinstance(raw, (list, tuple)) else []
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
            """Quiet the library notices of this run (``_quiet_wandb``, ``_quiet_run``) and warn before scoring
            random weights (``_warn_random_weights``)."""
            sub = self.subcommand
            ckpt_path = self.config_init[sub].get("ckpt_path") if sub else None
            _quiet_wandb(self.trainer)
            _quiet_run(self.trainer, sub, ckpt_path)
            _warn_random_weights(sub, self.model, ckpt_path)
            if sub == "fit":
                warn_global_batch(self.trainer, self.datamodule)
            if hasattr(self.model, "check_datamodule"):
                self.model.check_datamodule(self.datamodule)  # data vs model: one line naming both options
            if sub and hasattr(self.datamodule, "check_shards"):
                self.datamodule.check_shards(sub)  # a missing shard path: one line naming the option, now

        before_fit = before_validate = before_test = _before_run

        def add_arguments_to_parser(self, parser: Any) -> None:
            link_data_into_model(parser)

        def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any):
            parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
            if subcommand == "predict":  # --out, --overlays (litesam_pl.modules.prediction_writer)
                add_writer_arguments(parser)
            return parser

        def before_predict(self) -> None:
            """``_before_run``, then a ``SegEveryWriter`` unless the callbacks have a prediction writer; the
            predictions are not also kept in memory (they are on disk)."""
            self._before_run()
            cfg = self.config_init["predict"]
            if attach_writer(self.trainer, cfg.get("out"), cfg.get("overlays", True), not cfg.get("ckpt_path")):
                if cfg.get("return_predictions") is None:
                    cfg["return_predictions"] = False

    return LiteSAMCLI(
        model_class=LiteSAMTaskBase,
        subclass_mode_model=True,
        datamodule_class=SA1BDataModule,
        args=None if args is None else list(args),
        run=run,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "litesam", "description": "Lite-SAM training (LightningCLI)."},
        parser_class=_parser_class(),
    )


def _user_errors() -> tuple:
    """The exception types that are the user's to fix: printed as one line, exit status 2."""
    from litesam_pl.data.sa1b_stream import ShardsError
    from litesam_pl.models.registry import ModelError
    from litesam_pl.modules.config import ConfigError

    return (CLIError, ModelError, ShardsError, ConfigError)


def _run_tool(name: str, argv: Sequence[str]) -> None:
    """``segment-everything`` / ``export``: the tool's ``main(argv)``; a non-zero return is the exit status."""
    import importlib

    mod, fn = _TOOLS[name]
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
        _unknown_subcommand(args[0])
    prog = f"litesam {args[0]}" if not args[0].startswith("-") else "litesam"
    try:
        if args[0] in _TOOLS:
            _run_tool(args[0], args[1:])
            return
        os.environ.setdefault("WANDB_MODE", "offline")  # no key, no network unless the user asks for it
        run_lightning_cli(None if argv is None else args)
    except _user_errors() as err:
        _fail(prog, " ".join(str(err).split()))


if __name__ == "__main__":
    main()
