"""Compiled (numba, multi-threaded) CPU kernels of the Joseph list-mode projector and its adjoint.

The same arithmetic as the torch path of :mod:`refsuite.projectors.joseph` (exact ray-box
clipping of Smits' slab method, clipping to the TOF kernel's support, one sample per plane along
the principal axis, exact partial end slabs, bilinear interpolation holding the edge value, the
renormalised truncated-Gaussian TOF kernel), evaluated one LOR at a time: no per-sample arrays.
Geometry and accumulation are in float64; the image is read and written in its own dtype.

Memory is O(batch) beyond the inputs and outputs: the LORs are streamed in batches of a
locality order (direction and position, :mod:`refsuite.projectors._locality`), and the TOF bin
centres are computed on the fly from the bin indices and offsets.

Forward projection is parallel over blocks of a batch's LORs. Back projection has no global
scatter and no private images: each thread owns a slab of x planes of the output and adds, for
every LOR of the batch in the same order, the samples that write into its slab (the sample range
is computed, the writes are checked one by one); the LORs' plans are computed once per part of a
batch and shared, and the slabs are re-split per part at equal sample counts. The result is
therefore identical, bit for bit, for any number of threads.

Plain numpy in, numpy out; :mod:`refsuite.projectors._cpu_kernel` wraps these as differentiable
torch functions. ``tofp`` and ``table`` pack the TOF constants (see :func:`tof_constants`).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from refsuite._threads import use_numba_workqueue

from ._locality import batches

use_numba_workqueue()  # launches go through refsuite._threads.numba_threads (one at a time)

__all__ = ["forward", "back", "tof_constants", "sample_count"]

#: Intervals of the erf table of :func:`tof_constants` (64 kB: stays in the L1/L2 cache).
_ERF_INTERVALS = 2048

_JIT = dict(cache=True, nogil=True, error_model="numpy")


def tof_constants(tof, *, has_bin: bool = True, has_offset: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(tofp, erf_table)`` of a :class:`TOFParameters` (or None: zeros, unused).

    ``tofp = [use_tof, half_window_mm, sqrt(2) sigma, h, lim, norm, 1 / table step, bin width w,
    sign, has_bin, has_offset]`` (the bin centre of LOR ``i`` is ``sign (k_i w + offset_i)``) with
    ``h = w / (2 sqrt(2) sigma)``, ``lim = n / sqrt(2)``, ``norm = 1 / (2 erf(lim))`` (tof.py's
    kernel). ``erf_table`` (``_ERF_INTERVALS``, 4): cubic Hermite coefficients of ``erf`` on
    ``[0, lim]`` (values and exact derivatives ``2/sqrt(pi) exp(-x^2)`` at the nodes). Its error is
    at most ``step^4 / 384 max|erf^(4)| < 1e-13``, far below float32 rounding and near float64
    rounding of the sums; it replaces two libm ``erf`` calls (~17 ns each) per sample.
    """
    if tof is None:
        return np.zeros(11), np.zeros((1, 4))
    lim = tof.n_sigmas / math.sqrt(2.0)
    x = np.linspace(0.0, lim, _ERF_INTERVALS + 1)
    step = x[1] - x[0]
    f = np.array([math.erf(v) for v in x])
    d = 2.0 / math.sqrt(math.pi) * np.exp(-x * x) * step
    f0, f1, d0, d1 = f[:-1], f[1:], d[:-1], d[1:]
    table = np.stack([f0, d0, 3.0 * (f1 - f0) - 2.0 * d0 - d1, 2.0 * (f0 - f1) + d0 + d1], axis=1)
    tofp = np.array([1.0, tof.half_window_mm, math.sqrt(2.0) * tof.sigma_mm,
                     tof.bin_width_mm / (2.0 * math.sqrt(2.0) * tof.sigma_mm), lim, 0.5 / math.erf(lim), 1.0 / step,
                     tof.bin_width_mm, float(tof.sign.value), float(has_bin), float(has_offset)])
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


@njit(inline="always", **_JIT)
def _centre(i, tbin, toff, tofp):
    """Signed TOF bin centre (mm, along ``xstart -> xend``) of LOR ``i``: ``sign (k w + offset)``."""
    c = tbin[i] * tofp[7] if tofp[9] != 0.0 else 0.0
    if tofp[10] != 0.0:
        c += toff[i]
    return c * tofp[8]


