"""Iterative Yang PVC, the matched-filter resolution estimate and the PVC metrics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from refsuite.metrics.pvc import (
    activity_deviation,
    activity_volume_histogram,
    nrmse,
    recovery_coefficient,
    ssim,
    vaa,
    wilcoxon_paired,
)
from refsuite.pvc import gaussian_blur, iterative_yang, matched_filter_fwhm


def _regions(shape=(16, 20, 20)):
    lab = np.zeros(shape, dtype=np.int64)
    lab[4:12, 5:15, 5:15] = 1
    lab[6:10, 8:12, 8:12] = 2
    return lab


def test_iterative_yang_recovers_piecewise_constant_object():
    lab = _regions()
    truth = np.array([1.0, 4.0, 10.0])[lab]
    g = gaussian_blur(truth, fwhm_mm=9.6, voxel_size_mm=4.8)
    out = iterative_yang(g, lab, fwhm_mm=9.6, voxel_size_mm=4.8, n_iter=60)
    err0 = np.abs(g - truth).max()
    assert np.abs(out - truth).max() < 0.02 * err0
    assert np.abs(iterative_yang(g, lab, fwhm_mm=9.6, voxel_size_mm=4.8, n_iter=10) - truth).max() < 0.3 * err0


def test_iterative_yang_zero_iterations_and_mask_stack():
    lab = _regions()
    g = gaussian_blur(np.array([1.0, 4.0, 10.0])[lab], fwhm_mm=9.6, voxel_size_mm=4.8)
    assert np.array_equal(iterative_yang(g, lab, fwhm_mm=9.6, voxel_size_mm=4.8, n_iter=0), g)
    stack = np.array([lab == 1, lab == 2])  # label 0 becomes the implicit extra region
    a = iterative_yang(g, lab, fwhm_mm=9.6, voxel_size_mm=(4.8, 4.8, 4.8))
    b = iterative_yang(g, stack, fwhm_mm=9.6, voxel_size_mm=4.8)
    assert np.allclose(a, b)


def test_iterative_yang_bad_inputs():
    lab = _regions()
    g = np.ones(lab.shape)
    with pytest.raises(ValueError, match="fwhm_mm must be >= 0"):
        iterative_yang(g, lab, fwhm_mm=-1.0, voxel_size_mm=4.8)
    bad = g.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="image must be finite"):
        iterative_yang(bad, lab, fwhm_mm=8.0, voxel_size_mm=4.8)
    with pytest.raises(ValueError, match="labels must have the image shape"):
        iterative_yang(g, lab[:-1], fwhm_mm=8.0, voxel_size_mm=4.8)
    with pytest.raises(ValueError, match="region mask 1 is empty"):
        iterative_yang(g, np.array([lab == 1, np.zeros_like(lab, bool)]), fwhm_mm=8.0, voxel_size_mm=4.8)
    with pytest.raises(ValueError, match="voxel_size_mm must be > 0"):
        iterative_yang(g, lab, fwhm_mm=8.0, voxel_size_mm=0.0)


def test_matched_filter_finds_the_blur():
    rng = np.random.default_rng(0)
    truth = np.zeros((16, 24, 24))
    for _ in range(8):
        z, y, x = rng.integers(3, [13, 21, 21])
        truth[z - 2:z + 2, y - 2:y + 2, x - 2:x + 2] += rng.uniform(1, 3)
    recon = gaussian_blur(truth, fwhm_mm=12.0, voxel_size_mm=4.8)
    assert abs(matched_filter_fwhm(recon, truth, voxel_size_mm=4.8) - 12.0) < 0.1


def test_metrics_identity_and_alpha():
    rng = np.random.default_rng(1)
    truth = np.where(rng.random((12, 16, 16)) > 0.7, rng.uniform(1, 2, (12, 16, 16)), 0.0)
    mask = truth > 0
    assert ssim(truth, truth, mask) == pytest.approx(1.0)
    assert nrmse(truth, truth, mask) == 0 and vaa(truth, truth, mask) == 1.0
    assert activity_deviation(truth, truth) == 0 and recovery_coefficient(truth, truth, mask) == pytest.approx(1.0)
    assert vaa(1.04 * truth, truth, mask) == 1.0 and vaa(1.06 * truth, truth, mask) == 0.0
    assert activity_deviation(1.1 * truth, truth) == pytest.approx(0.1)
    assert ssim(0.5 * truth, truth, mask) < 0.95
    edges, frac = activity_volume_histogram(truth, truth, mask)
    assert frac.sum() == pytest.approx(1.0) and len(edges) == len(frac) + 1


@given(st.floats(1e-3, 1e3))
@settings(max_examples=30, deadline=None)
def test_nrmse_and_vaa_are_scale_free(c):
    rng = np.random.default_rng(2)
    truth = rng.uniform(1, 2, (4, 6, 6))
    img = truth * rng.uniform(0.9, 1.1, truth.shape)
    assert nrmse(c * img, c * truth) == pytest.approx(nrmse(img, truth), rel=1e-9)
    assert vaa(c * img, c * truth) == vaa(img, truth)


def test_metric_bad_inputs_and_wilcoxon():
    t = np.ones((4, 4, 4))
    with pytest.raises(ValueError, match="mask is empty"):
        vaa(t, t, np.zeros_like(t, bool))
    with pytest.raises(ValueError, match="must equal truth shape"):
        nrmse(t[:-1], t)
    assert wilcoxon_paired(np.arange(10) + 1.0, np.zeros(10)) < 0.01
    assert wilcoxon_paired(np.ones(5), np.ones(5)) == 1.0
