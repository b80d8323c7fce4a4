"""Compiled (numba, multi-threaded) CPU kernels of the Joseph list-mode projector and its adjoint.

The same arithmetic as the torch path of :mod:`refsuite.projectors.joseph` (exact ray-box
clipping of Smits' slab method, clipping to the TOF kernel's support, one sample per plane along
the principal axis, exact partial end slabs, bilinear interpolation holding the edge value, the
renormalised truncated-Gaussian TOF kernel), evaluated one LOR at a time: no per-sample arrays,
so memory is O(n_lor) for the inputs plus O(threads x image) for the back projection, whatever
the number of samples. Geometry and accumulation are in float64; the image is read and written in
its own dtype.

Back projection has no global scatter: the LORs are cut into one contiguous block per thread,
each thread adds its block into its own image (thread 0 into the output) and the partial images
are summed at the end (parallel over voxels). The result is deterministic for a given thread
count.

Plain numpy in, numpy out; :mod:`refsuite.projectors._cpu_kernel` wraps these as differentiable
torch functions. ``tofp`` and ``table`` pack the TOF constants (see :func:`tof_constants`).
"""

from __future__ import annotations

import math
import os

import numba
import numpy as np
from numba import njit, prange

# numba's own thread pool, not OpenMP: OpenMP worker threads left spinning by a numba launch
# slowed the torch path (same libgomp as torch) 10-20x on the shared 2-core machine. The
# workqueue layer is not re-entrant, so _cpu_kernel serialises launches with a lock. An explicit
# NUMBA_THREADING_LAYER is respected.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

__all__ = ["forward", "back", "tof_constants", "locality_order"]

#: Intervals of the erf table of :func:`tof_constants` (64 kB: stays in the L1/L2 cache).
_ERF_INTERVALS = 2048

#: Bins per transverse slope (``d_a / d_p`` in [-1, 1]) and size (voxels) of the position bins
#: of :func:`locality_order` (measured best of a few on the BENCHMARKS.md workload).
_SLOPE_BINS = 4
_POSITION_BIN_VOXELS = 16

_JIT = dict(cache=True, nogil=True, error_model="numpy")


def tof_constants(tof) -> tuple[np.ndarray, np.ndarray]:
    """``(tofp, erf_table)`` of a :class:`TOFParameters` (or None: zeros, unused).

    ``tofp = [use_tof, half_window_mm, sqrt(2) sigma, h, lim, norm, 1 / table step]`` with
    ``h = w / (2 sqrt(2) sigma)``, ``lim = n / sqrt(2)``, ``norm = 1 / (2 erf(lim))`` (tof.py's
    kernel). ``erf_table`` (``_ERF_INTERVALS``, 4): cubic Hermite coefficients of ``erf`` on
    ``[0, lim]`` (values and exact derivatives ``2/sqrt(pi) exp(-x^2)`` at the nodes). Its error is
    at most ``step^4 / 384 max|erf^(4)| < 1e-13``, far below float32 rounding and near float64
    rounding of the sums; it replaces two libm ``erf`` calls (~17 ns each) per sample.
    """
    if tof is None:
        return np.zeros(7), np.zeros((1, 4))
    lim = tof.n_sigmas / math.sqrt(2.0)
    x = np.linspace(0.0, lim, _ERF_INTERVALS + 1)
    step = x[1] - x[0]
    f = np.array([math.erf(v) for v in x])
    d = 2.0 / math.sqrt(math.pi) * np.exp(-x * x) * step
    f0, f1, d0, d1 = f[:-1], f[1:], d[:-1], d[1:]
    table = np.stack([f0, d0, 3.0 * (f1 - f0) - 2.0 * d0 - d1, 2.0 * (f0 - f1) + d0 + d1], axis=1)
    tofp = np.array([1.0, tof.half_window_mm, math.sqrt(2.0) * tof.sigma_mm,
                     tof.bin_width_mm / (2.0 * math.sqrt(2.0) * tof.sigma_mm), lim, 0.5 / math.erf(lim), 1.0 / step])
    return tofp, np.ascontiguousarray(table)


@njit(inline="always", **_JIT)
def _erf(x, tofp, table):
    """``erf(x)`` for ``|x| <= lim`` from the cubic Hermite table of :func:`tof_constants`."""
    s = abs(x) * tofp[6]
    i = min(int(s), table.shape[0] - 1)
    t = s - i
    y = table[i, 0] + t * (table[i, 1] + t * (table[i, 2] + t * table[i, 3]))
    return y if x >= 0.0 else -y