@njit(inline="always", **_JIT)
def _ends(first, last, lo, hi, qs_p, scale):
    """Plane offsets and slab weights (mm) ``(dm_f, w_f, dm_l, w_l)`` of the first and last
    samples: the partial slabs of the clipped segment ``[lo, hi]`` (principal voxel units)."""
    dm_f = 0.5 * (max(first - 0.5, lo) + min(first + 0.5, hi)) - qs_p
    w_f = max(min(first + 0.5, hi) - max(first - 0.5, lo), 0.0) * scale
    dm_l = 0.5 * (max(last - 0.5, lo) + min(last + 0.5, hi)) - qs_p
    w_l = max(min(last + 0.5, hi) - max(last - 0.5, lo), 0.0) * scale
    return dm_f, w_f, dm_l, w_l


@njit(**_JIT)
def _setup(i, xs, xe, shape, strides, vs, org, tbin, toff, tofp):
    """Per-LOR sampling plan (the torch path's ``_lor_parameters`` for one LOR).

    Clipping in world coordinates exactly as ``_box.clip_segment_to_box``. Returns ``count``
    (0: no sample), the first plane, the principal stride ``sp``, the transverse sizes/strides
    ``(n_a, sa, n_b, sb)``, the line ``q_a = qs_a + dm ra`` (same for b), ``qs_p``, ``scale`` (mm
    per plane), the two end samples ``(dm, w)``, the TOF ``gamma, delta``, the principal axis and
    the clipped segment ``[lo, hi]`` along it (principal voxel units).
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
        c = _centre(i, tbin, toff, tofp)
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
    dm_f, w_f, dm_l, w_l = _ends(first, last, lo, hi, qs[p], scale)
    gamma = delta = 0.0
    if tofp[0] != 0.0:
        gamma = (c + 0.5 * length) / tofp[2]
        delta = -length / (dp * tofp[2])
    return (count, int(first), strides[p], shape[a], strides[a], shape[b], strides[b], qs[a], d[a] / dp,
            qs[b], d[b] / dp, qs[p], scale, dm_f, w_f, dm_l, w_l, gamma, delta, p, lo, hi)


@njit(inline="always", **_JIT)
def _tof(w, dm, gamma, delta, tofp, table):
    """``w`` times the effective TOF kernel at plane offset ``dm`` (``u = gamma + dm delta``)."""
    u = gamma + dm * delta
    h, lim = tofp[3], tofp[4]
    return w * (_erf(min(max(u + h, -lim), lim), tofp, table) - _erf(min(max(u - h, -lim), lim), tofp, table)) \
        * tofp[5]


@njit(inline="always", **_JIT)
def _corner(plane, dm, sp, n_a, sa, qs_a, ra, n_b, sb, qs_b, rb):
    """Flat index of the lower corner, steps ``(da, db)`` to the others, fractions ``(fa, fb)``
    and the lower corner's index ``ia`` along axis a."""
    qa = min(max(qs_a + dm * ra, 0.0), n_a - 1.0)
    qb = min(max(qs_b + dm * rb, 0.0), n_b - 1.0)
    ia = int(qa)
    ib = int(qb)
    da = sa if ia < n_a - 1 else 0  # at the last voxel the fraction is 0: hold the edge value
    db = sb if ib < n_b - 1 else 0
    return plane * sp + ia * sa + ib * sb, da, db, qa - ia, qb - ib, ia


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
def _lor_samples(plan, j0, j1, tofp, table, ks, xi, steps, ws):
    """Phase 1 of samples ``j0 <= j < j1`` of a LOR (arithmetic only), stored at ``j - j0``:
    corner index ``ks``, x index of the corner ``xi``, corner steps ``steps = (da, db)`` and the
    four bilinear weights times the slab (and TOF) weight ``ws``.

    Kept apart from the memory phase so that the gathers/scatters of many samples are in flight
    at once (the projector is bound by memory latency).
    """
    (count, first, sp, n_a, sa, n_b, sb, qs_a, ra, qs_b, rb, qs_p, scale, dm_f, w_f, dm_l, w_l,
     gamma, delta, p, _lo, _hi) = plan
    use_tof = tofp[0] != 0.0
    for j in range(j0, j1):
        dm, w = _end_sample(j, plan)
        if use_tof:
            w = _tof(w, dm, gamma, delta, tofp, table)
        k, da, db, fa, fb, ia = _corner(first + j, dm, sp, n_a, sa, qs_a, ra, n_b, sb, qs_b, rb)
        s = j - j0
        ks[s] = k
        xi[s] = first + j if p == 0 else ia  # x is the principal axis (p = 0) or axis a (p = 1, 2)
        steps[s, 0] = da
        steps[s, 1] = db
        w1 = w * fb
        w0 = w - w1
        ws[s, 1] = w0 * fa
        ws[s, 0] = w0 - ws[s, 1]
        ws[s, 3] = w1 * fa
        ws[s, 2] = w1 - ws[s, 3]


