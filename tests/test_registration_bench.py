"""Benchmarks: instance-optimisation iterations and U-Net inference at the study's quick and full sizes.

BENCHMARKS.md has no reference figure for registration; the figures are recorded on their own
(iterations/s and inferences/s on the shared CPU, one torch thread: lower bounds).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refsuite.registration import RegistrationUNet, optimise_ddf, predict_ddf

SIZES = {"quick": (66, 24, 33), "full": (132, 40, 56)}
N_ITER = 5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _images(shape):
    rng = np.random.default_rng(0)
    return rng.poisson(20.0, shape).astype(np.float32), rng.poisson(20.0, shape).astype(np.float32)


@pytest.mark.benchmark(group="registration")
@pytest.mark.parametrize("size", ["quick", pytest.param("full", marks=pytest.mark.slow)])
def test_bench_instance_iteration(benchmark, record_figure, size):
    fixed, moving = _images(SIZES[size])
    weight = np.ones(SIZES[size], np.float32)

    def run():
        return optimise_ddf(fixed, moving, weight_map=weight, spacing=(15.0, 12.5, 12.7), levels=1,
                            iterations=(N_ITER,))

    ddf, hist = benchmark.pedantic(run, rounds=2, iterations=1)
    assert len(hist) == N_ITER and np.all(np.isfinite(hist))
    if benchmark.stats is None:  # --benchmark-disable: ran once as a plain test
        return
    per_s = N_ITER / benchmark.stats.stats.min
    benchmark.extra_info["iterations_per_s"] = per_s
    record_figure(f"instance-optimisation iterations/s at {SIZES[size]} (incl. setup)", per_s, unit="it/s")


@pytest.mark.benchmark(group="registration")
@pytest.mark.parametrize("size", ["quick", "full"])
def test_bench_network_inference(benchmark, record_figure, size):
    torch.manual_seed(0)
    fixed, moving = _images(SIZES[size])
    model = RegistrationUNet().eval()
    ddf = benchmark.pedantic(lambda: predict_ddf(model, fixed, moving), rounds=3, iterations=1)
    assert ddf.shape == (1, 3) + SIZES[size]
    if benchmark.stats is None:  # --benchmark-disable: ran once as a plain test
        return
    per_s = 1.0 / benchmark.stats.stats.min
    benchmark.extra_info["inferences_per_s"] = per_s
    record_figure(f"U-Net inferences/s at {SIZES[size]}", per_s, unit="1/s")