@njit(**_JIT)
def _slab(x0, x1, low, high):
    """Parameter interval of ``x0 + t (x1 - x0)`` inside ``[low, high]`` along one axis (Smits)."""
    d = x1 - x0
    if d == 0.0:  # parallel to the slab: no constraint inside it, empty outside
        return (-2.0, 2.0) if (x0 >= low and x0 <= high) else (2.0, -2.0)
    t1 = (low - x0) / d
    t2 = (high - x0) / d
    return min(t1, t2), max(t1, t2)


@njit(**_JIT)
def _setup(i, xs, xe, shape, strides, vs, org, centre, tofp):
    """Per-LOR sampling plan (the torch path's ``_lor_parameters`` for one LOR).

    Clipping in world coordinates exactly as ``_box.clip_segment_to_box``. Returns ``count``
    (0: no sample), the first plane, the principal stride ``sp``, the transverse sizes/strides
    ``(n_a, sa, n_b, sb)``, the line ``q_a = qs_a + dm ra`` (same for b), ``qs_p``, ``scale`` (mm
    per plane), the two end samples ``(dm, w)`` and the TOF ``gamma, delta``.
    """
    t_in, t_out = 0.0, 1.0
    for ax in range(3):
        tlo, thi = _slab(xs[i, ax], xe[i, ax], org[ax] - 0.5 * vs[ax], org[ax] + (shape[ax] - 0.5) * vs[ax])
        t_in = max(t_in, tlo)
        t_out = min(t_out, thi)
    q0 = (xs[i, 0] - org[0]) / vs[0]
    q1 = (xs[i, 1] - org[1]) / vs[1]
    q2 = (xs[i, 2] - org[2]) / vs[2]
    qs = (q0, q1, q2)
    d = ((xe[i, 0] - org[0]) / vs[0] - q0, (xe[i, 1] - org[1]) / vs[1] - q1, (xe[i, 2] - org[2]) / vs[2] - q2)
    length = math.sqrt((xe[i, 0] - xs[i, 0]) ** 2 + (xe[i, 1] - xs[i, 1]) ** 2 + (xe[i, 2] - xs[i, 2]) ** 2)
    c = 0.0
    if tofp[0] != 0.0:
        c = centre[i]
        t_in = max(t_in, 0.5 + (c - tofp[1]) / length)
        t_out = min(t_out, 0.5 + (c + tofp[1]) / length)
    p = 0  # principal axis: first largest |d| (torch.argmax)
    if abs(d[1]) > abs(d[0]):
        p = 1
    if abs(d[2]) > abs(d[p]):
        p = 2
    a, b = (1, 2) if p == 0 else ((0, 2) if p == 1 else (0, 1))
    dp = d[p]
    count = 0
    first = last = lo = hi = 0.0
    if t_out > t_in and dp != 0.0:
        p_in = qs[p] + t_in * dp
        p_out = qs[p] + t_out * dp
        lo, hi = min(p_in, p_out), max(p_in, p_out)
        first = min(max(math.floor(lo + 0.5), 0.0), shape[p] - 1.0)
        last = min(max(math.floor(hi + 0.5), 0.0), shape[p] - 1.0)
        count = int(last - first) + 1
    else:
        dp = 1.0
    scale = length / abs(dp)
    dm_f = 0.5 * (max(first - 0.5, lo) + min(first + 0.5, hi)) - qs[p]
    w_f = max(min(first + 0.5, hi) - max(first - 0.5, lo), 0.0) * scale
    dm_l = 0.5 * (max(last - 0.5, lo) + min(last + 0.5, hi)) - qs[p]
    w_l = max(min(last + 0.5, hi) - max(last - 0.5, lo), 0.0) * scale
    gamma = delta = 0.0
    if tofp[0] != 0.0:
        gamma = (c + 0.5 * length) / tofp[2]
        delta = -length / (dp * tofp[2])
    return (count, int(first), strides[p], shape[a], strides[a], shape[b], strides[b], qs[a], d[a] / dp,
            qs[b], d[b] / dp, qs[p], scale, dm_f, w_f, dm_l, w_l, gamma, delta)


