"""refsuite.sensitivity: accuracy against the oracles, physical properties, input errors."""

from __future__ import annotations

import math
import warnings

import mpmath as mp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import IntegrationWarning, quad

from refsuite.sensitivity import (
    detection_sensitivity,
    geometric_sensitivity,
    geometric_sensitivity_mc,
    geometric_sensitivity_reference,
    line_source_sensitivity,
)

R, L = 403.8, 153.0  # Lin et al.'s scanner: R = 403.8 mm, 2L = 306 mm
ACCURACY = 1e-12  # the bound on |closed form - reference|

unit = st.floats(0.0, 0.999, allow_nan=False)
signed = st.floats(-0.999, 0.999, allow_nan=False)
dims = st.tuples(st.floats(10.0, 1000.0), st.floats(5.0, 2000.0))


def reference(r, z, radius=R, half_length=L):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntegrationWarning)  # QUADPACK's eps=1e-14 round-off notes
        return geometric_sensitivity_reference(r, z, radius=radius, half_length=half_length)


# --- accuracy ---------------------------------------------------------------------------


def _hard_points():
    """Case boundary (r/R = |z|/L, both sides), near the wall, near the caps, corners."""
    eps = [0.0, 1e-12, 1e-9, 1e-6, 1e-3]
    rows = []
    for f in (0.05, 0.3, 0.5, 0.8, 0.999):
        for e in eps:
            rows += [(min(f + e, 0.999), f), (max(f - e, 0.0), f)]  # (r/R, z/L) on both sides of the boundary
    for a in (0.0, 0.5, 0.9, 0.99, 0.998, 0.999):
        rows += [(0.999, a), (a, 0.999), (0.999, -a), (a, -0.999)]
    return np.array(rows)


def test_closed_form_matches_reference_at_hard_points():
    pts = _hard_points()
    r, z = pts[:, 0] * R, pts[:, 1] * L
    err = np.abs(geometric_sensitivity(r, z, radius=R, half_length=L) - reference(r, z))
    assert err.max() <= ACCURACY, f"max error {err.max():.3e} at (r/R, z/L) = {pts[err.argmax()]}"


def test_closed_form_matches_reference_on_random_points(record_figure):
    rng = np.random.default_rng(2024)
    for radius, half in ((R, L), (405.0, 153.0), (100.0, 600.0), (400.0, 10.0)):
        r = rng.uniform(0.0, 0.999 * radius, 300)
        z = rng.uniform(-0.999 * half, 0.999 * half, 300)
        err = np.abs(geometric_sensitivity(r, z, radius=radius, half_length=half) - reference(r, z, radius, half))
        assert err.max() <= ACCURACY, (radius, half, err.max())
        if radius == R:
            record_figure("max |closed form - reference quadrature| (300 random points)", err.max())


@settings(max_examples=150, deadline=None)
@given(unit, signed, dims)
def test_closed_form_matches_reference_property(rf, zf, d):
    radius, half = d
    got = geometric_sensitivity(rf * radius, zf * half, radius=radius, half_length=half)
    assert abs(got - reference(rf * radius, zf * half, radius, half)) <= ACCURACY


@pytest.mark.parametrize("rf, zf", [(0.999, 0.999), (0.999, 0.998), (0.3, 0.7), (0.9, 0.1), (0.0, 0.999)])
def test_reference_quadrature_against_mpmath(rf, zf):
    """The oracle itself, against 30-digit quadrature of the same contour integrals (eq. 12/15)."""
    mp.mp.dps = 30
    r, z, lh = mp.mpf(rf) * R / R, mp.mpf(zf) * L / R, mp.mpf(L) / R
    h = lh - z
    r2 = h / (lh + z)
    m = r * (1 + r2)

    def f1(t):
        u = mp.cos(t) - r
        return h * mp.sin(t) ** 2 / ((u * u + h * h) * mp.sqrt(u * u + mp.sin(t) ** 2 + h * h))

    def f2(t):
        u, s = r2 * mp.cos(t) + m - r, r2 * mp.sin(t)
        return h * s * s / ((u * u + h * h) * mp.sqrt(u * u + s * s + h * h))

    peak = mp.acos(r)
    if m + r2 <= 1:
        omega = 2 * mp.quad(f1, [0, peak, mp.pi])
    else:
        xc = (1 - r2**2 + m**2) / (2 * m)
        p1, p2 = mp.acos(xc), mp.acos((m - xc) / r2)
        omega = 2 * mp.quad(f1, sorted({p1, max(p1, peak), mp.pi})) + 2 * mp.quad(f2, [0, mp.pi - p2])
    exact = float(1 - omega / (2 * mp.pi))
    assert abs(reference(rf * R, zf * L) - exact) <= 1e-13
    assert abs(geometric_sensitivity(rf * R, zf * L, radius=R, half_length=L) - exact) <= ACCURACY


