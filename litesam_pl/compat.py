"""The one place this package reaches into a library's private API.

Everything else in ``litesam_pl`` uses libraries through their public names only. Each function below says what
private name it wraps, why there is no public way to do the same thing, and which library versions it was checked
against; when a library changes, this file is the only one to look at. Each imports its library inside the function,
so optional libraries (``lvis``) stay optional and importing this module imports nothing.

Checked against: lvis 0.5.3, jsonargparse 4.53.0, scikit-image 0.26.0, torch 2.14.1, lightning 2.6.6, Python 3.11.

The functions: ``lvis_from_dict``, ``empty_lvis_results`` (lvis), ``jsonargparse_debug_mode_active`` (jsonargparse),
``argparse_option_strings`` (argparse), ``wandb_logger_init_kwargs`` (Lightning's ``WandbLogger``),
``skimage_thin_luts`` (scikit-image), ``ddp_sync_buffers``, ``shared_memory_zeros``,
``dataloader_worker_pids`` (torch).

Overrides of private methods, which must stay methods of a subclass elsewhere; each override carries a one-line
comment pointing here:

- ``LightningCLI._parse_ckpt_path`` in ``litesam_pl.cli.lightning.LiteSAMCLI`` (lightning 2.6.6): LightningCLI's
  constructor calls it to read the ``--ckpt_path`` checkpoint's hyper-parameters into the config, and no public hook
  runs between it and the instantiation; the override upgrades the hyper-parameters of older checkpoints
  (``cli.config.upgrade_ckpt_hparams``) before they are parsed, as LightningCLI's would parse them.
- ``argparse.HelpFormatter._get_help_string`` in ``data_prep.sa1b._DefaultsHelpFormatter`` (Python 3.11's argparse):
  ``ArgumentDefaultsHelpFormatter`` appends ``(default: X)`` there, and only the class name is public; the override
  leaves out the unset defaults (``None`` / ``False``) and those the help text states itself. The public way is a
  ``%(default)s`` in each help string.
"""
from __future__ import annotations

import copy
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = [
    "lvis_from_dict",
    "empty_lvis_results",
    "jsonargparse_debug_mode_active",
    "argparse_option_strings",
    "wandb_logger_init_kwargs",
    "skimage_thin_luts",
    "ddp_sync_buffers",
    "shared_memory_zeros",
    "dataloader_worker_pids",
]


# ------------------------------------------------------------------------------------------------------------ lvis
def lvis_from_dict(dataset: dict) -> Any:
    """An ``lvis.LVIS`` over an annotation ``dataset`` already in memory (the dict is used, not copied).

    Wraps ``LVIS.__new__`` + ``LVIS._create_index``: ``LVIS(path)`` only reads a json file, and we hold the
    (filtered, or converted) dict already; writing it out to read it back would cost time and disk for nothing.
    The logger is the one ``LVIS.__init__`` sets (``lvis.lvis``). Checked with lvis 0.5.3.
    """
    from lvis import LVIS

    api = LVIS.__new__(LVIS)
    api.logger = logging.getLogger("lvis.lvis")
    api.dataset = dataset
    api._create_index()
    return api


def empty_lvis_results(lvis_gt: Any) -> Any:
    """An ``lvis.LVISResults`` with no detection over the images and categories of ``lvis_gt`` (an ``LVIS``).

    Wraps ``LVISResults.__new__`` + ``_create_index``: ``LVISResults(lvis_gt, [])`` raises (it reads
    ``results[0]``), while an empty result set is simply no detection (AP 0, not an error). The dataset is a deep
    copy of the ground truth's without annotations, as ``LVISResults`` copies it. Checked with lvis 0.5.3.
    """
    from lvis import LVISResults

    dt = LVISResults.__new__(LVISResults)
    dt.dataset = copy.deepcopy(lvis_gt.dataset)
    dt.dataset["annotations"] = []
    dt.logger = lvis_gt.logger
    dt._create_index()
    return dt


# ---------------------------------------------------------------------------------------------------- jsonargparse
def jsonargparse_debug_mode_active() -> bool:
    """Whether jsonargparse's debug mode is on (``JSONARGPARSE_DEBUG``), as its ``ArgumentParser.error`` decides.

    Wraps ``jsonargparse._common.debug_mode_active``: jsonargparse exports no public test for it, and our short
    error parser must show the full error exactly when jsonargparse would. Where that private helper is missing
    (another jsonargparse layout), the environment variable is read directly. Checked with jsonargparse 4.53.0.
    """
    try:
        from jsonargparse._common import debug_mode_active
    except ImportError:  # pragma: no cover - another jsonargparse layout
        return bool(os.environ.get("JSONARGPARSE_DEBUG"))
    return debug_mode_active()


