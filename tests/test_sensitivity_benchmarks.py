"""Benchmarks of refsuite.sensitivity (pytest-benchmark), with figures against BENCHMARKS.md.

Reference figure (../shared/BENCHMARKS.md): scipy ``quad`` (epsabs = epsrel = 1e-14) of Lin
et al.'s contour integrals, one point at a time, R = 403.8 mm, L = 153 mm, random (r, z)
inside 0.999 of the FOV: 1,020 points/s. Goal: >= 1e6 points/s on one core (>= 1000x).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from scipy.integrate import IntegrationWarning

from conftest import run_timed
from refsuite.sensitivity import (
    detection_sensitivity,
    geometric_sensitivity,
    geometric_sensitivity_mc,
    geometric_sensitivity_reference,
)

R, L = 403.8, 153.0
REFERENCE_POINTS_PER_S = 1020.0  # BENCHMARKS.md, scipy quad point by point
N_POINTS = 1_000_000


def _fov_points(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 0.999 * R, n), rng.uniform(-0.999 * L, 0.999 * L, n)


@pytest.fixture(scope="module")
def reference_speed():
    """Our oracle (the same scipy quad workload), timed in this run on 200 points."""
    r, z = _fov_points(200, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntegrationWarning)
        start = time.perf_counter()
        geometric_sensitivity_reference(r, z, radius=R, half_length=L)
    return 200 / (time.perf_counter() - start)


@pytest.mark.benchmark(group="sensitivity: closed form, points/s")
def test_bench_closed_form(benchmark, reference_speed, record_figure):
    r, z = _fov_points(N_POINTS)
    values, seconds = run_timed(benchmark, geometric_sensitivity, r, z, radius=R, half_length=L)
    assert values.shape == (N_POINTS,) and np.all((values >= 0) & (values <= 1))
    speed = N_POINTS / seconds
    benchmark.extra_info.update(
        points_per_s=speed,
        reference_quad_points_per_s_this_run=reference_speed,
        ratio_vs_reference_this_run=speed / reference_speed,
        ratio_vs_benchmarks_md=speed / REFERENCE_POINTS_PER_S,
    )
    record_figure("closed form", speed, unit="points/s", reference=REFERENCE_POINTS_PER_S,
                  reference_label="BENCHMARKS.md scipy quad")
    record_figure("closed form", speed, unit="points/s", reference=reference_speed,
                  reference_label="reference quadrature timed in this run")
    # The goal, machine-independent: >= 1000x the point-by-point reference quadrature timed in
    # this run (BENCHMARKS.md states the quadrature's speed; the goal is three orders above it).
    assert speed / reference_speed >= 1000, f"closed form {speed / reference_speed:.0f}x the quadrature, goal 1000x"


@pytest.mark.benchmark(group="sensitivity: Monte Carlo, pairs/s")
def test_bench_monte_carlo(benchmark, record_figure):
    n = 2_000_000
    rng = np.random.default_rng(0)
    (est, se), seconds = run_timed(benchmark, geometric_sensitivity_mc, 200.0, 50.0, radius=R, half_length=L,
                                   n_pairs=n, rng=rng)
    assert 0 < est < 1 and se > 0
    speed = n / seconds
    benchmark.extra_info["pairs_per_s"] = speed
    record_figure("Monte Carlo", speed, unit="pairs/s")


@pytest.mark.benchmark(group="sensitivity: finite-depth wall, points/s")
def test_bench_detection(benchmark, record_figure):
    r = np.linspace(0.0, 0.99 * R, 8)
    values, seconds = run_timed(benchmark, detection_sensitivity, r, 40.0, radius=R, half_length=L,
                                depth=20.0, mu=0.087)
    assert np.all(values < geometric_sensitivity(r, 40.0, radius=R, half_length=L))
    speed = r.size / seconds
    benchmark.extra_info["points_per_s"] = speed
    record_figure("finite-depth wall (1e-8 quadrature)", speed, unit="points/s")
