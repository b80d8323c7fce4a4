"""Analytic blob/sphere projector (the oracle) and Joseph-vs-analytic discretisation errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from refsuite.projectors import (
    TOFParameters,
    blob_line_integrals,
    joseph_forward,
    sphere_line_integrals,
    tof_weight,
    voxelise_blobs,
    voxelise_spheres,
)

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_torch_thread")
TOF = TOFParameters(num_bins=11, bin_width_mm=10.0, sigma_mm=15.9, n_sigmas=3.0)


def _lors(n, seed, radius=80.0):
    g = np.random.default_rng(seed)
    phi = g.uniform(0, 2 * np.pi, n)
    phi2 = phi + np.pi + g.normal(0, 0.15, n)
    xs = np.stack([radius * np.cos(phi), radius * np.sin(phi), g.uniform(-5, 5, n)], 1)
    xe = np.stack([radius * np.cos(phi2), radius * np.sin(phi2), g.uniform(-5, 5, n)], 1)
    return torch.as_tensor(xs), torch.as_tensor(xe), torch.as_tensor(g.integers(-3, 4, n), dtype=F64)


def _numeric(xs, xe, density, tof=None, k=0.0):
    """Brute-force line integral by adaptive quadrature along the segment (scipy.quad)."""
    xs, xe = np.asarray(xs), np.asarray(xe)
    length = np.linalg.norm(xe - xs)
    u = (xe - xs) / length

    def f(s):
        val = density(xs + s * u)
        if tof is not None:
            val *= float(tof_weight(torch.tensor(s - length / 2), torch.tensor(k * tof.bin_width_mm), tof))
        return val

    return integrate.quad(f, 0.0, length, limit=400, epsabs=1e-12, epsrel=1e-10, points=[length / 2])[0]


def test_blob_matches_brute_force_quadrature():
    c, sig, a = np.array([3.3, -2.1, 0.4]), 2.5, 700.0
    dens = lambda x: a / (2 * np.pi * sig**2) ** 1.5 * np.exp(-np.sum((x - c) ** 2) / (2 * sig**2))  # noqa: E731
    xs, xe, tb = _lors(6, 0)
    kw = dict(centres=torch.tensor(c[None]), sigmas=torch.tensor([sig]), activities=torch.tensor([a]))
    ours = blob_line_integrals(xs, xe, **kw)
    ours_tof = blob_line_integrals(xs, xe, tof=TOF, tof_bin=tb, **kw)
    for i in range(6):
        assert ours[i].item() == pytest.approx(_numeric(xs[i], xe[i], dens), rel=1e-9, abs=1e-12)
        assert ours_tof[i].item() == pytest.approx(_numeric(xs[i], xe[i], dens, TOF, tb[i].item()), rel=1e-6, abs=1e-9)


def test_sphere_matches_brute_force_quadrature():
    c, r = np.array([3.3, -2.1, 0.4]), 8.0
    dens = lambda x: float(np.sum((x - c) ** 2) <= r * r)  # noqa: E731
    xs, xe, tb = _lors(6, 1)
    kw = dict(centres=torch.tensor(c[None]), radii=torch.tensor([r]), densities=torch.tensor([1.0]))
    ours = sphere_line_integrals(xs, xe, **kw)
    ours_tof = sphere_line_integrals(xs, xe, tof=TOF, tof_bin=tb, **kw)
    for i in range(6):
        assert ours[i].item() == pytest.approx(_numeric(xs[i], xe[i], dens), abs=1e-6)
        assert ours_tof[i].item() == pytest.approx(_numeric(xs[i], xe[i], dens, TOF, tb[i].item()), abs=1e-6)


def test_tof_bins_sum_to_non_tof_and_untruncated_limit():
    xs, xe, _ = _lors(20, 2)
    wide = TOFParameters(num_bins=41, bin_width_mm=10.0, sigma_mm=15.9, n_sigmas=3.0)
    blobs = dict(centres=torch.tensor([[3.0, 1.0, 0.0], [-20.0, 5.0, 1.0]]), sigmas=torch.tensor([2.0, 4.0]),
                 activities=torch.tensor([100.0, 50.0]))
    spheres = dict(centres=blobs["centres"], radii=torch.tensor([5.0, 9.0]), densities=torch.tensor([1.0, 2.0]))
    for fn, kw in ((blob_line_integrals, blobs), (sphere_line_integrals, spheres)):
        total = sum(fn(xs, xe, tof=wide, tof_bin=torch.full((20,), k), **kw) for k in wide.bin_indices.tolist())
        torch.testing.assert_close(total, fn(xs, xe, **kw), rtol=1e-9, atol=1e-12)
    # with n_sigmas = 8 the truncation is negligible: quadrature == closed form (untruncated)
    t8 = TOFParameters(num_bins=11, bin_width_mm=10.0, sigma_mm=15.9, n_sigmas=8.0)
    tb = torch.arange(-5.0, 6.0).repeat(2)[:20]
    q = blob_line_integrals(xs, xe, tof=t8, tof_bin=tb, **blobs)
    closed = blob_line_integrals(xs, xe, tof=t8, tof_bin=tb, truncate=False, **blobs)
    torch.testing.assert_close(q, closed, rtol=1e-6, atol=1e-9)


def test_analytic_gradcheck():
    xs, xe, tb = _lors(4, 3, radius=30.0)
    xs.requires_grad_(True)
    c = torch.tensor([[1.0, 2.0, 0.5]], dtype=F64, requires_grad=True)
    s = torch.tensor([3.0], dtype=F64, requires_grad=True)
    r = torch.tensor([6.0], dtype=F64, requires_grad=True)
    one = torch.tensor([1.0], dtype=F64)
    f = lambda a, cc, ss: blob_line_integrals(a, xe, centres=cc, sigmas=ss, activities=one, tof=TOF, tof_bin=tb)  # noqa: E731
    assert torch.autograd.gradcheck(f, (xs, c, s))
    g = lambda a, cc, rr: sphere_line_integrals(a, xe, centres=cc, radii=rr, densities=one, tof=TOF, tof_bin=tb)  # noqa: E731
    assert torch.autograd.gradcheck(g, (xs, c, r))


# Stated discretisation errors of the Joseph projector (measured at h = 2, 1, 0.5 mm, see the
# projectors study): blob of standard deviation sigma, exact voxel averages:
#   max |Joseph - analytic| <= 0.35 (h / sigma)^2 x max(analytic)   (second order: box + bilinear)
# uniform sphere of radius R (supersampled voxelisation):
#   rms error <= 0.4 h mm; max error (tangent LORs) <= 0.8 sqrt(2 R h) mm.
@pytest.mark.parametrize("h", [2.0, 1.0])
@pytest.mark.parametrize("use_tof", [False, True])
def test_joseph_vs_analytic_blob(h, use_tof):
    xs, xe, tb = _lors(400, 4)
    n = int(round(60 / h))
    shape = (n, n, int(round(20 / h)))
    origin = tuple(-(s - 1) / 2 * h for s in shape)
    c, sig, a = torch.tensor([[3.3, -2.1, 0.4]]), torch.tensor([3.0]), torch.tensor([1000.0])
    img = voxelise_blobs(c, sig, a, shape=shape, voxel_size=h, origin=origin)
    # TOF: per-LOR centre offsets too (both projectors must shift the bins the same way)
    offset = torch.as_tensor(np.random.default_rng(6).uniform(-5, 5, xs.shape[0]))
    kw = dict(tof=TOF, tof_bin=tb, tof_offset=offset) if use_tof else {}
    ours = joseph_forward(img, xs, xe, voxel_size=h, origin=origin, **kw)
    ref = blob_line_integrals(xs, xe, centres=c, sigmas=sig, activities=a, **kw)
    err = (ours - ref).abs().max() / ref.max()
    assert err <= 0.35 * (h / 3.0) ** 2
    assert err >= 0.01 * (h / 3.0) ** 2  # the comparison is not vacuous: a discretisation error is seen


@pytest.mark.parametrize("h", [2.0, 1.0])
def test_joseph_vs_analytic_sphere(h):
    xs, xe, tb = _lors(400, 5)
    n = int(round(60 / h))
    shape = (n, n, int(round(20 / h)))
    origin = tuple(-(s - 1) / 2 * h for s in shape)
    c, r = torch.tensor([[3.3, -2.1, 0.4]]), torch.tensor([8.0])
    img = voxelise_spheres(c, r, torch.tensor([1.0]), shape=shape, voxel_size=h, origin=origin)
    ours = joseph_forward(img, xs, xe, voxel_size=h, origin=origin)
    ref = sphere_line_integrals(xs, xe, centres=c, radii=r, densities=torch.tensor([1.0]))
    err = ours - ref
    assert err.pow(2).mean().sqrt() <= 0.4 * h
    assert err.abs().max() <= 0.8 * math.sqrt(2 * 8.0 * h)


def test_voxelise_blobs_conserves_activity():
    img = voxelise_blobs(torch.tensor([[0.3, -0.2, 0.1]]), torch.tensor([2.0]), torch.tensor([10.0]),
                         shape=(30, 30, 30), voxel_size=1.0, origin=-14.5)
    assert img.sum().item() == pytest.approx(10.0, rel=1e-9)


def test_bad_phantom_arguments():
    xs, xe, _ = _lors(2, 0)
    with pytest.raises(ValueError, match="sigmas"):
        blob_line_integrals(xs, xe, centres=torch.zeros((1, 3), dtype=F64), sigmas=torch.tensor([-1.0]),
                            activities=torch.tensor([1.0]))
    with pytest.raises(ValueError, match="radii"):
        sphere_line_integrals(xs, xe, centres=torch.zeros((1, 3), dtype=F64), radii=torch.tensor([1.0, 2.0]),
                              densities=torch.tensor([1.0]))


@pytest.mark.parametrize("mode", ["non-TOF", "TOF closed form", "TOF truncated"])
def test_paired_blob_integrals_equal_one_call_per_blob(mode):
    from refsuite.projectors import TOFParameters, blob_line_integrals

    g = torch.Generator().manual_seed(5)
    n = 40
    xs = torch.randn(n, 3, generator=g, dtype=torch.float64) * 5 + torch.tensor([-60.0, 0, 0], dtype=torch.float64)
    xe = torch.randn(n, 3, generator=g, dtype=torch.float64) * 5 + torch.tensor([60.0, 0, 0], dtype=torch.float64)
    centres = torch.randn(n, 3, generator=g, dtype=torch.float64) * 2
    sigmas = 0.3 + torch.rand(n, generator=g, dtype=torch.float64)
    act = 1 + torch.rand(n, generator=g, dtype=torch.float64)
    kw = {}
    if mode != "non-TOF":
        kw = dict(tof=TOFParameters(num_bins=15, bin_width_mm=8.0, sigma_mm=16.0),
                  tof_bin=torch.randint(-5, 6, (n,), generator=g), truncate=mode == "TOF truncated")
    paired = blob_line_integrals(xs, xe, centres=centres, sigmas=sigmas, activities=act, paired=True, **kw)
    one_by_one = torch.stack([blob_line_integrals(
        xs[i:i + 1], xe[i:i + 1], centres=centres[i:i + 1], sigmas=sigmas[i:i + 1], activities=act[i:i + 1],
        **({**kw, "tof_bin": kw["tof_bin"][i:i + 1]} if kw else {}))[0] for i in range(n)])
    torch.testing.assert_close(paired, one_by_one, rtol=1e-12, atol=1e-15)
    assert paired.abs().max() > 0
    with pytest.raises(ValueError, match="one object per LOR"):
        blob_line_integrals(xs, xe, centres=centres[:3], sigmas=sigmas[:3], activities=act[:3], paired=True)
