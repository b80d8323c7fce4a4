"""Radial sensitivity profile: references for a block scanner and the Poisson profile comparison."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refsuite.geometry import preset
from refsuite.sensitivity import geometric_sensitivity, line_source_sensitivity
from refsuite.sensitivity.profile import (
    CylinderChoice,
    EquivalentCylinder,
    ReferenceModel,
    block_profile_reference,
    compare_radial_profile,
    equivalent_cylinder,
    radial_profile_reference,
)

OFFSETS = np.arange(0.0, 61.0, 5.0)
# a profile with the dip and rise of thull_sim's centre sweep (counts per 2e6 decays, 150 mm source)
SHAPE = np.array([193859, 172413, 150210, 143804, 139297, 142650, 159732, 162883, 177286, 189735, 194125, 194519,
                  236992], float)


@pytest.fixture(scope="module")
def thull():
    return preset("thull_sim", binning="planar_4mm")


# ------------------------------------------------------------------ comparison on synthetic data
def test_poisson_profile_from_the_reference_passes_and_recovers_efficiency():
    rng = np.random.default_rng(11)
    eps_true = 0.37
    ref = SHAPE * 10.0
    counts = rng.poisson(eps_true * ref)
    res = compare_radial_profile(OFFSETS, counts, ref, max_shape_deviation=0.02, z_max=4.0)
    assert res.passed and res.offending_offsets_mm.size == 0
    assert abs(res.efficiency - eps_true) < 4 * res.efficiency_error
    assert np.all(np.abs(res.z_scores) < 4.0)
    assert res.dof == OFFSETS.size - 1 and res.p_value > 1e-3
    # the stated deviation error is the spread of the deviation over repeated experiments
    devs = np.array([compare_radial_profile(OFFSETS, rng.poisson(eps_true * ref), ref,
                                            max_shape_deviation=0.02).deviation for _ in range(400)])
    np.testing.assert_allclose(devs.std(0), res.deviation_error, rtol=0.15)
    np.testing.assert_allclose(res.min_detectable_deviation, 4.0 * res.deviation_error)


def test_chi_square_is_distributed_with_n_minus_one_dof():
    rng = np.random.default_rng(5)
    ref = SHAPE / SHAPE.sum()
    chi2 = [compare_radial_profile(OFFSETS, rng.poisson(2e4 * ref), ref, max_shape_deviation=0.1).chi2
            for _ in range(600)]
    # mean of chi2(12) is 12 with standard error sqrt(24 / 600) = 0.2
    assert abs(np.mean(chi2) - (OFFSETS.size - 1)) < 1.0


@settings(max_examples=60, deadline=None)
@given(scale=st.floats(0.01, 1e4), seed=st.integers(0, 2**16))
def test_scaling_counts_scales_efficiency_and_leaves_shape_deviation(scale, seed):
    rng = np.random.default_rng(seed)
    counts = rng.poisson(SHAPE * 0.01).astype(float) + 1.0
    a = compare_radial_profile(OFFSETS, counts, SHAPE, max_shape_deviation=0.05)
    b = compare_radial_profile(OFFSETS, scale * counts, SHAPE, max_shape_deviation=0.05)
    np.testing.assert_allclose(b.deviation, a.deviation, rtol=1e-9, atol=1e-12)
    assert b.efficiency == pytest.approx(scale * a.efficiency, rel=1e-12)
    np.testing.assert_allclose(b.z_scores, math.sqrt(scale) * a.z_scores, rtol=1e-9, atol=1e-9)
    # the reference's own scale is irrelevant too
    c = compare_radial_profile(OFFSETS, counts, SHAPE * scale, max_shape_deviation=0.05)
    np.testing.assert_allclose(c.deviation, a.deviation, rtol=1e-9, atol=1e-12)


def test_one_point_ten_percent_low_at_high_statistics_is_flagged_alone():
    rng = np.random.default_rng(3)
    counts = rng.poisson(SHAPE).astype(float)
    counts[6] *= 0.9
    res = compare_radial_profile(OFFSETS, counts, SHAPE, max_shape_deviation=0.02, z_max=4.0)
    assert not res.passed
    np.testing.assert_array_equal(res.offending_offsets_mm, [30.0])
    assert res.deviation[6] < -0.08 and res.p_value < 1e-10


def test_significant_but_tiny_mismatch_is_not_flagged_and_large_but_insignificant_neither():
    rng = np.random.default_rng(4)
    # 1e8 counts per point: a 1 % model mismatch is a 100-sigma effect, but within tolerance
    huge = rng.poisson(SHAPE * 500.0).astype(float)
    huge[3] *= 0.99
    res = compare_radial_profile(OFFSETS, huge, SHAPE, max_shape_deviation=0.02)
    assert abs(res.z_scores[3]) > 50 and res.passed
    # 100 counts per point: a 10 % dip is not significant and cannot be claimed
    few = rng.poisson(SHAPE / SHAPE.mean() * 100.0).astype(float)
    few[3] *= 0.9
    res = compare_radial_profile(OFFSETS, few, SHAPE, max_shape_deviation=0.02)
    assert res.passed and np.all(res.min_detectable_deviation > 0.02)


@pytest.mark.parametrize("kwargs, match", [
    (dict(counts=np.ones(3)), "counts must have the shape"),
    (dict(reference=np.ones(12)), "reference must have the shape"),
    (dict(counts=-np.ones(13)), r"counts must lie in \[0"),
    (dict(counts=np.full(13, np.nan)), "counts must be finite"),
    (dict(counts=np.zeros(13)), "counts must have a positive sum"),
    (dict(reference=np.zeros(13)), "reference must be > 0"),
    (dict(max_shape_deviation=0.0), r"max_shape_deviation must lie in \(0, 1\]"),
    (dict(max_shape_deviation=1.5), r"max_shape_deviation must lie in \(0, 1\]"),
    (dict(z_max=-1.0), "z_max must be > 0"),
    (dict(offsets_mm=[0.0]), "offsets_mm must be a 1-D array of >= 2"),
    (dict(offsets_mm=-OFFSETS), r"offsets_mm must lie in \[0"),
])
def test_compare_rejects_bad_arguments_naming_them(kwargs, match):
    args = dict(offsets_mm=OFFSETS, counts=SHAPE, reference=SHAPE, max_shape_deviation=0.02, z_max=4.0)
    args.update(kwargs)
    if "offsets_mm" in kwargs and np.size(kwargs["offsets_mm"]) == 1:
        args.update(counts=[1.0], reference=[1.0])
    with pytest.raises(ValueError, match=match):
        compare_radial_profile(args.pop("offsets_mm"), args.pop("counts"), args.pop("reference"), **args)


# ------------------------------------------------------------------ equivalent cylinder and its models
def test_equivalent_cylinder_of_thull_sim_and_lin_clinical(thull):
    inner = equivalent_cylinder(thull)
    assert inner.radius_mm == pytest.approx(75.0) and inner.half_length_mm == pytest.approx(74.0)
    assert inner.depth_mm == 10.0 and inner.mu_per_mm == pytest.approx(0.087)
    assert equivalent_cylinder(thull, choice=CylinderChoice.MID_DEPTH).radius_mm == pytest.approx(80.0)
    area = equivalent_cylinder(thull, choice=CylinderChoice.AREA).radius_mm
    octagon = 8 * 75.0**2 * math.tan(math.pi / 8)
    assert math.pi * area**2 == pytest.approx(octagon)
    lin = equivalent_cylinder(preset("lin_clinical"))
    assert lin.radius_mm == pytest.approx(403.8) and lin.half_length_mm == pytest.approx(153.0)
    with pytest.raises(TypeError, match="choice must be a CylinderChoice"):
        equivalent_cylinder(thull, choice="area")
    with pytest.raises(TypeError, match="scanner must be"):
        equivalent_cylinder(inner)


def test_cylinder_models_are_lin_et_al(thull):
    cyl = equivalent_cylinder(thull)
    r = np.array([0.0, 20.0, 50.0])
    geo = radial_profile_reference(r, cyl, source_length_mm=150.0, model=ReferenceModel.GEOMETRIC)
    np.testing.assert_allclose(geo, geometric_sensitivity(r, 0.0, radius=75.0, half_length=74.0), rtol=1e-12)
    line = radial_profile_reference(r, cyl, source_length_mm=150.0)
    np.testing.assert_allclose(line, line_source_sensitivity(r, radius=75.0, half_length=74.0, source_length=150.0),
                               rtol=1e-12)
    det = radial_profile_reference(r, cyl, source_length_mm=150.0, model=ReferenceModel.DETECTION)
    assert np.all(det < line)
    # an opaque wall detects every photon that reaches it: the detection model becomes S_g
    opaque = replace(cyl, mu_per_mm=20.0)
    det_opaque = radial_profile_reference(r, opaque, source_length_mm=150.0, model=ReferenceModel.DETECTION,
                                          n_axial=48)
    np.testing.assert_allclose(det_opaque, line, rtol=2e-3)
    with pytest.raises(ValueError, match=r"offsets_mm must lie in \[0, 75\)"):
        radial_profile_reference([80.0], cyl, source_length_mm=150.0)
    with pytest.raises(TypeError, match="model must be a ReferenceModel"):
        radial_profile_reference(r, cyl, source_length_mm=150.0, model="geometric")
    with pytest.raises(TypeError, match="cylinder must be an EquivalentCylinder"):
        radial_profile_reference(r, thull, source_length_mm=150.0)
    with pytest.raises(ValueError, match="source_length_mm must be > 0"):
        radial_profile_reference(r, cyl, source_length_mm=0.0)
    assert isinstance(cyl, EquivalentCylinder)


def test_cylinder_reference_cannot_follow_the_octagon(thull):
    """The gaps shape thull_sim's profile by +-17 %: an equivalent cylinder is flagged."""
    ref = radial_profile_reference(OFFSETS, equivalent_cylinder(thull), source_length_mm=150.0)
    res = compare_radial_profile(OFFSETS, SHAPE, ref, max_shape_deviation=0.05)
    assert not res.passed and np.abs(res.deviation).max() > 0.15


