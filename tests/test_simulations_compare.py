"""The engine comparison (simulations.compare) without Geant4: two built-in runs of the same
scenario with different seeds must agree; a run with a deliberately different detector,
source or digitiser must not. Synthetic tables check that the statistics are calibrated
(p-values uniform when the two tables come from one distribution)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from refsuite import phantoms as ph
from refsuite.mc import simulate
from simulations.builtin import builtin_options, run_builtin
from simulations.compare import (
    SweepResult, compare_block_counts, compare_energy_spectra, compare_sweeps, ks_critical_distance, run_engine,
    short_run, sweep_sensitivity, true_coincidences,
)
from simulations.scenario import load_scenario, shipped_scenarios

SHIPPED = shipped_scenarios()
N_POINTS = 2**16  # decays per thull_points run (~6500 coincidences, 0.2 s)
WINDOW = (450.0, 650.0)


@pytest.fixture(scope="module")
def points():
    return load_scenario(SHIPPED["thull_points"]).runs()[0]


def _mc(run, seed, **override):
    return simulate(run.scanner, run.phantom, **{**builtin_options(run, n_decays=N_POINTS), "seed": seed, **override})


@pytest.fixture(scope="module")
def reference(points):
    return _mc(points, 1)


# ---------------------------------------------------------------- built-in vs built-in
@pytest.mark.parametrize("seed", [2, 3])
def test_same_scenario_different_seeds_agree(points, reference, seed):
    other = _mc(points, seed)
    bc = compare_block_counts(reference, other, n_blocks=points.scanner.n_blocks)
    sp = compare_energy_spectra(reference, other, window_kev=WINDOW)
    assert bc.dof == points.scanner.n_blocks - 1 and bc.p_value > 1e-3 and bc.max_abs_z < 4.0
    assert sp.ks_distance < sp.ks_critical and sp.ks_p_value > 1e-3 and sp.chi2_p_value > 1e-3
    assert abs(sp.mean_a_kev - sp.mean_b_kev) < 4 * sp.mean_diff_err_kev


def test_shifted_sources_change_the_block_counts(points, reference):
    """Sources 10 mm off along x (a placement bug): block shares disagree far beyond the 3 %
    allowance the study grants; the spectra, untouched, still agree."""
    p = points.phantom
    moved = ph.PointSources(p.centres_mm + [10.0, 0.0, 0.0], radius_mm=p.radius_mm, activities_bq=p.activities_bq,
                            cube_mm=p.cube_mm)
    other = simulate(points.scanner, moved, **{**builtin_options(points, n_decays=N_POINTS), "seed": 2})
    bc = compare_block_counts(reference, other, n_blocks=points.scanner.n_blocks, rel_sys=0.03)
    assert bc.p_value < 1e-10 and bc.max_abs_z > 5.0
    sp = compare_energy_spectra(reference, other, window_kev=WINDOW)
    assert sp.ks_distance < sp.ks_critical


@pytest.mark.parametrize("resolution, min_excess", [(0.20, 0.08), (0.14, 0.005)])
def test_other_energy_resolution_changes_the_spectrum(points, reference, resolution, min_excess):
    other = _mc(points, 2, energy_resolution=resolution)
    sp = compare_energy_spectra(reference, other, window_kev=WINDOW)
    assert sp.ks_distance - sp.ks_critical > min_excess and sp.chi2_p_value < 1e-6
    # a wider Gaussian around 511 keV in the asymmetric 450-650 keV window raises the mean
    assert sp.mean_b_kev - sp.mean_a_kev > 3 * sp.mean_diff_err_kev
    bc = compare_block_counts(reference, other, n_blocks=points.scanner.n_blocks)
    assert bc.p_value > 1e-3  # the geometry is unchanged


# ---------------------------------------------------------------- calibration on synthetic tables
def _pairs(rng, prob, n):
    """n coincidences with (block1, block2) drawn from the pair probabilities prob (B, B)."""
    k = rng.choice(prob.size, size=n, p=prob.ravel())
    return {"BlockID1": k // prob.shape[0], "BlockID2": k % prob.shape[0]}


def _pair_probabilities(n_blocks, rng):
    # photons of a pair land in roughly opposite blocks: strongly correlated singles
    b = np.arange(n_blocks)
    w = np.exp(-0.5 * ((b[:, None] - b[None, :] - n_blocks // 2) % n_blocks - 0.0) ** 2 / 1.5**2)
    w *= rng.uniform(0.5, 1.5, n_blocks)[:, None]
    return w / w.sum()


def test_block_chi_square_is_calibrated_for_correlated_singles():
    """p-values uniform under the null although the two singles of a coincidence land in
    correlated blocks (the covariance of the block indicators carries that)."""
    rng = np.random.default_rng(7)
    prob = _pair_probabilities(12, rng)
    p = np.array([compare_block_counts(_pairs(rng, prob, 3000), _pairs(rng, prob, 2000), n_blocks=12).p_value
                  for _ in range(300)])
    assert stats.kstest(p, "uniform").pvalue > 1e-3
    assert abs(np.mean(p < 0.05) - 0.05) < 3 * np.sqrt(0.05 * 0.95 / len(p))


def test_block_allowance_absorbs_a_systematic_of_its_size_only():
    rng = np.random.default_rng(8)
    prob = _pair_probabilities(12, rng)
    tilted = prob * (1 + 0.02 * np.sin(np.arange(12)))[:, None] * (1 + 0.02 * np.sin(np.arange(12)))[None, :]
    tilted /= tilted.sum()
    a, b = _pairs(rng, prob, 400_000), _pairs(rng, tilted, 400_000)
    assert compare_block_counts(a, b, n_blocks=12).p_value < 1e-6  # 2 % tilt, seen with 4e5 events
    assert compare_block_counts(a, b, n_blocks=12, rel_sys=0.05).p_value > 0.05  # within a 5 % allowance


def test_ks_critical_distance_matches_scipy():
    """At the critical distance scipy's (asymptotic) two-sample p-value is alpha."""
    n, m = 4000, 2500
    d = ks_critical_distance(n, m, 1e-3)
    en = np.sqrt(n * m / (n + m))
    assert stats.kstwobign.sf(d * en) == pytest.approx(1e-3, rel=1e-6)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_a=st.integers(50, 400), n_b=st.integers(50, 400))
