"""Throughput of the list-mode Joseph projector on the BENCHMARKS.md workloads.

Workload (BENCHMARKS.md): forward + back projection of LORs with end points on a 150 mm radius
cylinder through a 200^3 image of 1 mm voxels or a 128x128x32 image (2 x 2 x 5 mm, see
:mod:`refsuite.projectors.workloads`), float32, non-TOF and TOF (sigma 15.9 mm, 10 mm bins,
3 sigma, bins uniform in -5..5), at 1 and 2 threads (``torch.set_num_threads``, which the
compiled kernel follows). The compiled (numba) kernel is benchmarked; the torch path runs once on
the same inputs in the same test for the ratio; parallelproj too where the adapter can import it.
Recorded in ``extra_info``: events/s (wall), CPU-seconds, peak memory above the baseline (RSS
sampled every millisecond), and the ratios to the torch path, to parallelproj (measured, or
estimated from BENCHMARKS.md's torch/parallelproj ratios and the torch path measured here) and
to BENCHMARKS.md's 2-core parallelproj figure (200^3 only).

Size: 2e4 LORs by default (quick, for ``make test``); REFSUITE_BENCH_FULL=1 runs the full 1e6.
JIT compilation is excluded (a warm-up call on a few LORs loads or compiles the kernels first).
On a shared machine the wall-clock figures are lower bounds; CPU-seconds are less affected.
"""

from __future__ import annotations

import ctypes
import math
import os
import threading
import time

import numpy as np
import pytest
import torch

from refsuite._threads import limited_threads
from refsuite.projectors import joseph_back, joseph_forward
from refsuite.projectors import _cpu_kernel
from refsuite.projectors.parallelproj_adapter import HAVE_PARALLELPROJ, parallelproj_back, parallelproj_forward
from refsuite.projectors.workloads import (
    BENCHMARK_IMAGES,
    BENCHMARK_TOF,
    PARALLELPROJ_EVENTS_PER_S,
    TORCH_PATH_VS_PARALLELPROJ,
    cylinder_lors,
)

_FULL = os.environ.get("REFSUITE_BENCH_FULL") == "1"
_N_LOR = 1_000_000 if _FULL else 20_000


class _PeakRSS:
    """Peak resident memory (bytes) above the level at entry, sampled every millisecond.

    Freed heap memory is first returned to the system (glibc ``malloc_trim``), else memory freed
    by an earlier test would be reused without showing in the resident size.
    """

    def __enter__(self):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
        self._page = os.sysconf("SC_PAGE_SIZE")
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _poll(self):
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def mb(self) -> float:
        return (self.peak - self.base) / 2**20


def _workload(image: str, use_tof: bool, n_lor: int):
    shape, vs, origin = BENCHMARK_IMAGES[image]
    xs, xe, tb = cylinder_lors(n_lor, rng=np.random.default_rng(0))
    img = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    kw = dict(voxel_size=vs, origin=origin)
    if use_tof:
        kw.update(tof=BENCHMARK_TOF, tof_bin=tb)
    return img, xs, xe, shape, kw


def _fwd_back(forward, back, img, xs, xe, shape, kw):
    return back(forward(img, xs, xe, **kw), xs, xe, image_shape=shape, **kw)


def _timed(fn):
    """``(result, wall s, CPU s, peak MB)`` of one call."""
    with _PeakRSS() as mem:
        c0, w0 = time.process_time(), time.perf_counter()
        out = fn()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return out, wall, cpu, mem.mb


def _backend(name):
    def fwd(img, xs, xe, **kw):
        return joseph_forward(img, xs, xe, backend=name, **kw)

    def back(y, xs, xe, **kw):
        return joseph_back(y, xs, xe, backend=name, **kw)

    return fwd, back


