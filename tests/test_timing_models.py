"""Explicit / implicit GBDT corrections: learning, application, persistence, bad input, speed."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from refsuite import timing as T
from refsuite.metrics import ctr_fwhm

_FAST = {"n_estimators": 80, "learning_rate": 0.25, "max_bin": 64, "n_jobs": 1, "device": "cpu"}


@pytest.fixture(scope="module")
def data():
    train, _ = T.simulate_detector_pair(source_positions_mm=T.axial_positions(50.0), n_per_position=2500, seed=21)
    test, truth = T.simulate_detector_pair(source_positions_mm=[-50.0, 0.0, 50.0], n_per_position=2500, seed=22)
    offsets = T.skew_calibration(train)
    return train, test, truth, offsets


@pytest.fixture(scope="module")
def explicit(data):
    train, _, _, offsets = data
    return T.train_correction(train, kind="explicit", max_depth=6, offsets_ps=offsets, **_FAST)


def test_explicit_correction_improves_ctr(data, explicit):
    _, test, _, offsets = data
    photo = T.energy_mask(test, (430, 590))
    res_analytic = T.time_difference(test, offsets) - T.expected_dt(test)
    res_model = T.apply_correction(explicit, test) - T.expected_dt(test)
    before, after = ctr_fwhm(res_analytic[photo]), ctr_fwhm(res_model[photo])
    # the higher-order skews are learnable: a clear gain even with 14k training events
    assert after.fwhm < 0.85 * before.fwhm
    # explicit: corrected dt = dt - 2 * predicted timestamp correction (eq. 7)
    np.testing.assert_allclose(res_model + T.expected_dt(test),
                               T.time_difference(test, offsets) - 2 * T.predict_correction(explicit, test))


def test_explicit_label_has_no_position_information(data):
    train, _, _, offsets = data
    photo = T.energy_mask(train, (430, 590))  # the window the offsets were fitted in
    lab = T.explicit_label(train, offsets)[photo]
    z = train["source_mm"][photo, 2]
    groups = [lab[z == q] for q in np.unique(z)]
    means = np.array([g.mean() for g in groups])
    errs = np.array([g.std() / np.sqrt(g.size) for g in groups])
    # translation symmetric: the label means agree at every position (chi-square, 6 dof, p > 0.001)
    chi2 = np.sum(((means - np.average(means, weights=errs**-2)) / errs) ** 2)
    assert stats.chi2.sf(chi2, len(means) - 1) > 1e-3


def test_implicit_sees_the_time_difference(data):
    train, test, _, offsets = data
    names = T.feature_names(16, "implicit")
    assert names[-1] == "dt_ps" and "dt_ps" not in T.feature_names(16, "explicit")
    x = T.extract_features(test, offsets, "implicit")
    np.testing.assert_allclose(x[:, -1], T.time_difference(test, offsets), rtol=1e-6, atol=0.1)
    model = T.train_correction(train, kind="implicit", max_depth=4, offsets_ps=offsets, **_FAST)
    pred = T.apply_correction(model, test)
    label = T.expected_dt(test)
    # the model predicts the expected time difference better than the measured one does
    assert np.mean(np.abs(pred - label)) < 0.9 * np.mean(np.abs(T.time_difference(test, offsets) - label))


@pytest.mark.parametrize("suffix", [".json", ".ubj"])
def test_save_load_round_trip(tmp_path, data, explicit, suffix):
    _, test, _, _ = data
    path = T.save_model(explicit, tmp_path / f"model{suffix}")
    loaded = T.load_model(path)
    assert loaded.kind is explicit.kind
    np.testing.assert_array_equal(loaded.offsets_ps, explicit.offsets_ps)
    np.testing.assert_allclose(T.apply_correction(loaded, test), T.apply_correction(explicit, test), atol=1e-3)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temporary file


def test_bad_input(data, explicit, tmp_path):
    train, test, _, offsets = data
    with pytest.raises(ValueError, match="kind must be one of"):
        T.train_correction(train, kind="both", max_depth=4, offsets_ps=offsets)
    with pytest.raises(ValueError, match="max_depth"):
        T.train_correction(train, kind="explicit", max_depth=0, offsets_ps=offsets)
    with pytest.raises(ValueError, match="leaves 0"):
        T.train_correction(train, kind="explicit", max_depth=4, offsets_ps=offsets, energy_window_kev=(5000, 6000))
    with pytest.raises(ValueError, match="device"):
        T.train_correction(train, kind="explicit", max_depth=4, offsets_ps=offsets, device="tpu")
    with pytest.raises(ValueError, match="missing columns"):
        T.apply_correction(explicit, {"time_ps": test["time_ps"]})
    with pytest.raises(ValueError, match=r"\.json or \.ubj"):
        T.save_model(explicit, tmp_path / "model.pkl")
    with pytest.raises(FileNotFoundError):
        T.load_model(tmp_path / "absent.json")


@pytest.mark.benchmark(group="timing")
def test_inference_speed(benchmark, data, explicit, record_figure):
    _, test, _, _ = data
    n = len(test["source_mm"])
    benchmark.pedantic(T.apply_correction, args=(explicit, test), rounds=3, iterations=1)
    rate = n / benchmark.stats.stats.min
    benchmark.extra_info["corrections_per_s"] = rate
    record_figure("explicit correction inference (features + GBDT, depth 6)", rate, unit="events/s")
    assert rate > 1e4
