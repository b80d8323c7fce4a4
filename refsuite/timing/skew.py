"""Analytic first-order time-skew calibration over channel pairs.

Every coincidence whose main channels are ``i`` (detector A) and ``j`` (detector B) measures
``dt - 2 z / c = delta_A,i - delta_B,j + noise``. The per-pair statistic ``m_ij`` (mean, or
median for the robust variant) gives an over-determined linear system ``M delta = m`` with one
row per channel pair (Mann et al. 2009, pseudoinverse; Naunheim et al. 2022, convex skew
calibration, ref. 59 of Naunheim et al. 2025). It determines the offsets only up to one
common constant (adding it to every channel leaves every ``dt`` unchanged); the minimum-norm
solution fixes it to a zero mean over all channels.
"""

from __future__ import annotations

import enum

import numpy as np
from scipy import optimize, sparse
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import lsmr

from .features import energy_mask, expected_dt, main_channel, validate_events

__all__ = ["SkewMethod", "skew_calibration", "pair_statistics", "solve_pair_offsets"]


class SkewMethod(enum.Enum):
    """Solver of the pair system.

    LEAST_SQUARES
        Weighted least squares on per-pair means (weights ``n / s^2``), solved with LSMR,
        whose iterates from zero converge to the minimum-norm solution.
    L1
        Robust L1 fit on per-pair medians (Freese et al. 2017), a linear programme (HiGHS);
        the common constant is then fixed to a zero mean as for least squares.
    """

    LEAST_SQUARES = "least_squares"
    L1 = "l1"


