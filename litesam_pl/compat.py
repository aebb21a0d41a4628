"""The one place this package reaches into a library's private API.

Everything else in ``litesam_pl`` uses libraries through their public names only. Each function below says what
private name it wraps, why there is no public way to do the same thing, and which library versions it was checked
against; when a library changes, this file is the only one to look at. Each imports its library inside the function,
so optional libraries (``lvis``) stay optional and importing this module imports nothing.

Checked against: lvis 0.5.3, jsonargparse 4.53.0, scikit-image 0.26.0, torch 2.14.1 (lightning 2.6.6).
"""
from __future__ import annotations

import copy
import logging
import os
from typing import Any, Sequence, Tuple

__all__ = [
    "lvis_from_dict",
    "empty_lvis_results",
    "jsonargparse_debug_mode_active",
    "skimage_thin_luts",
    "ddp_sync_buffers",
    "shared_memory_zeros",
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