# --- properties ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(unit, signed, dims)
def test_bounded_and_symmetric_in_z(rf, zf, d):
    radius, half = d
    s = geometric_sensitivity(rf * radius, zf * half, radius=radius, half_length=half)
    s_mirror = geometric_sensitivity(rf * radius, -zf * half, radius=radius, half_length=half)
    assert 0.0 <= s <= 1.0
    assert s == s_mirror


@settings(max_examples=100, deadline=None)
@given(dims)
def test_centre_value(d):
    radius, half = d
    s = geometric_sensitivity(0.0, 0.0, radius=radius, half_length=half)
    assert s == pytest.approx(half / math.hypot(half, radius), abs=1e-15)


@settings(max_examples=200, deadline=None)
@given(unit, signed, dims, st.floats(1e-3, 1e3))
def test_scale_invariance(rf, zf, d, k):
    radius, half = d
    s = geometric_sensitivity(rf * radius, zf * half, radius=radius, half_length=half)
    sk = geometric_sensitivity(k * rf * radius, k * zf * half, radius=k * radius, half_length=k * half)
    assert sk == pytest.approx(s, abs=1e-14)


@settings(max_examples=100, deadline=None)
@given(st.floats(0.01, 0.99), dims)
def test_continuous_across_case_boundary(f, d):
    """At r/R = |z|/L cap 2' touches the rim of cap 1 (Lin et al., eq. 16)."""
    radius, half = d
    z = f * half
    r_knee = f * radius
    delta = 1e-7 * radius
    left = geometric_sensitivity(r_knee - delta, z, radius=radius, half_length=half)
    right = geometric_sensitivity(r_knee + delta, z, radius=radius, half_length=half)
    at = geometric_sensitivity(r_knee, z, radius=radius, half_length=half)
    assert abs(left - at) <= 1e-6 and abs(right - at) <= 1e-6


@settings(max_examples=150, deadline=None)
@given(unit, signed, dims, st.floats(1.001, 10.0))
def test_increases_with_length(rf, zf, d, grow):
    radius, half = d
    s = geometric_sensitivity(rf * radius, zf * half, radius=radius, half_length=half)
    s_long = geometric_sensitivity(rf * radius, zf * half, radius=radius, half_length=grow * half)
    assert s_long >= s - 1e-15


@settings(max_examples=50, deadline=None)
@given(unit, dims)
def test_vanishes_at_the_caps(rf, d):
    radius, half = d
    z = half * (1.0 - np.array([1e-2, 1e-4, 1e-6, 1e-8]))
    s = geometric_sensitivity(rf * radius, z, radius=radius, half_length=half)
    assert np.all(np.diff(s) < 0) and s[-1] < 1e-4


def test_radial_profile_shape_of_lin_et_al_fig4():
    """Centre slice: S first decreases, then increases to its maximum near the FOV edge."""
    r = np.linspace(0.0, 0.999 * 405.0, 2000)
    s = geometric_sensitivity(r, 0.0, radius=405.0, half_length=153.0)
    i_min = int(np.argmin(s))
    assert 0 < i_min < len(r) - 1
    assert s[-1] > s[0] and int(np.argmax(s)) == len(r) - 1


def test_broadcasting_and_scalar_out():
    s = geometric_sensitivity(np.array([[0.0], [100.0]]), np.array([0.0, 50.0, 100.0]), radius=R, half_length=L)
    assert s.shape == (2, 3)
    assert isinstance(geometric_sensitivity(10.0, 0.0, radius=R, half_length=L), float)
    assert s[1, 2] == geometric_sensitivity(100.0, 100.0, radius=R, half_length=L)


