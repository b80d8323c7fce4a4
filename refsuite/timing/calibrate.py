"""End-to-end residual-physics timing calibration: analytic skews, then a GBDT correction."""

from __future__ import annotations

from .models import CorrectionModel, train_correction
from .skew import SkewMethod, skew_calibration

__all__ = ["calibrate"]


def calibrate(
    events,
    *,
    kind="explicit",
    max_depth: int = 8,
    skew_method: SkewMethod | str = SkewMethod.LEAST_SQUARES,
    skew_events=None,
    offsets_ps=None,
    **train_options,
) -> CorrectionModel:
    """Residual-physics calibration (Naunheim et al. 2025, sec. 3): first-order, then higher-order.

    Parameters
    ----------
    events : dict
        Labelled calibration coincidences (``time_ps``, ``energy_au``, ``source_mm``).
    kind : {"explicit", "implicit"}
        Residual definition of the machine-learning step.
    max_depth : int
        Maximum tree depth.
    skew_method : SkewMethod or str
        Solver of the analytic step (least squares or robust L1).
    skew_events : dict, optional
        Separate coincidences for the analytic step (e.g. when ``events`` come from a single
        centred source that pairs only mirror crystals); default ``events``.
    offsets_ps : array_like (2, C), optional
        An existing analytic calibration (ps); skips the analytic step.
    **train_options
        Passed to :func:`~refsuite.timing.models.train_correction` (``n_estimators``,
        ``learning_rate``, ``device``, ``seed``, ...).

    Returns
    -------
    CorrectionModel
        Apply with :func:`~refsuite.timing.models.apply_correction`.
    """
    if offsets_ps is None:
        offsets_ps = skew_calibration(events if skew_events is None else skew_events, method=skew_method)
    return train_correction(events, kind=kind, max_depth=max_depth, offsets_ps=offsets_ps, **train_options)
