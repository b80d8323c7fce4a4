"""Detector-pair simulator: layout, reproducibility, recorded truth, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refsuite import timing as T


@pytest.fixture(scope="module")
def small():
    return T.simulate_detector_pair(source_positions_mm=[-100.0, 0.0, 120.0], n_per_position=2000, seed=3)


def test_layout_and_counts(small):
    events, truth = small
    assert events["time_ps"].shape == (6000, 2, 16)
    assert events["energy_au"].shape == (6000, 2, 16)
    assert np.array_equal(np.isnan(events["time_ps"]), np.isnan(events["energy_au"]))
    assert np.all(np.isfinite(events["time_ps"]).any(axis=-1))  # every cluster has a hit
    assert np.array_equal(np.unique(events["source_mm"][:, 2]), [-100.0, 0.0, 120.0])
    assert truth["constants"]["skew_ps"].shape == (2, 16)
    assert np.all((truth["depth_mm"] >= 0) & (truth["depth_mm"] <= 20.0))


def test_main_channel_timestamp_is_the_sum_of_its_recorded_components(small):
    events, truth = small
    main = T.main_channel(events)
    assert np.array_equal(main, truth["main_channel"])
    t_main = T.cluster_times(events)
    parts = sum(truth[k] for k in ("gamma_ps", "doi_ps", "share_ps", "walk_ps", "skew_ps", "jitter_ps"))
    np.testing.assert_allclose(t_main, parts, rtol=0, atol=1e-4)


def test_true_time_difference_matches_source_position(small):
    events, truth = small
    dt_true = truth["gamma_ps"][:, 0] - truth["gamma_ps"][:, 1]
    # the 0.5 mm source sphere and obliquity move dt by at most a few ps
    assert np.max(np.abs(dt_true - T.expected_dt(events))) < 5.0


def test_same_seed_same_events_and_shared_detectors():
    a, ta = T.simulate_detector_pair(source_positions_mm=[0.0], n_per_position=300, seed=5)
    b, tb = T.simulate_detector_pair(source_positions_mm=[0.0], n_per_position=300, seed=5)
    c, tc = T.simulate_detector_pair(source_positions_mm=[0.0], n_per_position=300, seed=6)
    np.testing.assert_array_equal(a["time_ps"], b["time_ps"])
    assert not np.allclose(np.nan_to_num(a["time_ps"]), np.nan_to_num(c["time_ps"]))
    # different event seeds, same physical detectors
    np.testing.assert_array_equal(ta["constants"]["skew_ps"], tc["constants"]["skew_ps"])


def test_photopeak_and_oracle_resolution():
    events, truth = T.simulate_detector_pair(source_positions_mm=[0.0], n_per_position=20000, seed=1)
    e = T.cluster_energy(events)
    hist, edges = np.histogram(e[:, 0], bins=np.arange(0, 700, 20))
    peak = edges[np.argmax(hist)]
    assert 440 <= peak <= 540  # photopeak (threshold losses put it a little below 511)
    photo = T.energy_mask(events, (430, 590))
    from refsuite.metrics import ctr_fwhm

    assert 170 < ctr_fwhm(truth["dt_oracle_ps"][photo]).fwhm < 240


def test_in_plane_grid_and_axial_positions():
    g = T.in_plane_grid(3)
    assert g.shape == (9, 3)
    assert np.allclose(np.unique(g[:, 0]), [-7.6 * 2 / 3, 0.0, 7.6 * 2 / 3])  # cell centres
    assert np.allclose(T.in_plane_grid(1), [[0.0, 0.0, 0.0]])
    assert T.axial_positions(100.0).shape == (4, 3)
    with pytest.raises(ValueError, match="step_mm"):
        T.axial_positions(70.0)


@pytest.mark.parametrize("kwargs, match", [
    ({"source_positions_mm": [290.0]}, "source_positions_mm \\(z\\)"),
    ({"source_positions_mm": [[9.0, 0.0, 0.0]]}, "source_positions_mm \\(x, y\\)"),
    ({"source_positions_mm": [0.0], "n_per_position": -1}, "n_per_position"),
    ({"source_positions_mm": [0.0], "n_per_position": 0}, "no coincidences"),
    ({"source_positions_mm": [[0.0, 1.0]]}, "shape"),
    ({"source_positions_mm": [[7.6, 0.0, 0.0]], "model": T.DetectorModel(source_diameter_mm=0.0)}, "no coincidences"),
])
def test_bad_input(kwargs, match):
    kwargs = {"n_per_position": 10, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        T.simulate_detector_pair(**kwargs)


def test_bad_model_parameter():
    with pytest.raises(ValueError, match="own_fraction_front"):
        T.DetectorModel(own_fraction_front=1.5)
    with pytest.raises(ValueError, match="unknown parameters"):
        T.DetectorModel.from_dict({"nonsense": 1})


@settings(max_examples=40, deadline=None)
@given(st.floats(-250, 250), st.floats(-250, 250))
def test_expected_time_difference_is_linear_and_antisymmetric(z1, z2):
    f = T.expected_time_difference
    assert f(-z1) == pytest.approx(-f(z1))
    assert f(z1) + f(z2) == pytest.approx(f(z1 + z2), abs=1e-9)
    assert f(1.0) == pytest.approx(2.0 / 0.299792458)