@njit(inline="always", **_JIT)
def _slab_samples(plan, x0, x1, n_x):
    """``[j0, j1)``: a superset of the samples of a LOR that write voxels with x index in
    ``[x0, x1)`` (the writes themselves are checked one by one).

    Along the principal axis x the planes are the x indices; otherwise x is the transverse axis
    ``a``, linear and monotone in the sample index (``q_a = qs_a + (first + j - qs_p) ra``, end
    samples within half a plane), and a sample writes x indices ``floor(q_a)`` and the next one.
    """
    count, first, qs_a, ra, qs_p, p = plan[0], plan[1], plan[7], plan[8], plan[11], plan[19]
    if x0 <= 0 and x1 >= n_x:
        return 0, count
    if p == 0:
        return min(max(x0 - first, 0), count), min(max(x1 - first, 0), count)
    if ra == 0.0:
        return 0, count
    lo_q = -1e30 if x0 <= 0 else x0 - 1.0
    hi_q = 1e30 if x1 >= n_x else float(x1)
    t1 = (lo_q - qs_a) / ra - (first - qs_p)
    t2 = (hi_q - qs_a) / ra - (first - qs_p)
    j0 = max(min(math.floor(min(t1, t2)) - 1.0, float(count)), 0.0)
    j1 = max(min(math.ceil(max(t1, t2)) + 2.0, float(count)), 0.0)
    return int(j0), int(j1)


