"""Learning-rate schedules for ``LiteSAMTaskBase(lr_scheduler=...)``, stepped every optimizer step.

``WarmupCosine``: linear warm-up, then a constant learning rate or a cosine decay to ``min_lr_ratio`` of it at the
last step. A recipe names it as ``lr_scheduler: {class_path: litesam_pl.modules.schedules.WarmupCosine, init_args:
{warmup_steps: 20, schedule: cosine}}``; ``LiteSAMTaskBase.configure_optimizers`` gives it the trainer's estimated
number of steps when ``total_steps`` is not set.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from .config import ConfigError

__all__ = ["WarmupCosine", "SCHEDULES"]

SCHEDULES = ("constant", "cosine")
# what ``WarmupCosine.state_dict`` leaves out: the optimizer, the lr function, the settings, the step-count supplier
_NOT_STATE = ("optimizer", "lr_lambdas", "warmup_steps", "schedule", "min_lr_ratio", "total_steps", "_estimated_total")


class WarmupCosine(LambdaLR):
    """``LambdaLR`` whose factor of the optimizer's learning rate at optimizer step ``step`` is:

    - ``(step + 1) / warmup_steps`` for ``step < warmup_steps`` (linear warm-up from ``lr / warmup_steps``);
    - then ``1`` (``schedule: constant``, the paper's: it states no schedule), or
    - ``min_lr_ratio + (1 - min_lr_ratio) * (1 + cos(pi * t)) / 2`` with ``t = (step - warmup_steps) / (total -
      warmup_steps)`` clipped to 1 (``schedule: cosine``: from ``lr`` down to ``min_lr_ratio * lr`` at ``total``).

    Args:
        optimizer: the optimizer whose learning rate it scales.
        warmup_steps: steps of linear warm-up (0: none).
        schedule: ``constant`` or ``cosine``, after the warm-up.
        min_lr_ratio: the cosine's final learning rate, as a fraction of ``lr`` (0 to 1).
        total_steps: the step at which the cosine reaches ``min_lr_ratio`` (at least ``warmup_steps + 1``);
            ``None``: what ``total_steps_from`` supplies (``LiteSAMTaskBase``: the trainer's
            ``estimated_stepping_batches``), read only once the cosine has begun to decay.

    A bad value is a ``ConfigError`` whose message starts with the argument's name.
    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int = 0, schedule: str = "cosine",
                 min_lr_ratio: float = 0.01, total_steps: Optional[int] = None) -> None:
        if schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(map(repr, SCHEDULES))}, got {schedule!r}")
        if int(warmup_steps) < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {warmup_steps!r}")
        if not 0 <= float(min_lr_ratio) <= 1:
            raise ConfigError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio!r}")
        if total_steps is not None and int(total_steps) < 1:
            raise ConfigError(f"total_steps must be >= 1 or null (the trainer's estimate), got {total_steps!r}")
        self.warmup_steps = int(warmup_steps)
        self.schedule = schedule
        self.min_lr_ratio = float(min_lr_ratio)
        self.total_steps = None if total_steps is None else int(total_steps)
        self._estimated_total: Optional[Callable[[], int]] = None
        super().__init__(optimizer, self.lr_factor)

    @property
    def is_constant(self) -> bool:
        """Whether every factor is 1 (no warm-up, constant): the optimizer's own learning rate throughout."""
        return self.warmup_steps == 0 and self.schedule == "constant"

    def total_steps_from(self, estimate: Callable[[], int]) -> None:
        """Where the cosine's last step comes from when ``total_steps`` is ``None`` (called once it is needed)."""
        self._estimated_total = estimate

    def _total(self) -> int:
        if self.total_steps is not None:
            return self.total_steps
        if self._estimated_total is None:
            raise ValueError("WarmupCosine: total_steps is null and nothing supplies the trainer's step count "
                             "(LiteSAMTaskBase.configure_optimizers does; elsewhere set total_steps)")
        return int(self._estimated_total())

    def lr_factor(self, step: int) -> float:
        """The learning rate at optimizer step ``step`` as a fraction of the optimizer's ``lr``."""
        warmup = self.warmup_steps
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        if self.schedule == "constant":
            return 1.0
        if step == warmup:  # t = 0 whatever the total: the step count is read only once the decay has begun
            t = 0.0
        else:
            total = max(self._total(), warmup + 1)
            t = min(1.0, (step - warmup) / max(1, total - warmup))
        low = self.min_lr_ratio
        return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * t))

    def state_dict(self) -> Dict[str, Any]:
        """The schedule's position (plain values): not its settings, which come from the configuration on resume as
        a ``LambdaLR``'s did, nor the step-count supplier (a function)."""
        return {k: v for k, v in self.__dict__.items() if k not in _NOT_STATE}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore the position in ``state_dict`` (also a plain ``LambdaLR``'s, as checkpoints written before this
        class hold); settings found in it are ignored."""
        self.__dict__.update({k: v for k, v in state_dict.items() if k not in _NOT_STATE})