def test_comparisons_are_symmetric(seed, n_a, n_b):
    rng = np.random.default_rng(seed)
    prob = _pair_probabilities(6, rng)
    a, b = _pairs(rng, prob, n_a), _pairs(rng, prob, n_b)
    for t in (a, b):
        t["TotalEnergyDeposit1"], t["TotalEnergyDeposit2"] = rng.normal(0.511, 0.026, (2, len(t["BlockID1"])))
    ab, ba = compare_block_counts(a, b, n_blocks=6), compare_block_counts(b, a, n_blocks=6)
    assert ab.chi2 == pytest.approx(ba.chi2, rel=1e-9, abs=1e-9) and ab.dof == ba.dof
    sab, sba = compare_energy_spectra(a, b, window_kev=WINDOW), compare_energy_spectra(b, a, window_kev=WINDOW)
    assert sab.ks_distance == pytest.approx(sba.ks_distance) and sab.chi2 == pytest.approx(sba.chi2)
    self_ = compare_block_counts(a, a, n_blocks=6)
    assert self_.chi2 == pytest.approx(0.0, abs=1e-9) and self_.p_value == pytest.approx(1.0)


def _sweep(counts, n=10**5, r=(0.0, 100.0, 200.0, 300.0)):
    c = np.asarray(counts, float)
    return SweepResult(np.asarray(r), np.full(len(c), float(n)), c, c / n, np.sqrt(c) / n)


def test_sweep_ratio_flat_under_a_uniform_scale_and_calibrated():
    rng = np.random.default_rng(9)
    profile = np.array([5000.0, 5200.0, 6000.0, 9000.0])  # coincidences per 1e5 decays along r
    p, ratios = [], []
    for _ in range(300):
        a, b = _sweep(rng.poisson(0.45 * profile)), _sweep(rng.poisson(profile))
        c = compare_sweeps(a, b)
        p.append(c.p_value)
        ratios.append((c.mean_ratio - 0.45) / c.mean_ratio_err)
    assert stats.kstest(p, "uniform").pvalue > 1e-3
    assert abs(np.mean(ratios)) < 0.2 and 0.85 < np.std(ratios) < 1.15  # unbiased, honest error


def test_sweep_shape_change_fails_unless_within_the_allowance():
    profile = np.array([5000.0, 5200.0, 6000.0, 9000.0]) * 4
    # with a 5 % allowance per offset, 4 offsets flag a linear trend of the ratio above ~27 % end
    # to end (chi2 ~ 222 T^2 > 16.3); 50 % is far beyond, and without the allowance 10 % is too
    trend = 1 + np.array([0.0, 1.0, 2.0, 3.0]) / 6
    assert compare_sweeps(_sweep(profile * trend), _sweep(profile), rel_sys=0.05).p_value < 1e-6
    trend = 1 + np.array([0.0, 1.0, 2.0, 3.0]) / 30
    assert compare_sweeps(_sweep(profile * trend), _sweep(profile), rel_sys=0.0).p_value < 1e-6
    small = 1 + np.array([0.0, 0.01, 0.02, 0.03])
    assert compare_sweeps(_sweep(profile * small), _sweep(profile), rel_sys=0.05).p_value > 0.5


