"""Locality order of list-mode LORs for the compiled Joseph kernels (:mod:`._joseph_numba`).

A list-mode projection reads (forward) or adds to (back) about two cache lines of the image per
sample, in an order set by the LORs. Consecutive LORs of similar direction and position reuse
cached image lines, so on an image that does not fit the caches the kernels process the LORs in
the order of a global stable sort by a coarse locality key (principal axis, direction bins,
crossing of the central plane), streamed in batches with O(batch) memory (:func:`batches`).
Small images stay in the caches: their LORs are processed in input order.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from refsuite._threads import use_numba_workqueue

use_numba_workqueue()  # launches go through refsuite._threads.numba_threads (one at a time)

__all__ = ["batches"]

_JIT = dict(cache=True, nogil=True, error_model="numpy")

#: Bins per transverse slope (``d_a / d_p`` in [-1, 1]) and size (voxels) of the position bins
#: of :func:`_locality_key` (measured best of a few on the BENCHMARKS.md workload).
SLOPE_BINS = 4
POSITION_BIN_VOXELS = 16

@njit(inline="always", **_JIT)
def _principal(i, xs, xe, ivs):
    """Principal axis of LOR ``i`` (first largest ``|d|`` in voxel units, as :func:`_setup`) and
    the direction ``d`` (voxel units)."""
    d0 = (xe[i, 0] - xs[i, 0]) * ivs[0]
    d1 = (xe[i, 1] - xs[i, 1]) * ivs[1]
    d2 = (xe[i, 2] - xs[i, 2]) * ivs[2]
    a0, a1 = abs(d0), abs(d1)
    p = 2 if abs(d2) > max(a0, a1) else (1 if a1 > a0 else 0)
    return p, d0, d1, d2


@njit(inline="always", **_JIT)
def _locality_key(i, shape, xs, xe, ivs, org, n_slope, pos_bin, n_pos):
    """Bin of LOR ``i``: principal axis, coarse direction (``n_slope`` bins per transverse slope)
    and where it crosses the image's central plane (bins of ``pos_bin`` voxels, ``n_pos`` per axis).
    ``ivs``: inverse voxel sizes (1/mm)."""
    p, d0, d1, d2 = _principal(i, xs, xe, ivs)
    a, b = (1, 2) if p == 0 else ((0, 2) if p == 1 else (0, 1))
    d = (d0, d1, d2)
    dp = d[p]
    inv = 1.0 / dp if dp != 0.0 else 0.0
    # crossing of the central plane, from the midpoint
    t = (0.5 * (shape[p] - 1) - ((0.5 * (xs[i, p] + xe[i, p]) - org[p]) * ivs[p])) * inv
    key = p
    for ax in (a, b):
        key = key * n_slope + min(max(int((d[ax] * inv + 1.0) * 0.5 * n_slope), 0), n_slope - 1)
    for ax in (a, b):
        pos = ((0.5 * (xs[i, ax] + xe[i, ax]) - org[ax]) * ivs[ax] + t * d[ax]) / pos_bin + 2.0
        key = key * n_pos + min(max(int(pos), 0), n_pos - 1)
    return key


@njit(**_JIT)
def _fill_range(order, c0, m):
    """``order[:m] = c0, c0 + 1, ...`` in place (no temporary of the batch's size)."""
    for r in range(m):
        order[r] = c0 + r


def _n_keys(shape) -> tuple[int, int]:
    """``(n_pos, n_keys)`` of :func:`_locality_key` for an image shape."""
    n_pos = (max(shape) + 4 * POSITION_BIN_VOXELS) // POSITION_BIN_VOXELS + 1
    return n_pos, 3 * SLOPE_BINS**2 * n_pos**2


@njit(parallel=True, **_JIT)
def _histogram(shape, xs, xe, vs, org, n_slope, pos_bin, n_pos, bounds, counts):
    """``counts[t, key]``: the number of LORs of part ``t`` (``bounds[t] <= i < bounds[t + 1]``)
    in each locality bin."""
    counts[:] = 0
    for t in prange(counts.shape[0]):
        for i in range(bounds[t], bounds[t + 1]):
            counts[t, _locality_key(i, shape, xs, xe, vs, org, n_slope, pos_bin, n_pos)] += 1


@njit(parallel=True, **_JIT)
def _collect(k0, k1, r_lo, cap, shape, xs, xe, vs, org, n_slope, pos_bin, n_pos, bounds, counts, offsets, order):
    """``order[:m]``: the LORs with a key in ``[k0, k1)`` whose rank in that group (sorted by key,
    then index) lies in ``[r_lo, r_lo + cap)``. Parts of the LOR range are scanned in parallel,
    each from its own offsets, so the order does not depend on the number of parts. Returns ``m``."""
    n_parts = counts.shape[0]
    acc = 0
    for k in range(k0, k1):
        for t in range(n_parts):
            offsets[t, k] = acc
            acc += counts[t, k]
    per_axis = n_slope * n_slope * n_pos * n_pos  # keys per principal axis (the leading part of the key)
    p_lo, p_hi = k0 // per_axis, (k1 - 1) // per_axis
    for t in prange(n_parts):
        for i in range(bounds[t], bounds[t + 1]):
            if p_lo == p_hi and _principal(i, xs, xe, vs)[0] != p_lo:  # quick reject by principal axis
                continue
            key = _locality_key(i, shape, xs, xe, vs, org, n_slope, pos_bin, n_pos)
            if key >= k0 and key < k1:
                r = offsets[t, key]
                offsets[t, key] = r + 1
                if r >= r_lo and r < r_lo + cap:
                    order[r - r_lo] = i
    return min(acc - r_lo, cap)


#: LORs per batch (at least; at most :data:`MAX_SCANS` batches): memory is O(batch), not O(n_lor).
CHUNK = 1 << 16
MAX_SCANS = 32
#: LORs per batch in input order (small images): no scans to amortise, so only the launches
#: (~85 us each with numba's workqueue here) bound it from below.
INPUT_ORDER_BATCH = 1 << 14
#: Smallest image (voxels) for which the LORs are sorted by locality: a smaller image stays in
#: the L2/L3 caches and the sort's scans cost more than they gain (measured on the BENCHMARKS.md
#: workload: 128x128x32 15 % faster unsorted, 200^3 1.4x faster sorted).
SORT_MIN_VOXELS = 1 << 21


def batches(shape, xs, xe, vs, org, n_parts):
    """Yield ``(order, m)``: batches of at most ``cap`` LORs in locality order, O(cap) memory.

    A histogram of the locality keys cuts the key range into groups of at most ``cap`` LORs; each
    group is collected by a scan that recomputes the keys (a few ns per LOR, about ``n / cap``
    scans, ``n_parts`` threads) and comes out sorted by key. So the LORs are processed in the
    order of a global stable sort by key, without an O(n) permutation array (a global sort was
    1.4x faster than sorting fixed chunks of 65536 LORs on the BENCHMARKS.md workload:
    consecutive LORs reuse cached image lines). Images below :data:`SORT_MIN_VOXELS`: batches of
    :data:`INPUT_ORDER_BATCH` LORs in input order.
    """
    n = xs.shape[0]
    if n >= 2**31:
        raise ValueError(f"at most 2**31 - 1 LORs per call, got {n}")
    cap = max(1, min(n, max(CHUNK, -(-n // MAX_SCANS))))
    if int(np.prod(shape)) < SORT_MIN_VOXELS:  # the image stays in the caches: input order
        cap = max(1, min(n, INPUT_ORDER_BATCH))
        order = np.empty(cap, np.int32)
        for c0 in range(0, n, cap):
            m = min(cap, n - c0)
            _fill_range(order, c0, m)
            yield order, m
        return
    order = np.empty(cap, np.int32)
    n_pos, n_keys = _n_keys(tuple(int(s) for s in shape))
    key_args = (shape, xs, xe, 1.0 / vs, org, SLOPE_BINS, POSITION_BIN_VOXELS, n_pos)
    bounds = np.linspace(0, n, n_parts + 1).astype(np.int64)
    counts = np.empty((n_parts, n_keys), np.int32)  # < 2**31 LORs per call
    _histogram(*key_args, bounds, counts)
    total = counts.sum(axis=0, dtype=np.int32)
    offsets = np.zeros((n_parts, n_keys), np.int32)
    k0 = 0
    while k0 < n_keys:
        k1, size = k0, 0
        while k1 < n_keys and size + total[k1] <= cap:
            size += total[k1]
            k1 += 1
        if k1 == k0:  # one bin holds more than cap LORs: several batches of it
            k1 = k0 + 1
            for r_lo in range(0, int(total[k0]), cap):
                yield order, _collect(k0, k1, r_lo, cap, *key_args, bounds, counts, offsets, order)
        elif size:
            yield order, _collect(k0, k1, 0, cap, *key_args, bounds, counts, offsets, order)
        k0 = k1