# ------------------------------------------------------------------ block reference against the built-in MC
def _sweep(scanner, offsets, n_decays, seed, **window):
    from refsuite.mc import simulate
    from refsuite.phantoms import LineSource

    return np.array([simulate(scanner, LineSource(position_mm=(x, 0.0), length_mm=150.0), n_decays=n_decays,
                              seed=seed + k, **window).n_events for k, x in enumerate(offsets)], float)


def test_block_reference_is_the_absolute_pair_probability_of_the_mc(thull):
    r = np.array([0.0, 20.0, 55.0])
    ref = block_profile_reference(r, thull, source_length_mm=150.0, n_polar=96, n_axial=24)
    n = 300_000
    counts = _sweep(thull, r, n, 900, energy_window_kev=(0.0, 1e4), coincidence_window_ps=1e9)
    z = (counts / n - ref) / np.sqrt(ref * (1 - ref) / n)
    assert np.all(np.abs(z) < 4.0), z
    # a source entirely outside the blocks' axial extent is never seen
    assert block_profile_reference([0.0], thull, source_length_mm=10.0, centre_z_mm=200.0)[0] == 0.0
    with pytest.raises(ValueError, match="n_polar must be an integer >= 1"):
        block_profile_reference(r, thull, source_length_mm=150.0, n_polar=0)
    with pytest.raises(ValueError, match="offsets_mm must be a 1-D array"):
        block_profile_reference([-1.0], thull, source_length_mm=150.0)


