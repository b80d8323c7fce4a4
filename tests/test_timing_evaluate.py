"""Three-fold evaluation pieces: MAE per label, the linearity test, gating."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refsuite import timing as T

_SLOPE = 2 / 0.299792458


@settings(max_examples=30, deadline=None)
@given(st.floats(-300, 300), st.integers(0, 2**32 - 1))
def test_linear_data_pass_any_offset(offset, seed):
    z = np.arange(-150.0, 151.0, 10.0)
    err = np.full(z.size, 3.0)
    y = offset + _SLOPE * z + np.random.default_rng(seed).normal(0, 3.0, z.size)
    fit = T.linearity_fit(z, y, err)
    assert abs(fit["offset_ps"] - offset) < 5 * fit["offset_err_ps"]
    assert fit["n_sigma"] < 5


def test_staircase_and_wrong_slope_fail():
    z = np.arange(-150.0, 151.0, 10.0)
    err = np.full(z.size, 3.0)
    stair = _SLOPE * 100.0 * np.round((z + 50) / 100.0) - _SLOPE * 50  # a classifier of 100 mm steps
    assert not T.linearity_fit(z, stair, err)["passed"]
    assert not T.linearity_fit(z, 0.95 * _SLOPE * z, err)["passed"]
    assert T.linearity_fit(z, _SLOPE * z + 7.0, err)["passed"]
    with pytest.raises(ValueError, match=">= 3"):
        T.linearity_fit(z[:2], z[:2], err[:2])
    with pytest.raises(ValueError, match="mean_err_ps"):
        T.linearity_fit(z, z, np.zeros_like(z))


def test_mae_per_label_weights():
    label = np.array([0.0, 0.0, 0.0, 10.0])
    pred = np.array([1.0, -1.0, 1.0, 14.0])
    values, mae, counts = T.mae_per_label(label, pred)
    np.testing.assert_array_equal(values, [0.0, 10.0])
    np.testing.assert_allclose(mae, [1.0, 4.0])
    np.testing.assert_array_equal(counts, [3, 1])
    # the weighted mean over label values is the plain MAE of all events (eq. 10)
    assert np.sum(mae * counts) / counts.sum() == pytest.approx(np.mean(np.abs(pred - label)))


def test_analytic_evaluation_and_gating():
    calib, _ = T.simulate_detector_pair(source_positions_mm=T.axial_positions(100.0), n_per_position=2500, seed=31)
    test, _ = T.simulate_detector_pair(source_positions_mm=[-100.0, 0.0, 100.0], n_per_position=1500, seed=32)
    off = T.skew_calibration(calib)
    ev = T.evaluate_timing(off, test, gate=False)
    assert ev.kind == "analytic" and ev.passed["data"] is True
    assert 300 < ev.ctr["iso_photopeak"].fwhm < 450
    assert ev.corrected_ps.shape == (4500,)
    # mislabelled positions: linearity fails, so a gated evaluation never reaches the CTR
    wrong = dict(test)
    wrong["source_mm"] = test["source_mm"] * np.array([1, 1, 1.2])
    gated = T.evaluate_timing(off, wrong)
    assert gated.passed["physics"] is False and gated.passed["pet"] is None and not gated.ctr
    # the figure draws what was measured and says what was not
    import matplotlib.pyplot as plt

    for e, pet_title in ((ev, "3 PET: CTR at iso-centre"), (gated, "3 PET (not evaluated)")):
        fig = e.figure()
        axes = fig.get_axes()
        assert len(axes) == 3 and axes[2].get_title().startswith(pet_title)
        assert len(axes[1].containers) == (1 if e.linearity else 0)
        plt.close(fig)
    with pytest.raises(ValueError, match="only 0 coincidences|shape"):
        T.evaluate_timing(np.zeros((2, 15)), test)
    one_position = T.select(test, test["source_mm"][:, 2] == 0.0)
    with pytest.raises(ValueError, match=">= 3"):
        T.evaluate_timing(off, one_position)
