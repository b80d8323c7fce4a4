"""Engine-agnostic comparison of two simulations of the same scenario (GATE vs built-in MC).

An *engine* is any callable ``engine(run, out)`` that simulates a
:class:`~simulations.scenario.Run` and writes its coincidences to the ROOT file ``out``
(:func:`simulations.gate.run_gate`, :func:`simulations.builtin.run_builtin`, or a stand-in in
the tests). Both outputs are read back through :func:`refsuite.io.read_coincidences` with the
run's scanner, so the two event tables pass through exactly the same analysis.

Three comparisons, each returning plain numbers (the validation study states the tolerances):

* :func:`compare_block_counts` -- singles per detector block as shares of all singles, a
  two-sample chi-square with the multinomial covariance of the per-coincidence block
  indicators (the two singles of a coincidence land in correlated blocks), optionally with a
  relative systematic allowance per block;
* :func:`compare_energy_spectra` -- in-window singles energies: two-sample Kolmogorov-Smirnov
  distance (with its statistical critical value) and a binned two-sample chi-square;
* :func:`sweep_sensitivity` / :func:`compare_sweeps` -- coincidences per decay along a
  sweep (Lin et al.'s line source at radial offsets), the ratio of two engines per offset,
  its weighted mean and a chi-square of its radial shape about that constant.

Units: energies keV (files hold MeV), lengths mm, sensitivities coincidences per decay.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from scipy import stats

from refsuite._checks import check_in_range, check_positive

from .scenario import AcquisitionSpec, Run

__all__ = [
    "Engine", "short_run", "run_engine", "true_coincidences", "block_counts", "compare_block_counts",
    "BlockCountComparison",
    "singles_energies_kev", "compare_energy_spectra", "SpectrumComparison", "ks_critical_distance",
    "SweepResult", "sweep_sensitivity", "compare_sweeps", "SweepComparison",
]

#: ``engine(run, out)``: simulate ``run`` and write its coincidences to ``out`` (ROOT).
Engine = Callable[[Run, Path], object]


def short_run(run: Run, *, n_decays: int, seed: int) -> Run:
    """The same run (scanner, phantom, digitiser) with ``n_decays`` decays and ``seed``.

    GATE turns the decays into an acquisition time ``n_decays / activity`` (its number of
    decays is then Poisson), the built-in MC simulates exactly ``n_decays``.
    """
    n_decays = int(n_decays)
    if n_decays < 1:
        raise ValueError(f"n_decays must be >= 1, got {n_decays}")
    acq = AcquisitionSpec(n_decays=n_decays, seed=int(seed))
    return dataclasses.replace(run, scenario=run.scenario.model_copy(update={"acquisition": acq}))


def run_engine(engine: Engine, run: Run, out):
    """Run ``engine`` on ``run`` into ``out`` and read the coincidences back with the run's scanner.

    Returns
    -------
    refsuite.events.Events
        As :func:`refsuite.io.read_coincidences` (``BlockID1/2`` from the interaction
        positions, energies MeV, times ns, positions mm), the same code for any engine.
    """
    from refsuite.io import read_coincidences

    out = Path(out)
    engine(run, out)
    return read_coincidences(out, scanner=run.scanner)


def true_coincidences(events):
    """The coincidences whose two singles come from one decay (``EventID1 == EventID2``).

    GATE's sorter also pairs singles of different decays (randoms: ~10 % of the
    coincidences of the 7.4 MBq line source in a 5 ns window) and, with ``TakeAllGoods``,
    several pairs of one multiple; the built-in MC forms trues only. Comparing trues keeps
    the activity-dependent randoms out of the engine comparison.
    """
    from refsuite.events import Events

    keep = np.asarray(events["EventID1"]) == np.asarray(events["EventID2"])
    return Events({k: np.asarray(v)[keep] for k, v in events.items()}, attrs=getattr(events, "attrs", None))


# ---------------------------------------------------------------- counts per block
def block_counts(events, n_blocks: int) -> np.ndarray:
    """Singles per block (n_blocks,), counted over both singles of every coincidence."""
    b = np.concatenate([np.asarray(events["BlockID1"]), np.asarray(events["BlockID2"])]).astype(np.int64)
    if b.size and (b.min() < 0 or b.max() >= n_blocks):
        raise ValueError(f"BlockID outside 0 ... {n_blocks - 1} (got {b.min()} ... {b.max()}): wrong scanner?")
    return np.bincount(b, minlength=n_blocks).astype(float)


def _share_covariance(events, n_blocks):
    """Shares f (n,) of singles per block and the covariance (n, n) of their estimate.

    Per coincidence the block indicator vector is ``X = u_b1 + u_b2``; the shares are
    ``f = mean(X) / 2`` and ``Cov(f) = (E[X X^T] - E[X] E[X]^T) / (4 N)``, with
    ``sum_e X_e X_e^T = diag(n1) + diag(n2) + M + M^T`` (``M[i, j]``: coincidences with
    single 1 in block i and single 2 in block j).
    """
    b1 = np.asarray(events["BlockID1"], np.int64)
    b2 = np.asarray(events["BlockID2"], np.int64)
    n = len(b1)
    if n < 2:
        raise ValueError(f"need at least 2 coincidences to compare block counts, got {n}")
    lo, hi = min(b1.min(), b2.min()), max(b1.max(), b2.max())
    if lo < 0 or hi >= n_blocks:
        raise ValueError(f"BlockID outside 0 ... {n_blocks - 1} (got {lo} ... {hi}): wrong scanner?")
    m = np.bincount(b1 * n_blocks + b2, minlength=n_blocks * n_blocks).reshape(n_blocks, n_blocks).astype(float)
    q = (m.sum(1) + m.sum(0)) / n
    second = (np.diag(m.sum(1)) + np.diag(m.sum(0)) + m + m.T) / n
    return q / 2, (second - np.outer(q, q)) / (4.0 * n), n


@dataclasses.dataclass(frozen=True)
class BlockCountComparison:
    """Result of :func:`compare_block_counts`.

    Attributes
    ----------
    chi2, dof, p_value : float, int, float
        Two-sample chi-square of the share difference (constraint sum = 1 projected out).
    max_abs_z : float
        Largest per-block ``|f_a - f_b| / sigma`` (same variance as the chi-square).
    worst_block : int
    shares_a, shares_b : ndarray (n_blocks,)
        Singles per block / all singles.
    n_a, n_b : int
        Coincidences in each table.
    """

    chi2: float
    dof: int
    p_value: float
    max_abs_z: float
    worst_block: int
    shares_a: np.ndarray
    shares_b: np.ndarray
    n_a: int
    n_b: int


def compare_block_counts(events_a, events_b, *, n_blocks: int, rel_sys: float = 0.0) -> BlockCountComparison:
    """Do two event tables distribute their singles over the blocks alike?

    Parameters
    ----------
    events_a, events_b : dict of ndarray
        Columns ``BlockID1``, ``BlockID2`` (indices of a :class:`refsuite.geometry.Scanner`).
    n_blocks : int
    rel_sys : float
        Relative systematic allowance per block share (e.g. 0.03: shares may differ by 3 %
        of their value without penalty beyond statistics), added in quadrature to the
        statistical variance.

    Returns
    -------
    BlockCountComparison
        Only shares are compared (the engines' overall efficiencies may differ).
    """
    n_blocks = int(check_positive("n_blocks", n_blocks))
    rel_sys = float(check_in_range("rel_sys", rel_sys, 0.0, 10.0))
    fa, va, na = _share_covariance(events_a, n_blocks)
    fb, vb, nb = _share_covariance(events_b, n_blocks)
    d = fa - fb
    v = va + vb + np.diag((rel_sys * (fa + fb) / 2) ** 2)
    used = np.flatnonzero(np.diag(v) > 0)  # blocks with singles in at least one table
    if len(used) < 2:
        raise ValueError("fewer than 2 blocks hold singles: nothing to compare")
    d, v = d[used], v[np.ix_(used, used)]
    # the shares of the used blocks sum to 1 in both tables: compare in the complement of (1, ..., 1)
    from scipy.linalg import null_space

    basis = null_space(np.ones((1, len(used))))
    w, u = np.linalg.eigh(basis.T @ v @ basis)
    keep = w > w.max() * 1e-12
    y = (u[:, keep].T @ (basis.T @ d))
    chi2 = float(np.sum(y**2 / w[keep]))
    dof = int(keep.sum())
    z = np.abs(d) / np.sqrt(np.diag(v))
    k = int(np.argmax(z))
    return BlockCountComparison(chi2, dof, float(stats.chi2.sf(chi2, dof)), float(z[k]), int(used[k]), fa, fb, na, nb)


# ---------------------------------------------------------------- energy spectra
def singles_energies_kev(events) -> np.ndarray:
    """Deposited energies of both singles of every coincidence, keV (files hold MeV)."""
    return 1000.0 * np.concatenate([np.asarray(events["TotalEnergyDeposit1"], float),
                                    np.asarray(events["TotalEnergyDeposit2"], float)])


def ks_critical_distance(n_a: int, n_b: int, alpha: float) -> float:
    """Two-sample KS distance exceeded with probability ``alpha`` under equal distributions.

    Asymptotic (Smirnov): ``sqrt(-ln(alpha / 2) / 2) * sqrt((n_a + n_b) / (n_a n_b))``.
    """
    check_in_range("alpha", alpha, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    return math.sqrt(-math.log(alpha / 2.0) / 2.0) * math.sqrt((n_a + n_b) / (n_a * n_b))


@dataclasses.dataclass(frozen=True)
class SpectrumComparison:
    """Result of :func:`compare_energy_spectra` (energies keV).

    Attributes
    ----------
    ks_distance, ks_p_value : float
        Two-sample Kolmogorov-Smirnov distance of the in-window singles energies, p-value.
    ks_critical : float
        The distance statistics alone exceed with probability ``alpha``.
    chi2, dof, chi2_p_value : float, int, float
        Binned two-sample chi-square (unequal sample sizes).
    mean_a_kev, mean_b_kev : float
        Mean in-window energies; ``mean_diff_err_kev`` the standard error of their difference.
    edges_kev : ndarray (n_bins + 1,)
    hist_a, hist_b : ndarray (n_bins,)
        Singles per bin.
    n_a, n_b : int
        In-window singles.
    """

    ks_distance: float
    ks_p_value: float
    ks_critical: float
    chi2: float
    dof: int
    chi2_p_value: float
    mean_a_kev: float
    mean_b_kev: float
    mean_diff_err_kev: float
    edges_kev: np.ndarray
    hist_a: np.ndarray
    hist_b: np.ndarray
    n_a: int
    n_b: int


def compare_energy_spectra(events_a, events_b, *, window_kev, bin_kev: float = 10.0,
                           alpha: float = 1e-3) -> SpectrumComparison:
    """Compare the in-window singles energy spectra of two event tables.

    The two singles of a coincidence are independent draws (their energies are blurred
    independently), so all singles enter as one sample per table.

    Parameters
    ----------
    events_a, events_b : dict of ndarray
        Columns ``TotalEnergyDeposit1/2``, MeV.
    window_kev : (float, float)
        Energy window, keV; singles outside it are ignored.
    bin_kev : float
        Histogram bin width for the chi-square, keV (bins with no entries in either table
        do not count).
    alpha : float
        Tail probability of :attr:`SpectrumComparison.ks_critical`.
    """
    lo, hi = map(float, window_kev)
    if not lo < hi:
        raise ValueError(f"window_kev must be (low, high) with low < high keV, got {window_kev!r}")
    check_positive("bin_kev", bin_kev, unit="keV")
    ea, eb = singles_energies_kev(events_a), singles_energies_kev(events_b)
    ea, eb = ea[(ea >= lo) & (ea <= hi)], eb[(eb >= lo) & (eb <= hi)]
    na, nb = len(ea), len(eb)
    if min(na, nb) < 2:
        raise ValueError(f"need at least 2 in-window singles per table, got {na} and {nb}")
    ks = stats.ks_2samp(ea, eb)
    edges = np.linspace(lo, hi, max(2, int(round((hi - lo) / bin_kev))) + 1)
    ha, hb = np.histogram(ea, edges)[0].astype(float), np.histogram(eb, edges)[0].astype(float)
    use = (ha + hb) > 0
    ka, kb = math.sqrt(nb / na), math.sqrt(na / nb)
    chi2 = float(np.sum((ka * ha[use] - kb * hb[use]) ** 2 / (ha[use] + hb[use])))
    dof = int(use.sum()) - 1
    err = math.sqrt(ea.var(ddof=1) / na + eb.var(ddof=1) / nb)
    return SpectrumComparison(float(ks.statistic), float(ks.pvalue), ks_critical_distance(na, nb, alpha), chi2, dof,
                              float(stats.chi2.sf(chi2, dof)) if dof > 0 else 1.0, float(ea.mean()), float(eb.mean()),
                              err, edges, ha, hb, na, nb)


# ---------------------------------------------------------------- sensitivity sweep
@dataclasses.dataclass(frozen=True)
class SweepResult:
    """Coincidences per decay along a sweep, one entry per run.

    Attributes
    ----------
    radial_offset_mm : ndarray (K,)
    n_decays : ndarray (K,)
        Decays simulated (GATE: the expected number, activity x time).
    coincidences : ndarray (K,)
    sensitivity : ndarray (K,)
        ``coincidences / n_decays``.
    stderr : ndarray (K,)
        ``sqrt(coincidences) / n_decays`` (Poisson: GATE's number of decays is Poisson too).
    """

    radial_offset_mm: np.ndarray
    n_decays: np.ndarray
    coincidences: np.ndarray
    sensitivity: np.ndarray
    stderr: np.ndarray


def sweep_sensitivity(runs: Sequence[Run], engine: Engine, *, n_decays: int, seed: int, workdir=None,
                      trues_only: bool = True) -> SweepResult:
    """Run ``engine`` on each run of a sweep with ``n_decays`` decays; coincidences per decay.

    Parameters
    ----------
    runs : sequence of Run
        Each with ``parameters["radial_offset_mm"]`` (e.g. ``lin_line_sweep``'s runs).
    engine : Engine
    n_decays : int
        Decays per run.
    seed : int
        Run ``k`` uses ``seed + k``.
    workdir : path, optional
        Folder for the engines' files (default: a temporary folder, removed afterwards).
    trues_only : bool
        Count only :func:`true_coincidences` (randoms grow with the activity, not with the
        geometry the sweep measures).
    """
    if not runs:
        raise ValueError("runs must not be empty")
    r, counts = [], []
    with tempfile.TemporaryDirectory(prefix="refsuite-sweep-") as tmp:
        base = Path(workdir) if workdir is not None else Path(tmp)
        for k, run in enumerate(runs):
            if "radial_offset_mm" not in run.parameters:
                raise ValueError(f"run {k} ({run.label!r}) has no radial_offset_mm parameter: not a sweep run")
            ev = run_engine(engine, short_run(run, n_decays=n_decays, seed=seed + k), base / f"sweep{k}.root")
            r.append(float(run.parameters["radial_offset_mm"]))
            counts.append(len(true_coincidences(ev)["EventID1"]) if trues_only else ev.n_events)
    c = np.asarray(counts, float)
    n = np.full(len(c), float(n_decays))
    return SweepResult(np.asarray(r), n, c, c / n, np.sqrt(c) / n)


@dataclasses.dataclass(frozen=True)
class SweepComparison:
    """Result of :func:`compare_sweeps`.

    Attributes
    ----------
    ratio, ratio_err : ndarray (K,)
        ``S_a / S_b`` per offset and its statistical standard error.
    mean_ratio : float
        Weighted mean ratio (weights ``1 / (sigma_rel^2 + rel_sys^2)``).
    mean_ratio_err : float
        Its statistical standard error.
    chi2, dof, p_value : float, int, float
        Chi-square of the ratio about ``mean_ratio`` (the radial shapes agree when it is
        consistent with ``dof = K - 1``), relative errors ``sigma_rel`` and ``rel_sys`` in quadrature.
    max_abs_z : float
        Largest ``|ratio - mean_ratio|`` in those units.
    """

    ratio: np.ndarray
    ratio_err: np.ndarray
    mean_ratio: float
    mean_ratio_err: float
    chi2: float
    dof: int
    p_value: float
    max_abs_z: float


def compare_sweeps(a: SweepResult, b: SweepResult, *, rel_sys: float = 0.0) -> SweepComparison:
    """Ratio of two sweeps ``a / b`` per offset, its mean, and whether its radial shape is flat.

    Parameters
    ----------
    a, b : SweepResult
        Same radial offsets; every offset with at least one coincidence in each.
    rel_sys : float
        Relative systematic allowance per offset (a radial trend of the ratio smaller than
        this is not held against the engines).
    """
    rel_sys = float(check_in_range("rel_sys", rel_sys, 0.0, 10.0))
    if a.radial_offset_mm.shape != b.radial_offset_mm.shape or not np.allclose(a.radial_offset_mm, b.radial_offset_mm):
        raise ValueError(f"sweeps differ in their offsets: {a.radial_offset_mm} vs {b.radial_offset_mm} mm")
    if np.any(a.coincidences < 1) or np.any(b.coincidences < 1):
        raise ValueError("every offset needs at least one coincidence in each sweep")
    ratio = a.sensitivity / b.sensitivity
    rel = np.sqrt(1.0 / a.coincidences + 1.0 / b.coincidences)
    w = 1.0 / (rel**2 + rel_sys**2)
    mean = float(np.sum(w * ratio) / np.sum(w))
    z = (ratio - mean) / (mean * np.sqrt(rel**2 + rel_sys**2))
    chi2, dof = float(np.sum(z**2)), len(ratio) - 1
    p = float(stats.chi2.sf(chi2, dof)) if dof > 0 else 1.0
    err = mean / math.sqrt(float(np.sum(1.0 / rel**2)))
    return SweepComparison(ratio, ratio * rel, mean, err, chi2, dof, p, float(np.abs(z).max()))
