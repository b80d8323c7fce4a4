"""Throughput of the list-mode Joseph projector on the BENCHMARKS.md workloads.

Workload (BENCHMARKS.md): forward + back projection of 1e6 LORs through a 200^3 image of 1 mm
voxels, float32, end points on a 150 mm radius cylinder; non-TOF and TOF (sigma 15.9 mm, 10 mm
bins, 3 sigma, bins uniform in -5..5). The figure is events/s (forward + back), reported next to
parallelproj 1.10.2's figure as a ratio. A 1e5-LOR run of the same code is timed as well, since the
machine is shared (the 1e6 run is one round; treat all timings as lower bounds under contention).

Threads: REFSUITE_BENCH_THREADS (default 1). On this shared 2-core machine two OpenMP threads
stall each other at every parallel region (each op waits for a descheduled thread), which made
the run several times slower than one thread; on an idle 2-core machine set it to 2.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from refsuite._threads import limited_threads
from refsuite.projectors import joseph_back, joseph_forward
from refsuite.projectors.workloads import BENCHMARK_TOF, PARALLELPROJ_EVENTS_PER_S, benchmark_image_geometry, cylinder_lors

_DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _run(n_lor, use_tof, device):
    shape, vs, origin = benchmark_image_geometry()
    xs, xe, tb = cylinder_lors(n_lor, rng=np.random.default_rng(0), device=device)
    img = torch.rand(shape, generator=torch.Generator().manual_seed(0)).to(device)
    kw = dict(voxel_size=vs, origin=origin)
    if use_tof:
        kw.update(tof=BENCHMARK_TOF, tof_bin=tb)

    def once():
        y = joseph_forward(img, xs, xe, **kw)
        return joseph_back(y, xs, xe, image_shape=shape, **kw)

    return once


@pytest.mark.benchmark(group="projector")
@pytest.mark.parametrize("device", _DEVICES)
@pytest.mark.parametrize("use_tof", [False, True], ids=["non-TOF", "TOF"])
@pytest.mark.parametrize("n_lor", [100_000, 1_000_000], ids=["1e5", "1e6"])
def test_listmode_projector_throughput(benchmark, record_figure, n_lor, use_tof, device):
    if n_lor >= 1_000_000 and os.environ.get("REFSUITE_BENCH_FULL") != "1":
        pytest.skip("the 1e6-LOR workload takes minutes on a shared machine; set REFSUITE_BENCH_FULL=1 "
                    "(the projectors study runs it in full mode)")
    with limited_threads(int(os.environ.get("REFSUITE_BENCH_THREADS", "1"))):
        _measure(benchmark, record_figure, n_lor, use_tof, device)


def _measure(benchmark, record_figure, n_lor, use_tof, device):
    once = _run(n_lor, use_tof, device)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    out = benchmark.pedantic(once, rounds=1, iterations=1, warmup_rounds=0)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0  # one round: also under --benchmark-disable
    assert torch.isfinite(out).all() and out.sum() > 0
    key = "TOF" if use_tof else "non-TOF"
    rate = n_lor / wall
    benchmark.extra_info.update(events_per_s=rate, cpu_s=cpu, torch_threads=torch.get_num_threads(),
                                reference_events_per_s=PARALLELPROJ_EVENTS_PER_S[key],
                                ratio=rate / PARALLELPROJ_EVENTS_PER_S[key])
    record_figure(f"{key} fwd+back {n_lor:.0e} LORs 200^3 float32 {device} "
                  f"({torch.get_num_threads()} threads, {cpu:.1f} s CPU)", rate, unit="events/s",
                  reference=PARALLELPROJ_EVENTS_PER_S[key], reference_label="parallelproj 1.10.2, 2 cores")