# --- input errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(r=-1.0), r"r must lie in \[0, radius\)"),
        (dict(r=R), r"r must lie in \[0, radius\)"),
        (dict(z=L), r"z must lie in \(-half_length, half_length\)"),
        (dict(z=-L - 1), r"z must lie in"),
        (dict(radius=0.0), r"radius must be > 0"),
        (dict(half_length=-5.0), r"half_length must be > 0"),
        (dict(r=float("nan")), r"r must be finite"),
        (dict(z=float("inf")), r"z must be finite"),
    ],
)
@pytest.mark.parametrize(
    "func",
    [geometric_sensitivity, geometric_sensitivity_reference, detection_sensitivity, geometric_sensitivity_mc],
)
def test_bad_input_names_the_parameter(func, kwargs, match):
    args = dict(r=10.0, z=0.0, radius=R, half_length=L)
    args.update(kwargs)
    extra = {}
    if func is detection_sensitivity:
        extra = dict(depth=20.0, mu=0.087)
    if func is geometric_sensitivity_mc:
        extra = dict(n_pairs=10, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=match):
        func(args.pop("r"), args.pop("z"), **args, **extra)


def test_bad_counts_and_rng():
    with pytest.raises(ValueError, match="n_pairs must be > 0"):
        geometric_sensitivity_mc(0.0, radius=R, half_length=L, n_pairs=0, rng=np.random.default_rng())
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        geometric_sensitivity_mc(0.0, radius=R, half_length=L, n_pairs=10, rng=1)
    with pytest.raises(ValueError, match="source_length must be > 0"):
        line_source_sensitivity(0.0, radius=R, half_length=L, source_length=0.0)
    with pytest.raises(ValueError, match="mu must be > 0"):
        detection_sensitivity(0.0, radius=R, half_length=L, depth=20.0, mu=-1.0)


# --- Monte Carlo -------------------------------------------------------------------------


@pytest.mark.statistical
def test_monte_carlo_agrees_within_stated_z():
    """|z| <= 4.5 per point: false-alarm probability 7e-6 per point (Gaussian limit, n = 4e5)."""
    rng = np.random.default_rng(7)
    r = np.array([0.0, 100.0, 250.0, 375.0, 400.0])
    z = np.array([0.0, 40.0, -75.0, 140.0, 10.0])
    est, se = geometric_sensitivity_mc(r, z, radius=R, half_length=L, n_pairs=400_000, rng=rng)
    exact = geometric_sensitivity(r, z, radius=R, half_length=L)
    assert np.all(np.abs(est - exact) / se <= 4.5), (est - exact) / se


def test_monte_carlo_is_reproducible():
    a = geometric_sensitivity_mc(50.0, 20.0, radius=R, half_length=L, n_pairs=1000, rng=np.random.default_rng(3))
    b = geometric_sensitivity_mc(50.0, 20.0, radius=R, half_length=L, n_pairs=1000, rng=np.random.default_rng(3))
    assert a == b


# --- line source and finite depth ---------------------------------------------------------


@pytest.mark.parametrize("source_length", [700.0, 306.0, 100.0])
def test_line_source_against_adaptive_quadrature(source_length):
    r = np.array([0.0, 120.0, 300.0, 390.0])
    got = line_source_sensitivity(r, radius=R, half_length=L, source_length=source_length)
    for ri, gi in zip(r, got):
        zmax = min(L, source_length / 2)
        knee = min(L * ri / R, zmax)
        f = lambda z: geometric_sensitivity(ri, z, radius=R, half_length=L)  # noqa: E731
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IntegrationWarning)
            ref = sum(quad(f, a, b, epsabs=1e-13, epsrel=1e-13, limit=400)[0] for a, b in ((0, knee), (knee, zmax)))
        assert abs(gi - 2 * ref / source_length) <= 1e-11