@njit(parallel=True, **_JIT)
def _forward_chunk(image, shape, strides, order, m, xs, xe, vs, org, tbin, toff, tofp, table, out):
    n_blocks = min(m, 64)
    size = max(shape[0], shape[1], shape[2]) + 1
    for t in prange(n_blocks):
        ks = np.empty(size, np.int64)
        xi = np.empty(size, np.int64)
        steps = np.empty((size, 2), np.int64)
        ws = np.empty((size, 4))
        for r in range(t * m // n_blocks, (t + 1) * m // n_blocks):
            i = order[r]
            plan = _setup(i, xs, xe, shape, strides, vs, org, tbin, toff, tofp)
            count = plan[0]
            _lor_samples(plan, 0, count, tofp, table, ks, xi, steps, ws)
            acc = 0.0
            for j in range(count):
                k, da, db = ks[j], steps[j, 0], steps[j, 1]
                acc += ws[j, 0] * image[k] + ws[j, 1] * image[k + da] + ws[j, 2] * image[k + db] \
                    + ws[j, 3] * image[k + da + db]
            out[i] = acc


@njit(inline="always", **_JIT)
def _add_samples(v, plan, j0, j1, x0, x1, tofp, table, ks, xi, steps, ws, out):
    """Add ``v`` times samples ``[j0, j1)`` of a LOR into the voxels with x index in ``[x0, x1)``."""
    _lor_samples(plan, j0, j1, tofp, table, ks, xi, steps, ws)
    if plan[19] == 0:  # principal axis x: the four corners lie in plane xi
        for s in range(j1 - j0):
            k, da, db, ix = ks[s], steps[s, 0], steps[s, 1], xi[s]
            if ix >= x0 and ix < x1:
                out[k] += v * ws[s, 0]
                out[k + da] += v * ws[s, 1]
                out[k + db] += v * ws[s, 2]
                out[k + da + db] += v * ws[s, 3]
    else:  # x is axis a: corners at xi and, unless at the last plane (weight 0 there), xi + 1
        for s in range(j1 - j0):
            k, da, db, ix = ks[s], steps[s, 0], steps[s, 1], xi[s]
            if ix >= x0 and ix < x1:
                out[k] += v * ws[s, 0]
                out[k + db] += v * ws[s, 2]
            if da != 0 and ix + 1 >= x0 and ix + 1 < x1:
                out[k + da] += v * ws[s, 1]
                out[k + da + db] += v * ws[s, 3]


@njit(**_JIT)
def _back_batch(values, shape, strides, order, m, xs, xe, vs, org, tbin, toff, tofp, table, out):
    """One thread: add the batch's LORs into ``out`` in order, each planned as it comes."""
    size = max(shape[0], shape[1], shape[2]) + 1
    ks = np.empty(size, np.int64)
    xi = np.empty(size, np.int64)
    steps = np.empty((size, 2), np.int64)
    ws = np.empty((size, 4))
    for r in range(m):
        i = order[r]
        v = values[i]
        if v != 0.0:
            plan = _setup(i, xs, xe, shape, strides, vs, org, tbin, toff, tofp)
            _add_samples(v, plan, 0, plan[0], 0, shape[0], tofp, table, ks, xi, steps, ws, out)


@njit(parallel=True, **_JIT)
def _plan_part(values, shape, strides, order, r0, r1, xs, xe, vs, org, tbin, toff, tofp, plans_i, plans_f):
    """Plans of the LORs ``order[r0:r1]`` (in parallel), stored compactly at ``r - r0``:
    ``plans_i = (count, first, p)`` (count 0 for a zero value) and ``plans_f = (qs_a, ra, qs_b,
    rb, qs_p, scale, lo, hi[, gamma, delta])`` (the TOF pair only when ``plans_f`` has 10
    columns); the rest of :func:`_setup`'s plan follows from these (:func:`_plan_at`)."""
    for r in prange(r0, r1):
        i = order[r]
        s = r - r0
        if values[i] == 0.0:
            plans_i[s, 0] = 0
            continue
        plan = _setup(i, xs, xe, shape, strides, vs, org, tbin, toff, tofp)
        plans_i[s, 0] = plan[0]
        plans_i[s, 1] = plan[1]
        plans_i[s, 2] = plan[19]
        (plans_f[s, 0], plans_f[s, 1], plans_f[s, 2], plans_f[s, 3], plans_f[s, 4], plans_f[s, 5]) = plan[7:13]
        plans_f[s, 6] = plan[20]
        plans_f[s, 7] = plan[21]
        if plans_f.shape[1] > 8:
            plans_f[s, 8] = plan[17]
            plans_f[s, 9] = plan[18]


@njit(inline="always", **_JIT)
def _plan_at(s, plans_i, plans_f, shape, strides):
    """The plan tuple of :func:`_setup` from its compact form (:func:`_plan_part`): the end
    samples are recomputed from ``lo, hi`` by :func:`_ends`, so it is the same bit for bit."""
    p = np.int64(plans_i[s, 2])
    a, b = (1, 2) if p == 0 else ((0, 2) if p == 1 else (0, 1))
    f = plans_f[s]
    count, first = np.int64(plans_i[s, 0]), np.int64(plans_i[s, 1])
    dm_f, w_f, dm_l, w_l = _ends(float(first), float(first + count - 1), f[6], f[7], f[4], f[5])
    gamma, delta = (f[8], f[9]) if plans_f.shape[1] > 8 else (0.0, 0.0)
    return (count, first, strides[p], shape[a], strides[a], shape[b], strides[b],
            f[0], f[1], f[2], f[3], f[4], f[5], dm_f, w_f, dm_l, w_l, gamma, delta, p, f[6], f[7])


@njit(**_JIT)
def _split_part(m, plans_i, plans_f, shape, strides, density, bounds):
    """``bounds`` (n_slabs + 1): x planes that split the part's samples into slabs of about equal
    count. A LOR's samples are spread evenly over the x indices it crosses (exact when x is its
    principal axis), accumulated as a difference array ``density`` (n_x + 1)."""
    n_x = shape[0]
    density[:] = 0.0
    for s in range(m):
        count = plans_i[s, 0]
        if count == 0:
            continue
        plan = _plan_at(s, plans_i, plans_f, shape, strides)
        if plan[19] == 0:
            lo, hi = plan[1], plan[1] + count - 1
        else:
            qa0 = min(max(plan[7] + plan[13] * plan[8], 0.0), n_x - 1.0)
            qa1 = min(max(plan[7] + plan[15] * plan[8], 0.0), n_x - 1.0)
            lo, hi = int(min(qa0, qa1)), int(max(qa0, qa1))
        w = count / (hi - lo + 1.0)
        density[lo] += w
        density[hi + 1] -= w
    level = total = 0.0
    for x in range(n_x):  # difference array -> samples per x plane, and their total
        level += density[x]
        density[x] = level
        total += level
    n_slabs = bounds.shape[0] - 1
    bounds[0] = 0
    acc, t = 0.0, 1
    for x in range(n_x):
        acc += density[x]
        while t < n_slabs and acc >= total * t / n_slabs:
            bounds[t] = x + 1
            t += 1
    while t < n_slabs:
        bounds[t] = n_x
        t += 1
    bounds[n_slabs] = n_x


@njit(parallel=True, **_JIT)
def _back_part(values, shape, strides, order, r0, r1, tofp, table, plans_i, plans_f, bounds, out):
    """Slab ``t`` of ``bounds`` per thread: add the part's LORs, in order, into its x planes."""
    size = max(shape[0], shape[1], shape[2]) + 1
    for t in prange(bounds.shape[0] - 1):
        x0, x1 = bounds[t], bounds[t + 1]
        if x1 <= x0:
            continue
        ks = np.empty(size, np.int64)
        xi = np.empty(size, np.int64)
        steps = np.empty((size, 2), np.int64)
        ws = np.empty((size, 4))
        for r in range(r0, r1):
            s = r - r0
            if plans_i[s, 0] == 0:
                continue
            plan = _plan_at(s, plans_i, plans_f, shape, strides)
            j0, j1 = _slab_samples(plan, x0, x1, shape[0])
            if j1 > j0:
                _add_samples(values[order[r]], plan, j0, j1, x0, x1, tofp, table, ks, xi, steps, ws, out)


#: LORs per part of the multi-threaded back projection (plans shared by the slab threads:
#: 76 B per LOR, 92 B with TOF: 0.30-0.36 MB).
PART = 4096
def _strides(shape) -> np.ndarray:
    return np.array([shape[1] * shape[2], shape[2], 1], dtype=np.int64)


def forward(image, shape, xs, xe, vs, org, tbin, toff, tofp, table, out):
    """``out[i] = sum_samples w * bilinear(image)`` for every LOR ``i`` (parallel over LORs).

    ``image`` is the flat C-ordered ``(nx, ny, nz)`` image; ``shape`` int64 (3,); ``vs``/``org``
    float64 (3,), mm; ``xs``/``xe`` (n, 3) mm; ``tbin``/``toff`` (n,) TOF bin indices / offsets
    (mm) or length-1 dummies (see :func:`tof_constants`); ``out`` (n,) is overwritten. LORs are
    processed in batches in locality order (see :func:`~refsuite.projectors._locality.batches`).
    """
    strides = _strides(shape)
    for order, m in batches(shape, xs, xe, vs, org, numba.get_num_threads()):
        _forward_chunk(image, shape, strides, order, m, xs, xe, vs, org, tbin, toff, tofp, table, out)


def back(values, shape, xs, xe, vs, org, tbin, toff, tofp, table, out, n_slabs):
    """Adjoint of :func:`forward`: ``out += A^T values`` (flat image, zeroed by the caller).

    No global scatter and no private images. One slab: the LORs are planned and added one by
    one. ``n_slabs`` > 1 threads: each batch is cut into parts of :data:`PART` LORs; the plans of
    a part are computed once, in parallel (:func:`_plan_part`, 76-92 B per LOR), the x planes are
    split into ``n_slabs`` slabs of about equal sample count for that part (:func:`_split_part`),
    and each thread adds the part's LORs, in order, into its own slab. Each voxel therefore
    receives its terms in the same order whatever the number of slabs and wherever the splits
    fall: the result is identical (bit for bit) for any thread count.
    """
    strides = _strides(shape)
    n_slabs = max(1, min(int(n_slabs), int(shape[0])))
    if n_slabs == 1:
        for order, m in batches(shape, xs, xe, vs, org, numba.get_num_threads()):
            _back_batch(values, shape, strides, order, m, xs, xe, vs, org, tbin, toff, tofp, table, out)
        return
    plans_i = np.empty((PART, 3), np.int32)
    plans_f = np.empty((PART, 10 if tofp[0] != 0.0 else 8))
    density = np.empty(int(shape[0]) + 1)
    bounds = np.empty(n_slabs + 1, np.int64)
    for order, m in batches(shape, xs, xe, vs, org, numba.get_num_threads()):
        for r0 in range(0, m, PART):
            r1 = min(m, r0 + PART)
            _plan_part(values, shape, strides, order, r0, r1, xs, xe, vs, org, tbin, toff, tofp, plans_i, plans_f)
            _split_part(r1 - r0, plans_i, plans_f, shape, strides, density, bounds)
            _back_part(values, shape, strides, order, r0, r1, tofp, table, plans_i, plans_f, bounds, out)


@njit(parallel=True, **_JIT)
def _count_samples(shape, xs, xe, vs, org, tbin, toff, tofp):
    strides = np.array([shape[1] * shape[2], shape[2], 1], dtype=np.int64)
    total = 0
    for i in prange(xs.shape[0]):
        total += _setup(i, xs, xe, shape, strides, vs, org, tbin, toff, tofp)[0]
    return total


def sample_count(shape, xs, xe, vs, org, tbin, toff, tofp, table=None) -> int:
    """Number of Joseph samples (planes visited) of all LORs: each reads (forward) or writes
    (back) 4 voxels. Same arguments as :func:`forward` (``table`` unused)."""
    return int(_count_samples(np.asarray(shape, np.int64), xs, xe, vs, org, tbin, toff, tofp))
