"""SPECT model: batched projector and OSEM against PyTomography, physics sanity, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from refsuite.pvc import (
    MELP_208KEV,
    Reconstruction,
    SpectGeometry,
    back_project,
    contour_orbit,
    forward_project,
    osem,
    pytomography_osem,
    pytomography_system_matrix,
)
from refsuite.pvc.phantoms import BodyRegion, attenuation_map
from refsuite.pvc.spect import from_internal, to_internal

GEOM = SpectGeometry((8, 12, 12), voxel_mm=4.8, n_views=12, time_per_view_s=300.0)


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(3)
    mu, _ = attenuation_map(GEOM.shape, GEOM.voxel_mm, region=BodyRegion.THORAX, rng=rng, scale=0.3)
    act = np.where(mu > 0, rng.uniform(0, 1, GEOM.shape), 0.0)
    return mu, act, contour_orbit(mu, GEOM)


@pytest.mark.parametrize("psf", [False, True])
def test_projector_matches_pytomography(case, psf):
    mu, act, radii = case
    system = pytomography_system_matrix(mu, radii, GEOM, psf=psf)
    ref = system.forward(to_internal(act)[0]).numpy() * GEOM.counts_per_mbq_view
    ours = forward_project(act, mu, radii, GEOM, psf=psf)[0]
    assert np.abs(ours - ref).max() <= 1e-5 * ref.max()
    proj = np.random.default_rng(0).uniform(0, 1, ours.shape)
    ref_b = from_internal(system.backward(torch.tensor(proj, dtype=torch.float32))[None])[0]
    assert np.abs(back_project(proj, mu, radii, GEOM, psf=psf)[0] - ref_b).max() <= 1e-5 * ref_b.max()


@pytest.mark.parametrize("recon", list(Reconstruction))
def test_osem_matches_pytomography(case, recon):
    mu, act, radii = case
    counts = np.random.default_rng(1).poisson(forward_project(act, mu, radii, GEOM))
    ours = osem(counts, mu, radii, GEOM, recon=recon, n_iter=2)[0]
    ref = pytomography_osem(counts, mu, radii, GEOM, recon=recon, n_iter=2)
    assert np.abs(ours - ref).max() <= 1e-4 * ref.max()


def test_batch_equals_single_cases(case):
    mu, act, radii = case
    two = forward_project(np.array([act, 2 * act[::-1]]), np.array([mu, mu[::-1]]), np.array([radii[0], radii[0]]), GEOM)
    assert np.allclose(two[0], forward_project(act, mu, radii, GEOM)[0], rtol=1e-5, atol=1e-6)
    assert np.allclose(two[1], forward_project(2 * act[::-1], mu[::-1], radii, GEOM)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("psf", [False, True])
def test_projection_conserves_activity_without_attenuation(psf):
    g = SpectGeometry((16, 16, 16), n_views=8)
    act = np.zeros(g.shape)
    act[6:10, 5:11, 6:10] = 1.0  # axially central, so the blur stays inside the detector
    p = forward_project(act, np.zeros(g.shape), 100.0, g, psf=psf)
    per_view = p[0].sum(axis=(1, 2)) / g.counts_per_mbq_view
    assert np.allclose(per_view, act.sum(), rtol=2e-3)


def test_attenuation_of_central_point_in_water_cylinder():
    g = SpectGeometry((8, 32, 32), n_views=8)
    z, y, x = np.meshgrid(*(np.arange(n) - (n - 1) / 2 for n in g.shape), indexing="ij")
    radius_mm = 60.0
    mu = np.where(np.hypot(y, x) * g.voxel_mm <= radius_mm, 0.0143, 0.0)
    act = np.zeros(g.shape)
    act[3:5, 15:17, 15:17] = 1.0  # centred 2x2x2 block
    frac = forward_project(act, mu, 100.0, g, psf=False)[0].sum(axis=(1, 2)) / g.counts_per_mbq_view / act.sum()
    # voxelised disk: the path length differs by up to half a voxel between axial and diagonal views
    assert np.mean(frac) == pytest.approx(np.exp(-0.0143 * radius_mm), rel=0.03)
    assert np.allclose(frac, np.exp(-0.0143 * radius_mm), rtol=0.07)


def test_melp_resolution_is_one_to_two_cm_at_typical_distances():
    fwhm = MELP_208KEV.fwhm_mm([0.0, 100.0, 200.0])
    assert 4.5 < fwhm[0] < 6.0 and 10.0 < fwhm[1] < 13.0 and 17.0 < fwhm[2] < 21.0


@given(st.floats(0, 500), st.floats(0.1, 100))
@settings(max_examples=50, deadline=None)
def test_collimator_fwhm_increases_with_distance(d, step):
    assert MELP_208KEV.fwhm_mm(d + step) > MELP_208KEV.fwhm_mm(d)


def test_noise_free_rr_osem_recovers_total_activity(case):
    mu, act, radii = case
    rec = osem(forward_project(act, mu, radii, GEOM), mu, radii, GEOM, recon=Reconstruction.RR)[0]
    assert abs(rec.sum() / act.sum() - 1) < 0.03


def test_bad_inputs(case):
    mu, act, radii = case
    bad = mu.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="mu_per_mm must be finite"):
        forward_project(act, bad, radii, GEOM)
    with pytest.raises(ValueError, match="mu_per_mm must be >= 0"):
        forward_project(act, -mu, radii, GEOM)
    with pytest.raises(ValueError, match="activity_mbq shape"):
        forward_project(act[:-1], mu, radii, GEOM)
    with pytest.raises(ValueError, match="counts must be >= 0"):
        osem(-np.ones((1, 12, 12, 8)), mu, radii, GEOM)
    with pytest.raises(ValueError, match="radii_mm must be > 0"):
        forward_project(act, mu, -1.0, GEOM)
    with pytest.raises(ValueError, match="ny == nx"):
        SpectGeometry((8, 12, 16))
    with pytest.raises(TypeError, match="recon must be a Reconstruction"):
        osem(np.ones((1, 12, 12, 8)), mu, radii, GEOM, recon="RR")
