"""Analytic skew calibration recovers the simulated per-channel offsets."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from refsuite import timing as T

# no higher-order effects: the offsets are exactly the skews
_CLEAN = T.DetectorModel(walk_ps=0.0, optical_path_factor=1.0, n_lyso=1.0, share_delay_ps_per_mm=0.0)


@pytest.fixture(scope="module")
def clean():
    return T.simulate_detector_pair(source_positions_mm=T.axial_positions(50.0), n_per_position=4000,
                                    seed=11, model=_CLEAN)


@pytest.mark.statistical
def test_recovers_skews_within_uncertainty(clean):
    events, truth = clean
    off, sig = T.skew_calibration(events, return_uncertainty=True)
    skew = truth["constants"]["skew_ps"] - truth["constants"]["skew_ps"].mean()
    z = ((off - skew) / sig).ravel()
    # 32 offsets with one constraint (zero mean): chi-square with 31 dof, false alarm 0.1 %
    assert stats.chi2.sf(np.sum(z**2), 31) > 1e-3
    assert off.mean() == pytest.approx(0.0, abs=1e-9)


@pytest.mark.statistical
def test_recovers_effective_offsets_with_higher_order_effects():
    events, truth = T.simulate_detector_pair(source_positions_mm=T.axial_positions(50.0), n_per_position=4000, seed=12)
    from validation.timing import _effective_offsets

    off, sig = T.skew_calibration(events, return_uncertainty=True)
    z = (off - _effective_offsets(events, truth)) / sig
    assert np.max(np.abs(z)) < 4.0  # 32 offsets, false alarm ~0.2 %


def test_l1_variant_agrees(clean):
    events, truth = clean
    off = T.skew_calibration(events)
    off1 = T.skew_calibration(events, method="l1")
    assert np.sqrt(np.mean((off1 - off) ** 2)) < 10.0


@settings(max_examples=8, deadline=None)
@given(st.floats(-1e5, 1e5), st.integers(0, 31), st.floats(-2000, 2000))
def test_equivariance(common, channel, shift):
    events, base = _small_calibration()
    moved = dict(events)
    t = events["time_ps"] + common  # a common shift of every timestamp changes nothing
    d, k = divmod(channel, 16)
    t[:, d, k] += shift  # shifting one channel moves its offset by the same amount (zero-mean convention)
    moved["time_ps"] = t
    expect = base.copy()
    expect[d, k] += shift
    expect -= expect.mean()
    np.testing.assert_allclose(T.skew_calibration(moved), expect, atol=1e-3)


@functools.lru_cache(maxsize=1)
def _small_calibration():
    events, _ = T.simulate_detector_pair(source_positions_mm=T.axial_positions(100.0), n_per_position=1500,
                                         seed=13, model=_CLEAN)
    return events, T.skew_calibration(events)


def test_single_centred_source_is_rejected():
    events, _ = T.simulate_detector_pair(source_positions_mm=[0.0], n_per_position=3000, seed=1, model=_CLEAN)
    with pytest.raises(ValueError, match="disconnected"):
        T.skew_calibration(events)


def test_bad_input(clean):
    events, _ = clean
    with pytest.raises(ValueError, match="missing columns"):
        T.skew_calibration({k: v for k, v in events.items() if k != "source_mm"})
    with pytest.raises(ValueError, match="keeps none"):
        T.skew_calibration(events, energy_window_kev=(2000.0, 3000.0))
    with pytest.raises(ValueError, match="min_pair_counts"):
        T.skew_calibration(events, min_pair_counts=1)
    with pytest.raises(ValueError, match="empty"):
        T.skew_calibration(T.select(events, np.zeros(len(events["source_mm"]), bool)))
