"""Cluster quantities, labels and model features shared by the explicit and implicit corrections.

A cluster is the set of triggered channels of one detector in a coincidence (Naunheim et
al. 2025, sec. 3.5). Its timestamp is that of the main channel (highest energy), its energy
the sum of the channel energies. All times here are after the analytic (first-order) skew
calibration, whose per-channel offsets ``offsets_ps`` (2, C) are subtracted from every hit.
"""

from __future__ import annotations

import enum

import numpy as np

from .detector import expected_time_difference
from .simulate import REQUIRED_COLUMNS

__all__ = [
    "CorrectionKind",
    "validate_events",
    "select",
    "main_channel",
    "cluster_energy",
    "cluster_times",
    "time_difference",
    "expected_dt",
    "explicit_label",
    "feature_names",
    "extract_features",
    "energy_mask",
]


class CorrectionKind(enum.Enum):
    """The two definitions of timing residuals (Naunheim et al. 2025, sec. 3.1).

    IMPLICIT
        Label: the expected time difference ``2 z / c`` of the known source position (eq. 4-5);
        the model sees the features *and* the measured time difference and predicts the
        corrected time difference directly.
    EXPLICIT
        Label: ``(dt_measured - dt_expected) / 2`` (eq. 6-7, after Onishi et al. 2022), a
        correction of each timestamp; the model sees the features *without* the measured
        time difference; ``t_A - c`` and ``t_B + c`` give ``dt - 2 c``.
    """

    IMPLICIT = "implicit"
    EXPLICIT = "explicit"

    @classmethod
    def parse(cls, value) -> "CorrectionKind":
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"kind must be one of {[k.value for k in cls]}, got {value!r}") from None


def validate_events(events, *, name: str = "events") -> int:
    """Check columns and shapes of an event dictionary; return the number of coincidences."""
    if not hasattr(events, "keys"):
        raise TypeError(f"{name} must be a mapping of column name -> array, got {type(events).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in events]
    if missing:
        raise ValueError(f"{name} is missing columns {missing}; required: {list(REQUIRED_COLUMNS)}")
    t, e, s = (np.asarray(events[c]) for c in REQUIRED_COLUMNS)
    if t.ndim != 3 or t.shape[1] != 2:
        raise ValueError(f"{name}['time_ps'] must have shape (n, 2, C), got {t.shape}")
    if e.shape != t.shape:
        raise ValueError(f"{name}['energy_au'] must have the shape of time_ps {t.shape}, got {e.shape}")
    if s.shape != (t.shape[0], 3):
        raise ValueError(f"{name}['source_mm'] must have shape ({t.shape[0]}, 3), got {s.shape}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 coincidences)")
    return t.shape[0]


def select(events: dict, mask) -> dict:
    """The events where ``mask`` (n,) is True (every per-event column, other entries unchanged)."""
    n = validate_events(events)
    mask = np.asarray(mask)
    return {k: (np.asarray(v)[mask] if np.ndim(v) and np.shape(v)[0] == n else v) for k, v in events.items()}


def main_channel(events) -> np.ndarray:
    """Index (n, 2) of the channel with the highest energy in each cluster."""
    e = np.asarray(events["energy_au"], dtype=np.float64)
    return np.argmax(np.nan_to_num(e, nan=-1.0), axis=-1)


def cluster_energy(events) -> np.ndarray:
    """Cluster energy (n, 2): sum of the channel energies (a.u., about keV)."""
    return np.nansum(np.asarray(events["energy_au"], dtype=np.float64), axis=-1)


def _calibrated_times(events, offsets_ps) -> np.ndarray:
    t = np.asarray(events["time_ps"], dtype=np.float64)
    if offsets_ps is None:
        return t
    off = np.asarray(offsets_ps, dtype=np.float64)
    if off.shape != t.shape[1:]:
        raise ValueError(f"offsets_ps must have shape {t.shape[1:]}, got {off.shape}")
    return t - off[None]


def cluster_times(events, offsets_ps=None) -> np.ndarray:
    """Cluster timestamps (n, 2) (ps): the main channel's time minus its offset."""
    t = _calibrated_times(events, offsets_ps)
    return np.take_along_axis(t, main_channel(events)[..., None], axis=-1)[..., 0]


def time_difference(events, offsets_ps=None) -> np.ndarray:
    """Measured time difference ``t_A - t_B`` (n,) (ps) after the skew calibration."""
    tc = cluster_times(events, offsets_ps)
    return tc[:, 0] - tc[:, 1]


def expected_dt(events) -> np.ndarray:
    """Expected time difference ``2 z / c`` (n,) (ps) of each event's source position (eq. 3)."""
    return expected_time_difference(np.asarray(events["source_mm"], dtype=np.float64)[:, 2])


def explicit_label(events, offsets_ps=None) -> np.ndarray:
    """Explicit residual label ``(dt_measured - dt_expected) / 2`` (n,) (ps) (eq. 6)."""
    return 0.5 * (time_difference(events, offsets_ps) - expected_dt(events))


def energy_mask(events, window_kev) -> np.ndarray:
    """Events (n,) whose two cluster energies lie in ``window_kev = (low, high)`` (keV)."""
    if window_kev is None:
        return np.ones(np.shape(events["time_ps"])[0], dtype=bool)
    lo, hi = window_kev
    if not lo < hi:
        raise ValueError(f"energy window must have low < high, got {window_kev!r} keV")
    e = cluster_energy(events)
    return np.all((e >= lo) & (e <= hi), axis=1)


def feature_names(n_channels: int, kind) -> list[str]:
    """Column names of :func:`extract_features` (implicit models get ``dt_ps`` last)."""
    names = []
    for d in "AB":
        names += [f"{d}_e{k}" for k in range(n_channels)]
        names += [f"{d}_t{k}" for k in range(n_channels)]
        names += [f"{d}_main", f"{d}_ntrig", f"{d}_esum"]
    if CorrectionKind.parse(kind) is CorrectionKind.IMPLICIT:
        names.append("dt_ps")
    return names


def extract_features(events, offsets_ps, kind) -> np.ndarray:
    """Model inputs (n, F) float32 of both clusters (Naunheim et al. 2025, sec. 3.6).

    Per detector: the channel energies (a.u.), the channel timestamps relative to the
    cluster's first hit (ps, after skew calibration), the main channel, the number of
    triggered channels and the cluster energy; channels that did not trigger are NaN
    (missing values, handled natively by the trees). Implicit models get the measured time
    difference as the last column. Channels keep their array position, so the features
    encode where in the crystal array the light was shared.
    """
    kind = CorrectionKind.parse(kind)
    validate_events(events)
    t = _calibrated_times(events, offsets_ps)
    e = np.asarray(events["energy_au"], dtype=np.float64)
    rel = t - np.nanmin(t, axis=-1, keepdims=True)
    main = main_channel(events)
    esum = cluster_energy(events)
    cols = []
    for d in range(2):
        cols += [e[:, d], rel[:, d], main[:, d:d + 1], np.sum(np.isfinite(t[:, d]), axis=-1, keepdims=True),
                 esum[:, d:d + 1]]
    if kind is CorrectionKind.IMPLICIT:
        tc = np.take_along_axis(t, main[..., None], axis=-1)[..., 0]
        cols.append((tc[:, 0] - tc[:, 1])[:, None])
    return np.concatenate(cols, axis=1).astype(np.float32)