@njit(inline="always", **_JIT)
def _tof(w, dm, gamma, delta, tofp, table):
    """``w`` times the effective TOF kernel at plane offset ``dm`` (``u = gamma + dm delta``)."""
    u = gamma + dm * delta
    h, lim = tofp[3], tofp[4]
    return w * (_erf(min(max(u + h, -lim), lim), tofp, table) - _erf(min(max(u - h, -lim), lim), tofp, table)) \
        * tofp[5]


@njit(inline="always", **_JIT)
def _corner(plane, dm, sp, n_a, sa, qs_a, ra, n_b, sb, qs_b, rb):
    """Flat index of the lower corner, steps ``(da, db)`` to the others and fractions ``(fa, fb)``."""
    qa = min(max(qs_a + dm * ra, 0.0), n_a - 1.0)
    qb = min(max(qs_b + dm * rb, 0.0), n_b - 1.0)
    ia = int(qa)
    ib = int(qb)
    da = sa if ia < n_a - 1 else 0  # at the last voxel the fraction is 0: hold the edge value
    db = sb if ib < n_b - 1 else 0
    return plane * sp + ia * sa + ib * sb, da, db, qa - ia, qb - ib


@njit(inline="always", **_JIT)
def _end_sample(j, plan):
    """Plane offset ``dm`` and slab weight (mm) of sample ``j`` (partial slabs at both ends)."""
    count, first, qs_p, scale, dm_f, w_f, dm_l, w_l = plan[0], plan[1], plan[11], plan[12], plan[13], plan[14], \
        plan[15], plan[16]
    if j == count - 1:
        return dm_l, w_l
    if j == 0:
        return dm_f, w_f
    return first + j - qs_p, scale


@njit(**_JIT)
def _lor_samples(plan, tofp, table, ks, steps, ws):
    """Phase 1 of a LOR (arithmetic only): corner index ``ks[j]``, corner steps ``steps[j] = (da,
    db)`` and the four bilinear weights times the slab (and TOF) weight ``ws[j]`` of each sample.

    Kept apart from the memory phase so that the gathers/scatters of many samples are in flight
    at once (the projector is bound by memory latency). Returns the number of samples.
    """
    (count, first, sp, n_a, sa, n_b, sb, qs_a, ra, qs_b, rb, qs_p, scale, dm_f, w_f, dm_l, w_l,
     gamma, delta) = plan
    use_tof = tofp[0] != 0.0
    for j in range(count):
        dm, w = _end_sample(j, plan)
        if use_tof:
            w = _tof(w, dm, gamma, delta, tofp, table)
        k, da, db, fa, fb = _corner(first + j, dm, sp, n_a, sa, qs_a, ra, n_b, sb, qs_b, rb)
        ks[j] = k
        steps[j, 0] = da
        steps[j, 1] = db
        w1 = w * fb
        w0 = w - w1
        ws[j, 1] = w0 * fa
        ws[j, 0] = w0 - ws[j, 1]
        ws[j, 3] = w1 * fa
        ws[j, 2] = w1 - ws[j, 3]
    return count


