"""Benchmarks: projector + OSEM iteration (quick and full matrix), DL-PVC inference per volume.

There is no reference figure for these in BENCHMARKS.md; the PyTomography figure (its own
per-view projector on the same case, same run) is the reference where we have one.
Timings on the shared 2-core machine are upper bounds of the quiet-machine figures.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from conftest import run_timed
from refsuite.pvc import Architecture, Reconstruction, SpectGeometry, build_network, correct, osem, pytomography_osem
from refsuite.pvc import spect
from refsuite.pvc.phantoms import BodyRegion, attenuation_map


def _case(shape, n_views, seed=0):
    g = SpectGeometry(shape, n_views=n_views, time_per_view_s=3600.0 / n_views)
    rng = np.random.default_rng(seed)
    mu, _ = attenuation_map(shape, g.voxel_mm, region=BodyRegion.ABDOMEN, rng=rng)
    act = np.where(mu > 0, rng.uniform(0, 1e-3, shape), 0.0)
    radii = spect.contour_orbit(mu, g)
    counts = rng.poisson(spect.forward_project(act, mu, radii, g))
    return g, mu, radii, counts


@pytest.mark.benchmark(group="pvc")
def test_osem_iteration_quick_matrix(benchmark, record_figure):
    g, mu, radii, counts = _case((16, 24, 24), 24)
    _, ours = run_timed(benchmark, osem, counts, mu, radii, g, recon=Reconstruction.RR, n_iter=1, rounds=2)
    t0 = time.perf_counter()
    pytomography_osem(counts, mu, radii, g, recon=Reconstruction.RR, n_iter=1)
    ref = time.perf_counter() - t0
    benchmark.extra_info.update(seconds_per_iteration=ours, pytomography_seconds=ref)
    record_figure("RR OSEM iteration, 16x24x24, 24 views (s)", ours, unit="s", reference=ref,
                  reference_label="PyTomography OSEM, same case, s")


@pytest.mark.slow
@pytest.mark.benchmark(group="pvc")
def test_projector_full_matrix(benchmark, record_figure):
    """128^3, 120 views: one forward + back projection of 6 views with PSF, scaled to an iteration."""
    g = SpectGeometry((128, 128, 128), n_views=120)
    rng = np.random.default_rng(1)
    mu, _ = attenuation_map(g.shape, g.voxel_mm, region=BodyRegion.THORAX, rng=rng)
    radii = spect.contour_orbit(mu, g)
    model = spect._Model(g, spect.to_internal(mu), radii, psf=True)
    f = spect.to_internal(np.where(mu > 0, 1.0, 0.0))
    idx = torch.arange(0, 120, 20)  # 6 views

    def one():
        with torch.no_grad():
            spect._apply(model, "backward", spect._apply(model, "forward", f, idx), idx)

    _, seconds = run_timed(benchmark, one, rounds=1)
    per_iter = 120 / idx.numel() * seconds
    benchmark.extra_info["seconds_per_rr_iteration_extrapolated"] = per_iter
    record_figure("RR OSEM iteration, 128^3, 120 views, extrapolated from 6 views (s)", per_iter, unit="s")


@pytest.mark.benchmark(group="pvc")
def test_dl_pvc_inference(benchmark, record_figure):
    torch.manual_seed(0)
    model = build_network(Architecture.R2UNET, features=(4, 8, 16))
    img = np.random.default_rng(2).uniform(0, 1, (16, 24, 24))
    _, quick = run_timed(benchmark, correct, img, model, rounds=3)
    full_net = build_network(Architecture.R2UNET, features=(16, 32, 64, 128))
    patch = np.random.default_rng(3).uniform(0, 1, (32, 32, 32))
    t0 = time.perf_counter()
    correct(patch, full_net)
    per_volume = (time.perf_counter() - t0) * (128 // 32) ** 3
    benchmark.extra_info.update(quick_seconds=quick, full_seconds_extrapolated=per_volume)
    record_figure("DL-PVC inference, quick R2U-Net, 16x24x24 (s)", quick, unit="s")
    record_figure("DL-PVC inference, paper-size R2U-Net, 128^3 from 32^3 (s)", per_volume, unit="s")