# -------------------------------------------------------------------------------------------------------- argparse
def argparse_option_strings(parser: Any) -> List[str]:
    """Every option string an ``argparse.ArgumentParser`` (or a jsonargparse one) accepts (``--trainer.max_steps``,
    ``-c``, ...), in the order they were added.

    Wraps ``ArgumentParser._option_string_actions``: argparse lists its options only inside the help text, and the
    did-you-mean of ``litesam``'s one-line errors (``cli.lightning.ShortErrorParser``) needs the names. A parser
    without that mapping gives ``[]`` (no guess). Checked with Python 3.11's argparse and jsonargparse 4.53.0.
    """
    return list(getattr(parser, "_option_string_actions", None) or ())


# ------------------------------------------------------------------------------------------------------ lightning
def wandb_logger_init_kwargs(logger: Any) -> Optional[Dict[str, Any]]:
    """The keyword arguments a Lightning ``WandbLogger`` will pass to ``wandb.init`` (the logger's own dict: editing
    it changes the run it starts), or None once its run has started or for any other logger.

    Wraps ``WandbLogger._wandb_init`` and ``WandbLogger._experiment``: the logger keeps its ``wandb.init`` arguments
    private, and its public ``experiment`` property starts the run; ``cli.run.quiet_wandb`` must edit them before
    that. Checked with lightning 2.6.6 (wandb 0.31.0).
    """
    init = getattr(logger, "_wandb_init", None)
    if not isinstance(init, dict) or getattr(logger, "_experiment", None) is not None:
        return None
    return init


# -------------------------------------------------------------------------------------------------------- skimage
def skimage_thin_luts() -> Tuple[Any, Any]:
    """The two look-up tables of ``skimage.morphology.thin`` (its sub-iterations 1 and 2), indexed by the 8-bit
    neighbourhood code: ``(G123_LUT, G123P_LUT)`` as scikit-image stores them.

    Wraps ``skimage.morphology._skeletonize.G123_LUT`` / ``G123P_LUT``: ``thin`` is public but its tables are not,
    and ``metrics.bsds_match.thin`` must apply exactly these rules (its output is tested identical to ``thin``'s)
    while touching only foreground pixels. Checked with scikit-image 0.26.0.
    """
    from skimage.morphology._skeletonize import G123_LUT, G123P_LUT

    return G123_LUT, G123P_LUT


# ---------------------------------------------------------------------------------------------------------- torch
def ddp_sync_buffers(ddp: Any) -> None:
    """Broadcast the module buffers of a ``torch.nn.parallel.DistributedDataParallel`` from rank 0 now (every rank
    must call it), as DDP does in its pre-forward.

    Wraps ``DistributedDataParallel._sync_buffers``: DDP offers no public call for that broadcast, and
    ``modules.validation`` must do it at the start of each evaluation epoch on every rank (see
    ``_sync_buffers_before_eval`` there) instead of inside the first ``validation_step``. Checked with torch 2.14.1.
    """
    ddp._sync_buffers()


def shared_memory_zeros(shape: Sequence[int], dtype: Any) -> Any:
    """A zero ``torch`` tensor of ``shape`` / ``dtype`` in a fresh shared-memory file whose pages the kernel
    zero-fills lazily on first touch (CPU).

    Wraps ``TypedStorage._new_shared`` (through ``Tensor._typed_storage``), what ``default_collate`` uses in a
    DataLoader worker: the public ``share_memory_()`` copies an existing tensor into shared memory, touching every
    page, which is the cost this avoids. Checked with torch 2.14.1.
    """
    import torch

    elem = torch.empty(0, dtype=dtype)
    numel = 1
    for d in shape:
        numel *= int(d)
    storage = elem._typed_storage()._new_shared(numel, device=elem.device)
    return elem.new(storage).resize_(*shape)


def dataloader_worker_pids(iterator: Any) -> List[int]:
    """The process ids of the worker processes of a ``torch.utils.data.DataLoader`` iterator (``iter(loader)``);
    ``[]`` for a single-process one (``num_workers=0``).

    Wraps ``_MultiProcessingDataLoaderIter._workers`` (the ``multiprocessing.Process`` of each worker): the
    DataLoader names its workers nowhere public (``get_worker_info`` answers inside a worker only), and
    ``benchmarks.dataloader`` adds the workers' CPU time (``/proc/<pid>/stat``) to the main process's. Checked with
    torch 2.14.1.
    """
    return [w.pid for w in getattr(iterator, "_workers", [])]
