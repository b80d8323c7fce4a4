"""Learning-rate schedules shared by the suite's trained models (DL-PVC, registration U-Net).

Each schedule is a closed form of the step (or epoch) index, so a run resumed from a
checkpoint gets exactly the rates of an uninterrupted one.
"""

from __future__ import annotations

import enum
import math

__all__ = ["Schedule", "scheduled_learning_rate"]


class Schedule(enum.Enum):
    """Learning-rate schedule over a run of ``total`` steps (or epochs).

    CONSTANT: lr_k = lr. COSINE: cosine annealing without restarts (Loshchilov and Hutter,
    arXiv:1608.03983, eq. 5 with eta_min = 0): lr_k = lr (1 + cos(pi k / total)) / 2 for
    k = 0 ... total - 1, from lr at the first step towards 0 at the last.
    """

    CONSTANT = "constant"
    COSINE = "cosine"


def scheduled_learning_rate(schedule: Schedule | str, base: float, step: int, total: int) -> float:
    """The learning rate of step ``step`` (0-based) of ``total`` under ``schedule``.

    Parameters
    ----------
    schedule : Schedule or its value ("constant", "cosine")
    base : float
        Initial learning rate (> 0).
    step, total : int
        0 <= step < total.
    """
    schedule = Schedule(schedule)
    if not base > 0:
        raise ValueError(f"base learning rate must be > 0, got {base!r}")
    if not 0 <= int(step) < int(total):
        raise ValueError(f"step must lie in [0, total={total}), got {step!r}")
    if schedule is Schedule.COSINE:
        return float(base) * 0.5 * (1.0 + math.cos(math.pi * int(step) / int(total)))
    return float(base)
