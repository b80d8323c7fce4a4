"""Analytic phantoms: sampling, voxelisation, closed-form line integrals, attenuation, files."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refsuite.phantoms import (
    CylindricalShell, HotRod, LineSource, PointSources, Tube, UniformCylinder, load_phantom,
)

_SOURCES = PointSources(np.array([[0.0, 0, 0], [3.0, -2.0, 1.0], [-4.0, 1.0, -2.0]]), radius_mm=0.6,
                        activities_bq=[1e5, 2e5, 5e4], cube_mm=2.0)
PHANTOMS = {
    "points": _SOURCES,
    "tube": Tube(_SOURCES.centres_mm, diameter_mm=0.25),
    "line": LineSource(position_mm=(1.0, -2.0), radius_mm=0.5, length_mm=40.0),
    "shell": CylindricalShell(inner_radius_mm=8.0, outer_radius_mm=10.0, length_mm=20.0),
    "hotrod": HotRod(sector_radius_mm=8.0, body_radius_mm=10.0, length_mm=10.0),
    "cylinder": UniformCylinder(radius_mm=6.0, length_mm=12.0, centre_mm=(1.0, 0.5, -1.0)),
}
ANALYTIC = [k for k, p in PHANTOMS.items() if p.has_line_integral]


@pytest.mark.parametrize("name", list(PHANTOMS))
def test_sample_inside_and_seeded(name):
    p = PHANTOMS[name]
    x = p.sample(20000, np.random.default_rng(5))
    assert x.shape == (20000, 3)
    assert np.all(p.contains(x) > 0)
    np.testing.assert_array_equal(x, p.sample(20000, np.random.default_rng(5)))


@pytest.mark.parametrize("name", list(PHANTOMS))
def test_save_load_round_trip(tmp_path, name):
    p = PHANTOMS[name]
    back = load_phantom(p.save(tmp_path / f"{name}.json"))
    assert back.equals(p)
    x = back.sample(100, np.random.default_rng(1))
    np.testing.assert_array_equal(x, p.sample(100, np.random.default_rng(1)))


def test_load_bad_file(tmp_path):
    f = tmp_path / "p.json"
    f.write_text('{"format": "refsuite.phantom", "kind": "Teapot"}')
    with pytest.raises(ValueError, match="p.json"):
        load_phantom(f)


@pytest.mark.parametrize("name, voxel, half", [("cylinder", 0.5, 13), ("shell", 0.5, 13), ("hotrod", 0.4, 9),
                                                ("points", 0.25, 6)])
def test_voxelise_conserves_activity(name, voxel, half):
    p = PHANTOMS[name]
    n = int(np.ceil(2 * half / voxel))
    img = p.voxelise((n, n, n), voxel, origin=(voxel / 2 - half,) * 3)
    assert img.sum() == pytest.approx(p.total_activity, rel=0.03)


def _numeric_integral(p, s, e, sigma=None, centre=0.0, n=200_001):
    t = np.linspace(0.0, 1.0, n)
    length = np.linalg.norm(e - s)
    f = p.contains(s + t[:, None] * (e - s))
    if sigma is not None:
        l = (t - 0.5) * length - centre
        f = f * np.exp(-0.5 * (l / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma)
    return np.trapezoid(f, t) * length


@settings(max_examples=12, deadline=None)
@given(st.sampled_from(ANALYTIC), st.integers(0, 2**32 - 1), st.booleans())
def test_line_integral_matches_quadrature(name, seed, tof):
    p = PHANTOMS[name]
    rng = np.random.default_rng(seed)
    # segment through a random emission point, random direction, ends outside the phantom
    x0 = p.sample(1, rng)[0]
    u = rng.normal(size=3)
    u /= np.linalg.norm(u)
    s, e = x0 - 40 * u, x0 + 35 * u
    sigma, centre = (3.0, rng.uniform(-10, 10)) if tof else (None, 0.0)
    got = p.line_integral(s[None], e[None], tof_sigma_mm=sigma, tof_centre_mm=centre)[0]
    ref = _numeric_integral(p, s, e, sigma, centre)
    assert got > 0
    assert got == pytest.approx(ref, rel=2e-3, abs=1e-6 * p.total_activity)


def test_tof_kernel_integrates_to_non_tof():
    p = PHANTOMS["hotrod"]
    s, e = np.array([[-30.0, 1.0, 0.5]]), np.array([[30.0, 2.0, -0.5]])
    centres = np.linspace(-60, 60, 2401)
    tof = p.line_integral(np.repeat(s, len(centres), 0), np.repeat(e, len(centres), 0), tof_sigma_mm=4.0,
                          tof_centre_mm=centres)
    assert np.trapezoid(tof, centres) == pytest.approx(p.line_integral(s, e)[0], rel=1e-6)


def test_tube_has_no_closed_form():
    with pytest.raises(NotImplementedError, match="voxelise"):
        PHANTOMS["tube"].line_integral(np.zeros((1, 3)), np.ones((1, 3)))


@pytest.mark.parametrize("name", ["points", "shell", "cylinder", "hotrod"])
def test_attenuation_length_matches_marching(name):
    p = PHANTOMS[name]
    rng = np.random.default_rng(3)
    o = p.sample(50, rng)
    d = rng.normal(size=(50, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    got = p.attenuation_length(o, d)
    step = 0.002
    t = np.arange(0, 40, step) + step / 2
    pts = o[:, None, :] + t[None, :, None] * d[:, None, :]
    if name == "points":
        h = p.cube_mm / 2
        inside = (np.abs(pts[:, :, None, :] - p.centres_mm[None, None]) <= h).all(-1).any(-1)
    elif name == "hotrod":
        inside = (np.hypot(pts[..., 0], pts[..., 1]) <= p.body_radius_mm) & (np.abs(pts[..., 2]) <= p.length_mm / 2)
    else:
        inside = p.contains(pts.reshape(-1, 3)).reshape(pts.shape[:2]) > 0
    np.testing.assert_allclose(got, inside.sum(1) * step, atol=3 * step)


def test_hot_rod_layout():
    c, r = HotRod().rods()
    assert sorted(set(np.round(2 * r, 6))) == sorted({2.0, 1.5, 1.2, 1.0, 0.9, 0.8})
    # rods do not overlap: centre distance >= sum of radii + smallest spacing
    dist = np.linalg.norm(c[:, None] - c[None], axis=-1) + np.eye(len(r)) * 1e9
    assert np.all(dist >= r[:, None] + r[None] + 0.8 - 1e-9)


def test_validation_messages():
    with pytest.raises(ValueError, match="inner_radius_mm"):
        CylindricalShell(inner_radius_mm=5.0, outer_radius_mm=4.0)
    with pytest.raises(ValueError, match="radius_mm"):
        UniformCylinder(radius_mm=-1.0)
    with pytest.raises(TypeError, match="rng"):
        PHANTOMS["cylinder"].sample(3, rng=1)


@pytest.mark.parametrize("n_sources", [3, 20])
def test_point_sources_sample_by_activity_uniformly_in_each_sphere(n_sources):
    """Sources chosen in proportion to their activity (both code paths: a few sources, and
    over 16), points uniform in each ball: |p - c|^3 / R^3 uniform, isotropic offsets; any
    n (the rejection loop refills)."""
    from scipy import stats

    rng = np.random.default_rng(2)
    centres = rng.uniform(-50, 50, (n_sources, 3))
    act = rng.uniform(0.2, 2.0, n_sources) * 1e5
    src = PointSources(centres, radius_mm=0.125, activities_bq=act)
    assert src.sample(0, rng).shape == (0, 3) and src.sample(1, rng).shape == (1, 3)
    n = 200_000
    x = src.sample(n, rng)
    k = np.argmin(((x[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    off = x - centres[k]
    r = np.linalg.norm(off, axis=1)
    assert r.max() <= 0.125 * (1 + 1e-12)
    counts = np.bincount(k, minlength=n_sources)
    p = act / act.sum()
    assert stats.chisquare(counts, n * p).pvalue > 1e-3
    assert stats.kstest((r / 0.125) ** 3, stats.uniform().cdf).pvalue > 1e-3
    u = off / r[:, None]
    assert stats.kstest(u[:, 2], stats.uniform(-1, 2).cdf).pvalue > 1e-3
    assert stats.kstest(np.arctan2(u[:, 1], u[:, 0]), stats.uniform(-np.pi, 2 * np.pi).cdf).pvalue > 1e-3