def test_mc_sweep_of_scanner_with_a_block_removed_is_flagged_and_intact_one_passes(thull):
    r = np.array([0.0, 15.0, 30.0, 45.0, 60.0])
    ref = block_profile_reference(r, thull, source_length_mm=150.0)
    keep = np.arange(thull.n_blocks) != 8  # middle ring, the block the sweep walks towards
    broken = replace(thull, positions=thull.positions[keep], axes=thull.axes[keep], groups=thull.groups[keep])
    good = compare_radial_profile(r, _sweep(thull, r, 300_000, 50), ref, max_shape_deviation=0.02)
    bad = compare_radial_profile(r, _sweep(broken, r, 300_000, 50), ref, max_shape_deviation=0.02)
    assert good.passed, (good.deviation, good.z_scores)
    assert not bad.passed and {0.0, 60.0} <= set(bad.offending_offsets_mm.tolist())


def test_conclusive_only_with_counts_enough_to_resolve_the_tolerance():
    rng = np.random.default_rng(9)
    many = compare_radial_profile(OFFSETS, rng.poisson(SHAPE), SHAPE, max_shape_deviation=0.02)
    few = compare_radial_profile(OFFSETS, rng.poisson(SHAPE / 100.0), SHAPE, max_shape_deviation=0.02)
    assert many.conclusive and not few.conclusive


def test_area_radius_counts_azimuths_of_a_misaligned_scanner(thull):
    from refsuite.geometry import perturb

    moved = perturb(thull, sigma_t_mm=0.4, sigma_r_deg=0.3, rng=np.random.default_rng(2))
    area = equivalent_cylinder(moved, choice=CylinderChoice.AREA).radius_mm
    assert area == pytest.approx(equivalent_cylinder(thull, choice=CylinderChoice.AREA).radius_mm, abs=0.5)