# ---------------------------------------------------------------- sweeps through engines (files)
def _halved_offset(run, out):
    """A broken engine: the line source at half its radial offset (a radius/diameter slip)."""
    p = run.phantom
    moved = ph.LineSource(position_mm=tuple(np.asarray(p.position_mm) / 2), radius_mm=p.radius_mm,
                          length_mm=p.length_mm, centre_z_mm=p.centre_z_mm, activity_bq=p.activity_bq)
    return run_builtin(dataclasses.replace(run, phantom=moved), out)


@pytest.fixture(scope="module")
def sweep_runs():
    runs = load_scenario(SHIPPED["lin_line_sweep"]).runs()
    return [runs[0], runs[8], runs[15]]  # 0, 200, 375 mm


def test_sweep_through_engines_agrees_for_seeds_and_catches_a_moved_source(sweep_runs, tmp_path):
    n = 2**15
    a = sweep_sensitivity(sweep_runs, run_builtin, n_decays=n, seed=10, workdir=tmp_path)
    b = sweep_sensitivity(sweep_runs, run_builtin, n_decays=n, seed=20)
    np.testing.assert_array_equal(a.radial_offset_mm, [0.0, 200.0, 375.0])
    assert np.all(a.n_decays == n) and np.all(a.coincidences > 1000)
    assert a.sensitivity[-1] > 1.5 * a.sensitivity[0]  # Lin et al., Fig. 7: rises towards the ring
    same = compare_sweeps(a, b, rel_sys=0.05)
    assert same.p_value > 1e-3 and abs(same.mean_ratio - 1) < 4 * same.mean_ratio_err
    bad = compare_sweeps(sweep_sensitivity(sweep_runs, _halved_offset, n_decays=n, seed=20), b, rel_sys=0.05)
    assert bad.p_value < 1e-6


def test_short_run_and_run_engine(points, tmp_path):
    run = short_run(points, n_decays=4096, seed=99)
    assert (run.n_decays, run.scenario.acquisition.seed) == (4096, 99)
    assert run.scanner is points.scanner and run.phantom is points.phantom
    assert run.scenario.digitizer == points.scenario.digitizer
    ev = run_engine(run_builtin, run, tmp_path / "b.root")
    again = run_engine(run_builtin, run, tmp_path / "c.root")
    assert ev.n_events > 100 and np.array_equal(ev["BlockID1"], again["BlockID1"])
    with pytest.raises(ValueError, match="n_decays"):
        short_run(points, n_decays=0, seed=1)


def test_bad_inputs_are_rejected(reference, sweep_runs):
    with pytest.raises(ValueError, match="BlockID outside"):
        compare_block_counts(reference, reference, n_blocks=3)
    with pytest.raises(ValueError, match="window_kev"):
        compare_energy_spectra(reference, reference, window_kev=(650.0, 450.0))
    with pytest.raises(ValueError, match="offsets"):
        compare_sweeps(_sweep([1, 2, 3, 4]), _sweep([1, 2, 3], r=(0.0, 1.0, 2.0)))
    with pytest.raises(ValueError, match="rel_sys"):
        compare_sweeps(_sweep([1, 2, 3, 4]), _sweep([1, 2, 3, 4]), rel_sys=-0.1)
    with pytest.raises(ValueError, match="radial_offset_mm"):
        sweep_sensitivity([load_scenario(SHIPPED["thull_points"]).runs()[0]], run_builtin, n_decays=10, seed=0)


def _with_randoms(run, out):
    """An engine whose sorter also pairs singles of different decays (randoms)."""
    from refsuite.io import read_coincidences, write_coincidences

    run_builtin(run, out)
    ev = read_coincidences(out)
    n = ev.n_events // 10
    randoms = {k: v[:n].copy() for k, v in ev.items()}
    randoms["EventID2"] = randoms["EventID2"] + 10**9
    write_coincidences(out, {k: np.concatenate([v, randoms[k]]) for k, v in ev.items()})


def test_randoms_are_left_out_of_the_comparison(reference, sweep_runs):
    t = true_coincidences(reference)
    assert t.n_events == reference.n_events  # the built-in MC forms trues only
    mixed = {k: np.concatenate([v, v[:5]]) for k, v in reference.items()}
    mixed["EventID2"][-5:] += 1
    assert true_coincidences(mixed).n_events == reference.n_events
    runs = sweep_runs[:1]
    clean = sweep_sensitivity(runs, run_builtin, n_decays=8192, seed=3)
    trues = sweep_sensitivity(runs, _with_randoms, n_decays=8192, seed=3)
    assert trues.coincidences == pytest.approx(clean.coincidences)
    every = sweep_sensitivity(runs, _with_randoms, n_decays=8192, seed=3, trues_only=False)
    assert every.coincidences[0] > 1.05 * clean.coincidences[0]
