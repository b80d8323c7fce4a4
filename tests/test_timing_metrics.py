"""CTR fit: unbiased FWHM with calibrated uncertainties (Poisson likelihood)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refsuite.metrics import ctr_fwhm


@settings(max_examples=20, deadline=None)
@given(st.floats(50, 400), st.floats(-500, 500), st.integers(0, 2**32 - 1))
def test_recovers_gaussian_fwhm(sigma, mean, seed):
    x = np.random.default_rng(seed).normal(mean, sigma, 20000)
    fit = ctr_fwhm(x)
    true = 2 * np.sqrt(2 * np.log(2)) * sigma
    assert abs(fit.fwhm - true) < 5 * fit.fwhm_err
    assert abs(fit.mean - mean) < 5 * fit.mean_err


@pytest.mark.statistical
def test_uncertainties_are_calibrated_for_small_samples():
    rng = np.random.default_rng(7)
    fits = [ctr_fwhm(rng.normal(0.0, 100.0, 400)) for _ in range(200)]
    pull = np.array([(f.fwhm - 235.482) / f.fwhm_err for f in fits])
    pull_mean = np.array([f.mean / f.mean_err for f in fits])
    # 200 pulls: mean within 4 standard errors of 0, spread within 20 % of 1
    assert abs(pull.mean()) < 4 / np.sqrt(200)
    assert 0.8 < pull.std() < 1.2
    assert 0.8 < pull_mean.std() < 1.2


def test_bad_input():
    with pytest.raises(ValueError, match="at least"):
        ctr_fwhm(np.zeros(5))
    with pytest.raises(ValueError, match="finite"):
        ctr_fwhm(np.r_[np.random.default_rng(0).normal(size=100), np.nan])
    with pytest.raises(ValueError, match="zero spread"):
        ctr_fwhm(np.ones(100))