@pytest.mark.benchmark(group="projector")
@pytest.mark.skipif(not _cpu_kernel.numba_available(), reason="numba not importable")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("use_tof", [False, True], ids=["non-TOF", "TOF"])
@pytest.mark.parametrize("image", list(BENCHMARK_IMAGES))
def test_listmode_projector_throughput(benchmark, record_figure, image, use_tof, threads):
    import numba

    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip(f"numba allows {numba.config.NUMBA_NUM_THREADS} threads here")
    img, xs, xe, shape, kw = _workload(image, use_tof, _N_LOR)
    key = "TOF" if use_tof else "non-TOF"
    with limited_threads(threads):
        kernel = _backend("numba")
        _fwd_back(*kernel, img, xs[:16], xe[:16], shape, {k: (v[:16] if k == "tof_bin" else v) for k, v in kw.items()})
        with _PeakRSS() as mem:
            c0, w0 = time.process_time(), time.perf_counter()
            out = benchmark.pedantic(lambda: _fwd_back(*kernel, img, xs, xe, shape, kw), rounds=1, iterations=1,
                                     warmup_rounds=0)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0  # one round, also with --benchmark-disable
        ref, t_wall, t_cpu, t_mb = _timed(lambda: _fwd_back(*_backend("torch"), img, xs, xe, shape, kw))
        pp = _timed(lambda: _fwd_back(parallelproj_forward, parallelproj_back, img, xs, xe, shape, kw)) \
            if HAVE_PARALLELPROJ else None
    assert torch.isfinite(out).all() and out.sum() > 0
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * float(ref.max()))
    rate, torch_rate = _N_LOR / wall, _N_LOR / t_wall
    lo, hi = TORCH_PATH_VS_PARALLELPROJ[(image, key, threads)]
    pp_rate = _N_LOR / pp[1] if pp else torch_rate / math.sqrt(lo * hi)
    info = dict(n_lor=_N_LOR, threads=threads, events_per_s=rate, cpu_s=cpu, peak_mb=mem.mb,
                torch_events_per_s=torch_rate, torch_cpu_s=t_cpu, torch_peak_mb=t_mb, ratio_vs_torch=rate / torch_rate,
                parallelproj_events_per_s=pp_rate, parallelproj_measured=pp is not None,
                ratio_vs_parallelproj=rate / pp_rate)
    if image == "200^3":
        info.update(reference_events_per_s=PARALLELPROJ_EVENTS_PER_S[key],
                    ratio_vs_reference=rate / PARALLELPROJ_EVENTS_PER_S[key])
    benchmark.extra_info.update(info)
    how = "measured" if pp else "estimated from BENCHMARKS.md's torch/parallelproj ratio"
    record_figure(f"{key} fwd+back {_N_LOR:.0e} LORs {image} float32, numba kernel, {threads} thread(s) "
                  f"({cpu:.2f} s CPU, +{mem.mb:.0f} MB; torch path {torch_rate:.3g} events/s, +{t_mb:.0f} MB; "
                  f"ratio vs torch {rate / torch_rate:.2f}, vs parallelproj ({how}) {rate / pp_rate:.2f})",
                  rate, unit="events/s", reference=PARALLELPROJ_EVENTS_PER_S[key] if image == "200^3" else None,
                  reference_label="parallelproj 1.10.2, 2 cores (BENCHMARKS.md)")


@pytest.mark.benchmark(group="projector")
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("use_tof", [False, True], ids=["non-TOF", "TOF"])
def test_listmode_projector_throughput_cuda(benchmark, record_figure, use_tof):
    """The torch path on CUDA (the compiled kernel is CPU-only), 200^3."""
    img, xs, xe, shape, kw = _workload("200^3", use_tof, _N_LOR)
    img, xs, xe = img.cuda(), xs.cuda(), xe.cuda()
    if use_tof:
        kw["tof_bin"] = kw["tof_bin"].cuda()
    w0 = time.perf_counter()
    out = benchmark.pedantic(lambda: _fwd_back(joseph_forward, joseph_back, img, xs, xe, shape, kw), rounds=1,
                             iterations=1, warmup_rounds=0)
    torch.cuda.synchronize()
    rate = _N_LOR / (time.perf_counter() - w0)
    assert torch.isfinite(out).all() and out.sum() > 0
    key = "TOF" if use_tof else "non-TOF"
    benchmark.extra_info.update(events_per_s=rate, ratio_vs_reference=rate / PARALLELPROJ_EVENTS_PER_S[key])
    record_figure(f"{key} fwd+back {_N_LOR:.0e} LORs 200^3 float32 cuda", rate, unit="events/s",
                  reference=PARALLELPROJ_EVENTS_PER_S[key], reference_label="parallelproj 1.10.2, 2 cores")
