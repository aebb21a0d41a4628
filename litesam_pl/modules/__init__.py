"""Lightning training stages of Lite-SAM (the only package, with ``litesam_pl.cli`` and ``litesam_pl.cli.lightning``,
that imports Lightning)."""
from .autoppn import AutoPPNModule
from .backbone_box import BackboneBoxModule
from .base import LiteSAMTaskBase, load_init_weights
from .joint import LiteSAMModule
from .prediction_writer import SegEveryWriter

__all__ = ["LiteSAMTaskBase", "BackboneBoxModule", "AutoPPNModule", "LiteSAMModule", "load_init_weights", "SegEveryWriter"]
