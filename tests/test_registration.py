"""Unit and property tests of refsuite.registration: weighted regularisers, CT map, warping, solver."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.losses import BendingEnergyLoss, DiffusionLoss

from refsuite.registration import (
    ct_regularization_map,
    integrate_velocity,
    map_points,
    register,
    resize_ddf,
    warp,
    weighted_bending_energy,
    weighted_diffusion,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _ddf(seed, shape=(2, 3, 7, 6, 5)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64)


# ---- weighted regularisers against MONAI ---------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(c=st.floats(0.0, 1e3), seed=st.integers(0, 10_000))
def test_constant_weight_diffusion_equals_monai_times_weight(c, seed):
    ddf = _ddf(seed)
    ours = weighted_diffusion(ddf, c)
    ref = c * DiffusionLoss()(ddf)
    assert torch.allclose(ours, ref.to(ours.dtype), rtol=1e-10, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(c=st.floats(0.0, 1e3), seed=st.integers(0, 10_000), s=st.floats(0.5, 8.0))
def test_constant_weight_bending_equals_monai_times_weight(c, seed, s):
    ddf = _ddf(seed)
    ours = weighted_bending_energy(ddf, c, spacing=(s, s, s))
    ref = c * BendingEnergyLoss()(ddf) / s**2  # isotropic spacing: MONAI's voxel units / s^2
    assert torch.allclose(ours, ref.to(ours.dtype), rtol=1e-9, atol=1e-12)
    # diffusion is dimensionless: isotropic spacing changes nothing
    assert torch.allclose(weighted_diffusion(ddf, c, spacing=(s, s, s)), c * DiffusionLoss()(ddf).double(), rtol=1e-9)


def test_weight_map_broadcasts_and_matches_scalar():
    ddf = _ddf(1)
    full = torch.full((2, 1, 7, 6, 5), 3.0, dtype=torch.float64)
    along_z = torch.full((1, 1, 7, 1, 1), 3.0, dtype=torch.float64)
    bare = np.full((7, 6, 5), 3.0)
    ref = weighted_diffusion(ddf, 3.0)
    for w in (full, along_z, torch.as_tensor(bare)):
        assert torch.allclose(weighted_diffusion(ddf, w), ref)
        assert torch.allclose(weighted_bending_energy(ddf, w), weighted_bending_energy(ddf, 3.0))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_weighted_energy_is_linear_in_the_weight(seed):
    ddf = _ddf(seed)
    rng = np.random.default_rng(seed)
    w1 = torch.as_tensor(rng.uniform(0, 5, (1, 1, 7, 6, 5)))
    w2 = torch.as_tensor(rng.uniform(0, 5, (1, 1, 7, 6, 5)))
    for fn in (weighted_diffusion, weighted_bending_energy):
        assert torch.allclose(fn(ddf, w1 + w2, spacing=(1, 2, 3)),
                              fn(ddf, w1, spacing=(1, 2, 3)) + fn(ddf, w2, spacing=(1, 2, 3)), rtol=1e-10)


def test_weight_outside_the_deformation_gives_zero_energy():
    # deformation only in the first half along z; weight only in the second half (beyond the stencil)
    ddf = torch.zeros(1, 3, 12, 6, 6, dtype=torch.float64)
    ddf[:, :, :4] = _ddf(3, (1, 3, 4, 6, 6))
    w = torch.zeros(1, 1, 12, 6, 6, dtype=torch.float64)
    w[:, :, 7:] = 1.0
    assert float(weighted_diffusion(ddf, w)) == 0.0
    assert float(weighted_bending_energy(ddf, w)) == 0.0
    assert float(weighted_diffusion(ddf, 1.0 - w)) > 0.0


def test_anisotropic_spacing_linear_field_is_analytic():
    # u(x) = A x in mm with spacing s: diffusion density = sum_ij A_ij^2 (exact for linear fields), bending = 0
    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.1, (3, 3))
    sp = np.array([2.0, 3.0, 4.0])
    idx = np.indices((8, 7, 6)).astype(float)
    u_mm = np.einsum("ij,j...->i...", a, idx * sp[:, None, None, None])
    ddf = torch.as_tensor(u_mm / sp[:, None, None, None])[None]
    assert float(weighted_diffusion(ddf, 1.0, spacing=sp)) == pytest.approx(np.sum(a**2) / 3, rel=1e-10)
    assert abs(float(weighted_bending_energy(ddf, 1.0, spacing=sp))) < 1e-20


@pytest.mark.parametrize(
    "weight, match",
    [(-1.0, "finite and >= 0"), (float("nan"), "finite and >= 0"), (torch.ones(2, 2), "scalar"),
     (torch.ones(1, 1, 3, 3, 3), "does not broadcast"), (-torch.ones(1, 1, 7, 6, 5), "finite and >= 0")],
)
def test_bad_weights_are_rejected(weight, match):
    with pytest.raises(ValueError, match=match):
        weighted_diffusion(_ddf(0), weight)


def test_bad_ddf_and_spacing_are_rejected():
    with pytest.raises(ValueError, match=r"\(B, 3, D, H, W\)"):
        weighted_diffusion(torch.zeros(1, 2, 5, 5, 5), 1.0)
    with pytest.raises(ValueError, match="spacing"):
        weighted_diffusion(_ddf(0), 1.0, spacing=(1.0, 0.0, 1.0))
    with pytest.raises(TypeError, match="torch.Tensor"):
        weighted_diffusion(np.zeros((1, 3, 5, 5, 5)), 1.0)


# ---- CT map ---------------------------------------------------------------------------------

def test_ct_map_piecewise_linear_with_clipping():
    hu = np.array([-3024.0, -1000, -850, 40, 150, 275, 400, 1000, 2500, 6000]).reshape(1, 1, -1)
    hu = np.broadcast_to(hu, (3, 3, hu.shape[-1])).copy()
    w = ct_regularization_map(hu, spacing=(1, 1, 1), soft_weight=2.0, bone_weight=12.0, smoothing_mm=0.0)
    np.testing.assert_allclose(w[1, 1], [2, 2, 2, 2, 2, 7, 12, 12, 12, 12], rtol=1e-6)


def test_ct_map_smoothing_in_mm_respects_spacing():
    hu = np.full((9, 9, 9), 40.0)
    hu[:, :, 4] = 1000.0  # a bone plate across x = 4
    hu[0, 0, 0] = -1000.0
    w1 = ct_regularization_map(hu, spacing=(1, 1, 1), smoothing_mm=2.0)
    w2 = ct_regularization_map(hu, spacing=(1, 1, 2), smoothing_mm=2.0)  # coarser along x: less blur in voxels
    assert w1[4, 4, 4] < w2[4, 4, 4] < 20.0
    assert w1.min() >= 1.0 - 1e-5 and w1.max() <= 20.0 + 1e-4
    np.testing.assert_allclose(w1[4, 4, :4], w1[4, 4, 5:][::-1], rtol=1e-5)  # symmetric about the plate


@pytest.mark.parametrize("ct", [np.random.default_rng(0).uniform(0, 1, (8, 8, 8)),
                                np.random.default_rng(0).uniform(0, 0.02, (8, 8, 8))])
def test_ct_not_in_hu_is_rejected(ct):
    with pytest.raises(ValueError, match="Hounsfield"):
        ct_regularization_map(ct, spacing=(1, 1, 1))


def test_ct_map_argument_errors():
    hu = np.linspace(-1000, 1000, 512).reshape(8, 8, 8)
    with pytest.raises(ValueError, match="hu_soft must be < hu_bone"):
        ct_regularization_map(hu, spacing=(1, 1, 1), hu_soft=500, hu_bone=100)
    with pytest.raises(ValueError, match="spacing"):
        ct_regularization_map(hu, spacing=(1, 1))
    with pytest.raises(ValueError, match="bone_weight must be >= 0"):
        ct_regularization_map(hu, spacing=(1, 1, 1), bone_weight=-1)


# ---- warping and fields ----------------------------------------------------------------------

def test_warp_integer_shift_and_axis_order():
    img = torch.zeros(1, 1, 8, 9, 10)
    img[0, 0, 4, 5, 6] = 1.0
    ddf = torch.zeros(1, 3, 8, 9, 10)
    ddf[:, 0], ddf[:, 1], ddf[:, 2] = 1.0, -2.0, 3.0  # x -> x + (1, -2, 3)
    out = warp(img, ddf)
    assert out[0, 0, 3, 7, 3] == pytest.approx(1.0)
    assert float(out.sum()) == pytest.approx(1.0)


def test_resize_ddf_keeps_physical_displacement():
    ddf = torch.ones(1, 3, 9, 9, 9) * 2.0  # 2 voxels on a 9-voxel grid
    small = resize_ddf(ddf, (5, 5, 5))
    assert torch.allclose(small, torch.ones_like(small))  # 1 voxel on the 5-voxel grid (align_corners)


def test_integrate_velocity_of_constant_field_is_the_field():
    v = torch.zeros(1, 3, 10, 10, 10)
    v[:, 1] = 0.8
    d = integrate_velocity(v)
    assert torch.allclose(d[:, :, 3:-3, 3:-3, 3:-3], v[:, :, 3:-3, 3:-3, 3:-3], atol=2e-4)


def test_map_points_is_exact_at_voxel_centres():
    d = np.random.default_rng(1).normal(size=(3, 5, 6, 7))
    pts = np.array([[1, 2, 3], [4, 5, 6]])
    np.testing.assert_allclose(map_points(pts, d), pts + d[:, pts[:, 0], pts[:, 1], pts[:, 2]].T)


# ---- instance optimisation ---------------------------------------------------------------------

def _blobs(shape, centres, sigma=2.0):
    idx = np.indices(shape).astype(float)
    return sum(np.exp(-sum((idx[i] - c[i]) ** 2 for i in range(3)) / (2 * sigma**2)) for c in centres)


def test_register_recovers_a_translation():
    shape = (24, 20, 20)
    centres = [(8, 8, 8), (15, 12, 10), (10, 14, 13), (16, 6, 12)]
    fixed = _blobs(shape, centres) * 10
    shift = np.array([1.5, -1.0, 0.5])
    moving = _blobs(shape, [np.add(c, shift) for c in centres]) * 10  # fixed x <-> moving x + shift
    ddf = register(fixed, moving, weight_map=1.0, spacing=(2, 2, 2), iterations=(30, 20, 20), learning_rate=0.2)
    assert ddf.shape == (1, 3) + shape
    inner = ddf[0][:, 6:-6, 6:-6, 6:-6].reshape(3, -1).mean(dim=1).numpy()
    np.testing.assert_allclose(inner, shift, atol=0.35)


def test_register_rejects_bad_inputs():
    a = np.random.default_rng(0).random((10, 10, 10))
    with pytest.raises(ValueError, match="different grids"):
        register(a, np.zeros((10, 10, 12)), weight_map=1.0, spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="weight_map .* or fixed_ct"):
        register(a, a, spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="Hounsfield"):
        register(a, a, fixed_ct=a, spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="iterations"):
        register(a, a, weight_map=1.0, spacing=(1, 1, 1), levels=2, iterations=(5,))
    with pytest.raises(ValueError, match="NaN"):
        register(a * np.nan, a, weight_map=1.0, spacing=(1, 1, 1))


@pytest.mark.parametrize(
    "options",
    [dict(similarity="mi"), dict(regularizer="bending"), dict(diffeomorphic=True)],
    ids=["mutual-information", "bending-energy", "diffeomorphic"],
)
def test_register_options_move_towards_the_translation(options):
    shape = (16, 16, 16)
    centres = [(6, 6, 6), (10, 9, 8), (7, 10, 10)]
    fixed = _blobs(shape, centres) * 10
    moving = _blobs(shape, [np.add(c, (1.0, 0.0, 0.0)) for c in centres]) * 10
    ddf = register(fixed, moving, weight_map=0.5, spacing=(2, 2, 2), levels=2, iterations=(15, 15),
                   learning_rate=0.2, **options)
    inner = float(ddf[0, 0, 4:-4, 4:-4, 4:-4].mean())
    assert 0.3 < inner < 1.5
    from refsuite.metrics.registration import folding_fraction

    assert folding_fraction(ddf, spacing=(2, 2, 2)) == 0.0