def pair_statistics(events, *, energy_window_kev=(430.0, 590.0), robust: bool = False):
    """Per-channel-pair counts, centre (mean or median) and its standard error (ps).

    Returns ``pairs`` (P, 2) main-channel indices (A, B), ``counts`` (P,), ``centre`` (P,)
    and ``stderr`` (P,) of the residual ``dt - 2 z / c`` of uncalibrated timestamps.
    """
    n = validate_events(events)
    keep = energy_mask(events, energy_window_kev)
    if not keep.any():
        raise ValueError(f"energy_window_kev={energy_window_kev!r} keeps none of the {n} coincidences")
    t = np.asarray(events["time_ps"], dtype=np.float64)[keep]
    main = main_channel({"energy_au": np.asarray(events["energy_au"])[keep]})
    tc = np.take_along_axis(t, main[..., None], axis=-1)[..., 0]
    resid = tc[:, 0] - tc[:, 1] - expected_dt({"source_mm": np.asarray(events["source_mm"])[keep]})
    n_ch = t.shape[-1]
    pid = main[:, 0] * n_ch + main[:, 1]
    order = np.argsort(pid, kind="stable")
    pid, resid = pid[order], resid[order]
    uniq, start, counts = np.unique(pid, return_index=True, return_counts=True)
    groups = np.split(resid, start[1:])
    if robust:
        centre = np.array([np.median(g) for g in groups])
        # scale from the median absolute deviation; 1.2533 = sqrt(pi/2) for a median's error
        scale = np.array([1.4826 * np.median(np.abs(g - c)) for g, c in zip(groups, centre)])
        stderr = 1.2533 * scale / np.sqrt(counts)
    else:
        centre = np.add.reduceat(resid, start) / counts
        sq = np.add.reduceat(resid**2, start) / counts - centre**2
        stderr = np.sqrt(np.clip(sq, 0.0, None) * counts / np.maximum(counts - 1, 1) / counts)
    pairs = np.stack([uniq // n_ch, uniq % n_ch], axis=1)
    return pairs, counts, centre, stderr


def skew_calibration(
    events,
    *,
    method: SkewMethod | str = SkewMethod.LEAST_SQUARES,
    energy_window_kev=(430.0, 590.0),
    min_pair_counts: int = 10,
    return_uncertainty: bool = False,
):
    """Per-channel first-order time offsets (ps) from coincidences with known source positions.

    Parameters
    ----------
    events : dict
        Coincidences with ``time_ps``, ``energy_au``, ``source_mm`` (see :mod:`refsuite.timing.simulate`).
    method : SkewMethod or str
        ``"least_squares"`` (default) or ``"l1"`` (robust).
    energy_window_kev : (float, float) or None
        Cluster-energy window of both detectors (keV); photopeak by default to limit time walk.
    min_pair_counts : int
        Channel pairs with fewer coincidences are left out of the system.
    return_uncertainty : bool
        Also return the standard errors (ps) from the pseudoinverse of the normal matrix.

    Returns
    -------
    offsets_ps : ndarray, shape (2, C)
        Offsets of detector A and B channels (ps), zero mean over all channels; subtract them
        from the timestamps.
    sigma_ps : ndarray, shape (2, C)
        Only with ``return_uncertainty``: their standard errors (ps).

    Raises
    ------
    ValueError
        When a channel never appears in a pair, or the pairs split the channels into
        disconnected groups whose relative offsets the data cannot fix.
    """
    method = SkewMethod(method) if not isinstance(method, SkewMethod) else method
    if not isinstance(min_pair_counts, (int, np.integer)) or min_pair_counts < 2:
        raise ValueError(f"min_pair_counts must be an integer >= 2, got {min_pair_counts!r}")
    validate_events(events)
    n_ch = np.shape(events["time_ps"])[-1]
    pairs, counts, centre, stderr = pair_statistics(
        events, energy_window_kev=energy_window_kev, robust=method is SkewMethod.L1)
    use = counts >= min_pair_counts
    if not use.any():
        raise ValueError(f"no channel pair has >= min_pair_counts={min_pair_counts} coincidences "
                         f"(largest: {counts.max()})")
    pairs, counts, centre, stderr = pairs[use], counts[use], centre[use], stderr[use]
    offsets = solve_pair_offsets(np.stack([pairs[:, 0], n_ch + pairs[:, 1]], 1), centre, stderr, 2 * n_ch,
                                 method=method, return_uncertainty=return_uncertainty,
                                 channel_label=lambda i: f"{'AB'[i // n_ch]}{i % n_ch}")
    if not return_uncertainty:
        return offsets.reshape(2, n_ch)
    return offsets[0].reshape(2, n_ch), offsets[1].reshape(2, n_ch)


def solve_pair_offsets(pairs, centre, stderr, n_channels: int, *, method=SkewMethod.LEAST_SQUARES,
                       return_uncertainty: bool = False, channel_label=str):
    """Channel offsets ``delta`` from per-pair statistics ``centre_p = delta_i - delta_j`` (ps).

    Parameters
    ----------
    pairs : int array (P, 2)
        Channel indices ``(i, j)`` in ``[0, n_channels)`` of each row.
    centre, stderr : arrays (P,)
        Mean (or median) of ``t_i - t_j - dt_expected`` per pair and its standard error, ps.
    n_channels : int
    method : SkewMethod
    return_uncertainty : bool
        Also return standard errors from the pseudoinverse of the normal matrix.
    channel_label : callable(int) -> str
        Names channels in error messages.

    Returns
    -------
    offsets_ps : (n_channels,), zero mean; with ``return_uncertainty`` a tuple
    ``(offsets_ps, sigma_ps)``.

    Raises
    ------
    ValueError
        When a channel is in no pair or the pairs form disconnected groups.
    """
    method = SkewMethod(method) if not isinstance(method, SkewMethod) else method
    pairs = np.asarray(pairs, np.int64)
    stderr = np.maximum(np.asarray(stderr, float), 1e-3)
    rows = np.arange(len(pairs))
    m = sparse.csr_matrix(
        (np.concatenate([np.ones(len(rows)), -np.ones(len(rows))]),
         (np.concatenate([rows, rows]), np.concatenate([pairs[:, 0], pairs[:, 1]]))),
        shape=(len(rows), n_channels))
    _check_connected(m, channel_label)
    w = 1.0 / stderr
    mw = sparse.diags(w) @ m
    if method is SkewMethod.LEAST_SQUARES:
        x = lsmr(mw, centre * w, atol=1e-14, btol=1e-14, maxiter=10 * n_channels)[0]
    else:
        x = _l1_solve(mw, centre * w)
    x -= x.mean()
    if not return_uncertainty:
        return x
    normal = (mw.T @ mw).toarray()
    cov = np.linalg.pinv(normal, rcond=1e-10, hermitian=True)
    return x, np.sqrt(np.clip(np.diag(cov), 0.0, None))


def _check_connected(m: sparse.csr_matrix, channel_label) -> None:
    present = np.asarray(abs(m).sum(axis=0)).ravel() > 0
    if not present.all():
        absent = [channel_label(int(i)) for i in np.flatnonzero(~present)]
        raise ValueError(f"events: channels {absent} are never the main channel of a usable pair; "
                         "their offsets are undetermined (more data or a wider source distribution needed)")
    adj = abs(m).T @ abs(m)
    n_comp, _ = connected_components(adj, directed=False)
    if n_comp > 1:
        raise ValueError(f"events: the channel pairs form {n_comp} disconnected groups, so their relative "
                         "offsets are undetermined (e.g. a single centred source only pairs mirror crystals); "
                         "use a source distribution that pairs each channel with several others")


def _l1_solve(a: sparse.csr_matrix, b: np.ndarray) -> np.ndarray:
    """min ||a x - b||_1 as a linear programme in (x, u): -u <= a x - b <= u, minimise sum u."""
    p, q = a.shape
    ident = sparse.identity(p, format="csr")
    a_ub = sparse.vstack([sparse.hstack([a, -ident]), sparse.hstack([-a, -ident])], format="csr")
    b_ub = np.concatenate([b, -b])
    cost = np.concatenate([np.zeros(q), np.ones(p)])
    bounds = [(None, None)] * q + [(0, None)] * p
    res = optimize.linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    if not res.success:
        raise RuntimeError(f"L1 skew calibration failed: {res.message}")
    return res.x[:q]