def test_short_line_source_tends_to_point_value():
    s = line_source_sensitivity(200.0, radius=R, half_length=L, source_length=1e-3)
    assert s == pytest.approx(geometric_sensitivity(200.0, 0.0, radius=R, half_length=L), abs=1e-9)


def _detection_by_nested_quad(r, z, depth, mu):
    """Independent oracle: nested adaptive quadrature of the chord-length model."""

    def pair(phi, cos_t):
        sin_t = math.sqrt(1 - cos_t * cos_t)
        prob = 1.0
        for sign, h in ((1.0, L - z), (-1.0, L + z)):
            pw = sign * r * math.cos(phi)
            t_in = -pw + math.sqrt(pw * pw + R * R - r * r)
            t_out = -pw + math.sqrt(pw * pw + (R + depth) ** 2 - r * r)
            face = h / cos_t if cos_t > 0 else math.inf
            chord = max(0.0, min(t_out / sin_t, face) - t_in / sin_t)
            prob *= -math.expm1(-mu * chord)
        return prob

    def breaks(phi):
        pts = []
        for sign, h in ((1.0, L - z), (-1.0, L + z)):
            pw = sign * r * math.cos(phi)
            for rad in (R, R + depth):
                t = -pw + math.sqrt(pw * pw + rad * rad - r * r)
                pts.append(h / math.hypot(h, t))
        return sorted(pts)

    def inner(phi):
        edges = [0.0, *breaks(phi), 1.0]
        return sum(quad(lambda c: pair(phi, c), a, b, epsabs=1e-13, epsrel=1e-13)[0] for a, b in zip(edges, edges[1:]))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntegrationWarning)
        return quad(inner, 0.0, math.pi, epsabs=1e-11, epsrel=1e-11, limit=200)[0] / math.pi


@pytest.mark.slow
@pytest.mark.parametrize("r, z", [(375.0, 75.0), (200.0, -30.0)])
def test_detection_against_nested_quadrature(r, z):
    got = detection_sensitivity(r, z, radius=R, half_length=L, depth=20.0, mu=0.087)
    assert abs(got - _detection_by_nested_quad(r, z, 20.0, 0.087)) <= 1e-8


def test_detection_converged():
    kw = dict(radius=R, half_length=L, depth=20.0, mu=0.087)
    a = detection_sensitivity(375.0, 75.0, **kw)
    b = detection_sensitivity(375.0, 75.0, **kw, n_azimuth=4096, n_gauss=48)
    assert abs(a - b) <= 1e-9


@settings(max_examples=40, deadline=None)
@given(st.floats(0.0, 0.99), st.floats(-0.99, 0.99), st.floats(1.0, 30.0), st.floats(0.01, 1.0))
def test_detection_bounded_and_monotone(rf, zf, depth, mu):
    kw = dict(radius=R, half_length=L)
    r, z = rf * R, zf * L
    det = detection_sensitivity(r, z, **kw, depth=depth, mu=mu, n_azimuth=128)
    assert 0.0 <= det <= geometric_sensitivity(r, z, **kw) + 1e-12
    assert detection_sensitivity(r, z, **kw, depth=depth * 1.5, mu=mu, n_azimuth=128) >= det - 1e-12
    assert detection_sensitivity(r, z, **kw, depth=depth, mu=mu * 1.5, n_azimuth=128) >= det - 1e-12


def test_detection_tends_to_geometric_as_mu_grows():
    r, z = np.array([0.0, 200.0, 380.0]), np.array([0.0, 50.0, -100.0])
    geo = geometric_sensitivity(r, z, radius=R, half_length=L)
    gaps = [geo - detection_sensitivity(r, z, radius=R, half_length=L, depth=20.0, mu=mu) for mu in (0.1, 1.0, 10.0, 100.0)]
    assert all(np.all(g1 >= g2) for g1, g2 in zip(gaps, gaps[1:]))
    assert np.max(gaps[-1]) < 1e-4
    # A deeper wall does NOT reach S_g: photons entering near the end leave through the face.
    deep = detection_sensitivity(300.0, 100.0, radius=R, half_length=L, depth=1e4, mu=0.087)
    assert deep < geometric_sensitivity(300.0, 100.0, radius=R, half_length=L) - 1e-3
