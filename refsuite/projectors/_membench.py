"""Memory-bound reference for the list-mode projector: gathers and scatters of as many voxel
touches as a projection makes, without its arithmetic (numba, float32).

A Joseph sample reads (forward) or adds to (back) four voxels: two pairs of neighbours along z,
the fastest axis, so each pair is one cache line (mostly). :func:`gather_scatter_seconds`
replays ``n_pairs`` such pairs over an image of the same size,

* ``"sequential"``: each pair in the next 64-byte cache line (streaming through the image in
  address order, so the hardware prefetcher runs ahead): the bandwidth limit of the machine for
  one cache line per pair, i.e. for a projector that reuses no line from the cache;
* ``"random"``: pairs at pseudo-random positions (an LCG with multiply-shift range reduction),
  every touch a likely cache miss: a projector with no locality at all.

With threads, each thread touches only its own slab of the image (as the back projection
does), so the scatter has no races. The ratio of the projector's time to the sequential time is
its distance to the bandwidth limit (below 1: the projector's locality order lets cached lines
serve several touches).
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit, prange

from refsuite._threads import numba_threads

from ._cpu_kernel import load_kernels

__all__ = ["gather_scatter_seconds", "voxel_touches"]

_MODES = ("sequential", "random")


@njit(parallel=True, cache=True, nogil=True)
def _replay(image, n_pairs, random, scatter, n_parts):
    numel = image.shape[0] - 1  # the pair (k, k + 1) stays inside
    total = 0.0
    for t in prange(n_parts):
        lo, hi = t * numel // n_parts, (t + 1) * numel // n_parts
        span = np.uint64(hi - lo)
        state = np.uint64(0x9E3779B97F4A7C15 + t)
        k = lo
        off = 0
        acc = np.float32(0.0)
        for _ in range(t * n_pairs // n_parts, (t + 1) * n_pairs // n_parts):
            if random:
                state = state * np.uint64(6364136223846793005) + np.uint64(1442695040888963407)
                k = lo + int(((state >> np.uint64(32)) * span) >> np.uint64(32))
            else:  # the next cache line (16 float32), wrapping with a shifted offset
                k += 16
                if k >= hi - 1:
                    off = (off + 1) % 16
                    k = lo + off
            if scatter:
                image[k] += np.float32(1e-7)
                image[k + 1] += np.float32(1e-7)
            else:
                acc += image[k] + image[k + 1]
        total += acc
    return total


def voxel_touches(image, xs, xe, *, voxel_size, origin, tof=None, tof_bin=None, tof_offset=None) -> int:
    """Voxel reads of one forward projection (= voxel writes of one back projection): 4 per
    Joseph sample, counted by the compiled kernel's own sampling plan (arguments as
    :func:`~refsuite.projectors.joseph_forward`)."""
    from ._cpu_kernel import _geometry
    from .joseph import _check_args

    xs, xe, vs, org = _check_args(xs, xe, voxel_size, origin, tof, tof_bin, tof_offset, image.dtype)
    g = _geometry(xs, xe, vs, org, tof, tof_bin, tof_offset, image.dtype)
    return 4 * load_kernels().sample_count(image.shape, *g.args())


def gather_scatter_seconds(image_shape, n_touches: int, *, mode: str = "sequential", repeats: int = 1) -> dict:
    """Wall seconds of a gather (read and sum) and a scatter (add) of ``n_touches`` float32
    voxels, in pairs, over a zero image of ``image_shape``, using ``torch.get_num_threads()``
    threads (as the projector). ``mode``: ``"sequential"`` (bandwidth limit) or ``"random"``
    (no locality). Returns ``{"gather_s", "scatter_s"}``, each the best of ``repeats``.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if int(n_touches) < 2:
        raise ValueError(f"n_touches must be >= 2, got {n_touches!r}")
    if int(repeats) < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}")
    image = np.zeros(int(np.prod(image_shape)), np.float32)
    n_pairs = int(n_touches) // 2
    out = {}
    with numba_threads() as n_threads:
        _replay(image, 16, mode == "random", False, n_threads)  # compile or load from the cache
        _replay(image, 16, mode == "random", True, n_threads)
        for key, scatter in (("gather_s", False), ("scatter_s", True)):
            best = np.inf
            for _ in range(int(repeats)):
                t0 = time.perf_counter()
                _replay(image, n_pairs, mode == "random", scatter, n_threads)
                best = min(best, time.perf_counter() - t0)
            out[key] = best
    return out