@njit(parallel=True, **_JIT)
def forward(image, shape, xs, xe, vs, org, centre, tofp, table, order, out):
    """``out[i] = sum_samples w * bilinear(image)`` for every LOR ``i`` (parallel over LORs).

    ``image`` is the flat C-ordered ``(nx, ny, nz)`` image; ``shape`` int64 (3,); ``vs``/``org``
    float64 (3,), mm; ``xs``/``xe`` (n, 3) mm; ``centre`` (n,) signed TOF bin centres (mm), unused
    without TOF; ``order`` (n,) int64: the LORs in the order to process them (see
    :func:`locality_order`); ``out`` (n,) is overwritten.
    """
    strides = np.array([shape[1] * shape[2], shape[2], 1], dtype=np.int64)
    n = xs.shape[0]
    m = max(shape[0], shape[1], shape[2]) + 1
    n_blocks = min(n, 256)
    for t in prange(n_blocks):
        ks = np.empty(m, np.int64)
        steps = np.empty((m, 2), np.int64)
        ws = np.empty((m, 4))
        for r in range(t * n // n_blocks, (t + 1) * n // n_blocks):
            i = order[r]
            count = _lor_samples(_setup(i, xs, xe, shape, strides, vs, org, centre, tofp), tofp, table, ks, steps, ws)
            acc = 0.0
            for j in range(count):
                k, da, db = ks[j], steps[j, 0], steps[j, 1]
                acc += ws[j, 0] * image[k] + ws[j, 1] * image[k + da] + ws[j, 2] * image[k + db] \
                    + ws[j, 3] * image[k + da + db]
            out[i] = acc


@njit(**_JIT)
def _back_block(values, order, lo, hi, shape, strides, xs, xe, vs, org, centre, tofp, table, target):
    m = max(shape[0], shape[1], shape[2]) + 1
    ks = np.empty(m, np.int64)
    steps = np.empty((m, 2), np.int64)
    ws = np.empty((m, 4))
    for r in range(lo, hi):
        i = order[r]
        v = values[i]
        if v == 0.0:
            continue
        count = _lor_samples(_setup(i, xs, xe, shape, strides, vs, org, centre, tofp), tofp, table, ks, steps, ws)
        for j in range(count):
            k, da, db = ks[j], steps[j, 0], steps[j, 1]
            target[k] += v * ws[j, 0]
            target[k + da] += v * ws[j, 1]
            target[k + db] += v * ws[j, 2]
            target[k + da + db] += v * ws[j, 3]


@njit(parallel=True, **_JIT)
def back(values, shape, xs, xe, vs, org, centre, tofp, table, order, out, partial):
    """Adjoint of :func:`forward`: ``out += A^T values`` (flat image, zeroed by the caller).

    ``partial`` (T - 1, numel), zeroed: the private images of threads 1..T-1; LOR block 0 goes
    straight into ``out``; the partial images are added to ``out`` at the end.
    """
    strides = np.array([shape[1] * shape[2], shape[2], 1], dtype=np.int64)
    n = xs.shape[0]
    n_blocks = partial.shape[0] + 1
    for t in prange(n_blocks):
        lo = t * n // n_blocks
        hi = (t + 1) * n // n_blocks
        if t == 0:
            _back_block(values, order, lo, hi, shape, strides, xs, xe, vs, org, centre, tofp, table, out)
        else:
            _back_block(values, order, lo, hi, shape, strides, xs, xe, vs, org, centre, tofp, table, partial[t - 1])
    if n_blocks > 1:
        for k in prange(out.shape[0]):
            s = out[k]
            for t in range(n_blocks - 1):
                s += partial[t, k]
            out[k] = s


@njit(parallel=True, **_JIT)
def _locality_keys(shape, xs, xe, vs, org):
    n = xs.shape[0]
    keys = np.empty(n, np.int64)
    n_pos = (max(shape[0], shape[1], shape[2]) + 4 * _POSITION_BIN_VOXELS) // _POSITION_BIN_VOXELS + 1
    for i in prange(n):
        q = np.empty(3)
        d = np.empty(3)
        for ax in range(3):
            q[ax] = (0.5 * (xs[i, ax] + xe[i, ax]) - org[ax]) / vs[ax]
            d[ax] = (xe[i, ax] - xs[i, ax]) / vs[ax]
        p = 0
        if abs(d[1]) > abs(d[0]):
            p = 1
        if abs(d[2]) > abs(d[p]):
            p = 2
        a, b = (1, 2) if p == 0 else ((0, 2) if p == 1 else (0, 1))
        key = p
        t = (0.5 * (shape[p] - 1) - q[p]) / d[p] if d[p] != 0.0 else 0.0  # crossing of the central plane
        for ax in (a, b):
            slope = d[ax] / d[p] if d[p] != 0.0 else 0.0
            key = key * _SLOPE_BINS + min(max(int((slope + 1.0) * 0.5 * _SLOPE_BINS), 0), _SLOPE_BINS - 1)
        for ax in (a, b):
            pos = (q[ax] + t * d[ax]) / _POSITION_BIN_VOXELS + 2.0
            key = key * n_pos + min(max(int(pos), 0), n_pos - 1)
        keys[i] = key
    return keys


def locality_order(shape, xs, xe, vs, org) -> np.ndarray:
    """A processing order of the LORs that keeps consecutive LORs near each other in the image.

    LORs are grouped by principal axis, coarse direction (``_SLOPE_BINS`` bins per transverse
    slope) and the position where they cross the image's central plane (bins of
    ``_POSITION_BIN_VOXELS`` voxels): consecutive LORs then reuse cached image lines, which
    halved the time of the memory-latency-bound loops on the BENCHMARKS.md workload. The
    results do not depend on the order (up to the order of floating-point additions in the back
    projection).
    """
    return np.argsort(_locality_keys(shape, xs, xe, vs, org), kind="stable")
