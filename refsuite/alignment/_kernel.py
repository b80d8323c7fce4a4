"""Fused CPU kernel of the alignment's expected counts and their gradient with respect to the poses.

One pass per line (a crystal pair of an event or a support entry) computes, for each of its
``S`` sampled point pairs, the points inside the two crystals under the current block poses
(:func:`refsuite.alignment.objective._points`: uniform in the planar coordinates, depth from
``exp(-mu t)``), the Gaussian-blob line integral of each candidate blob (non-TOF, or the
untruncated TOF closed form, :func:`refsuite.projectors.blob_line_integrals` with
``truncate=False``), the pair-sensitivity weight ``(L_ref / L)^2``, and their mean over the
samples. The torch path builds (lines x candidates x samples) temporaries for the same and lets
autograd keep them for the backward pass (a tube's 60 candidates per event made that ~17 GB at
the full plan's batch). Here, when a gradient is needed, the same pass also writes each line's
analytic gradient with respect to the position and axes of its two blocks (24 numbers per line);
the backward pass only weights them by the incoming gradient and sums them per block (per-chunk
partial sums over a fixed number of chunks, reduced in order: the same bits for any thread count).

Derivatives (line ``p1 -> p2``, ``L = |p2 - p1|``, ``e = (p2 - p1) / L``, blob centre ``c``,
``w = c - p1``, ``s0 = w . e``, ``q = w - s0 e``, ``d^2 = |q|^2``)::

    dL/dp1 = -e                 dL/dp2 = e
    ds0/dp1 = -e - q / L        ds0/dp2 = q / L
    dd2/dp1 = -2 q (1 - s0/L)   dd2/dp2 = -2 q s0 / L

and a point ``p = P_b + sum_i l_i A_b[i]`` (block position ``P_b``, axes rows ``A_b[i]``, local
coordinates ``l``) passes ``dF/dp`` to ``dF/dP_b`` and ``l_i dF/dp`` to ``dF/dA_b[i]``. The
kernel is tested against the torch path (values and pose gradients, float64 and float32) in
``tests/test_alignment_kernel.py``.

numba is imported with this module (by :func:`refsuite.alignment.objective` on first use);
compiled code is cached on disk (``cache=True``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange

from refsuite._threads import numba_threads, use_numba_workqueue

use_numba_workqueue()

__all__ = ["expected_counts", "expected_with_jacobian"]

_JIT = dict(cache=True, nogil=True, error_model="numpy")
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)
#: Chunks of lines whose pose gradients are summed separately, then reduced in order.
_N_CHUNKS = 64


@njit(inline="always", **_JIT)
def _local(u, c, h, mu):
    """Local coordinates (block frame, mm) of a point drawn with uniforms ``u`` (3,) in a crystal
    voxel of centre ``c`` and half size ``h``; depth (local y) from ``exp(-mu t)`` when mu > 0."""
    lx = c[0] + (2.0 * u[0] - 1.0) * h[0]
    if mu > 0.0:
        q = -math.expm1(-2.0 * mu * h[1])
        ly = c[1] - math.log1p(-u[1] * q) / mu - h[1]
    else:
        ly = c[1] + (2.0 * u[1] - 1.0) * h[1]
    lz = c[2] + (2.0 * u[2] - 1.0) * h[2]
    return lx, ly, lz


@njit(inline="always", **_JIT)
def _world(pos, axes, b, lx, ly, lz):
    return (pos[b, 0] + lx * axes[b, 0, 0] + ly * axes[b, 1, 0] + lz * axes[b, 2, 0],
            pos[b, 1] + lx * axes[b, 0, 1] + ly * axes[b, 1, 1] + lz * axes[b, 2, 1],
            pos[b, 2] + lx * axes[b, 0, 2] + ly * axes[b, 1, 2] + lz * axes[b, 2, 2])


@njit(inline="always", **_JIT)
def _phi(x):
    return 0.5 * (1.0 + math.erf(x * _INV_SQRT2))


@njit(inline="always", **_JIT)
def _pdf(x):
    return _INV_SQRT2PI * math.exp(-0.5 * x * x)


@njit(inline="always", **_JIT)
def _line(ax, ay, az, bx, by, bz, c, sig, act, tofp, tc, lref2, grad):
    """Weighted blob line integral of the line a -> b and, with ``grad``, its gradient with
    respect to a and b: ``(value, da_x, da_y, da_z, db_x, db_y, db_z)``.

    ``tofp = [use_tof, half bin width, sigma_tof, inverse_square]``; ``tc`` the signed bin centre
    (mm from the midpoint, towards b)."""
    dx, dy, dz = bx - ax, by - ay, bz - az
    length = math.sqrt(dx * dx + dy * dy + dz * dz)
    ex, ey, ez = dx / length, dy / length, dz / length
    wx, wy, wz = c[0] - ax, c[1] - ay, c[2] - az
    s0 = wx * ex + wy * ey + wz * ez
    d2 = wx * wx + wy * wy + wz * wz - s0 * s0
    clamped = d2 < 0.0
    if clamped:
        d2 = 0.0
    trans = act / (2.0 * math.pi * sig * sig) * math.exp(-d2 / (2.0 * sig * sig))
    if tofp[0] != 0.0:
        big = math.sqrt(sig * sig + tofp[2] * tofp[2])
        s_mid = s0 - 0.5 * length
        hi, lo = (tc + tofp[1] - s_mid) / big, (tc - tofp[1] - s_mid) / big
    else:
        big = sig
        hi, lo = (length - s0) / sig, -s0 / sig
    g = _phi(hi) - _phi(lo)
    wis = lref2 / (length * length) if tofp[3] != 0.0 else 1.0
    value = trans * g * wis
    if not grad or value == 0.0:
        return value, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    qx, qy, qz = wx - s0 * ex, wy - s0 * ey, wz - s0 * ez
    # dvalue = wis trans (g (-dd2 / (2 sig^2)) + dg) + trans g dwis, per end point
    if tofp[0] != 0.0:
        k_s0 = (_pdf(lo) - _pdf(hi)) / big  # dg = k_s0 (ds0 - dL / 2)
        k_len = -0.5 * k_s0
    else:
        k_s0, k_len = (_pdf(lo) - _pdf(hi)) / sig, _pdf(hi) / sig  # dg = k_s0 ds0 + k_len dL
    k_d2 = 0.0 if clamped else -g / (2.0 * sig * sig)
    k_wis = -2.0 * wis / length if tofp[3] != 0.0 else 0.0  # dwis = k_wis dL
    cs0, clen, cd2 = trans * wis * k_s0, trans * (wis * k_len + g * k_wis), trans * wis * k_d2
    # end point a: dL = -e, ds0 = -e - q/L, dd2 = -2 q (1 - s0/L); b: dL = e, ds0 = q/L, dd2 = -2 q s0/L
    ca_e, ca_q = -cs0 - clen, -cs0 / length - 2.0 * cd2 * (1.0 - s0 / length)
    cb_q = cs0 / length - 2.0 * cd2 * s0 / length
    return (value, ca_e * ex + ca_q * qx, ca_e * ey + ca_q * qy, ca_e * ez + ca_q * qz,
            clen * ex + cb_q * qx, clen * ey + cb_q * qy, clen * ez + cb_q * qz)


@njit(inline="always", **_JIT)
def _one_line(i, cr, ua, ub, ptr, blob, centres, sigmas, acts, tc, tofp, lut_c, lut_h, mu, pos, axes, m, lref2,
              grad, jac):
    """Mean over the samples of line ``i``'s summed candidate integrals; with ``grad``, its
    gradient with respect to the poses of its two blocks in ``jac[i]`` (2, 12): per end point
    ``[dF/dP (3), dF/dA[0] (3), dF/dA[1] (3), dF/dA[2] (3)]``."""
    b1, b2 = cr[i, 0] // m, cr[i, 1] // m
    c1, c2 = cr[i, 0] % m, cr[i, 1] % m
    n_s = ua.shape[1]
    acc = 0.0
    if grad:
        jac[i, :, :] = 0.0
    for s in range(n_s):
        l1 = _local(ua[i, s], lut_c[c1], lut_h[c1], mu)
        l2 = _local(ub[i, s], lut_c[c2], lut_h[c2], mu)
        ax, ay, az = _world(pos, axes, b1, l1[0], l1[1], l1[2])
        bx, by, bz = _world(pos, axes, b2, l2[0], l2[1], l2[2])
        g1x = g1y = g1z = g2x = g2y = g2z = 0.0
        for k in range(ptr[i], ptr[i + 1]):
            j = blob[k]
            v = _line(ax, ay, az, bx, by, bz, centres[j], sigmas[j], acts[j], tofp, tc[i], lref2, grad)
            acc += v[0]
            g1x += v[1]
            g1y += v[2]
            g1z += v[3]
            g2x += v[4]
            g2y += v[5]
            g2z += v[6]
        if grad:
            for r in range(4):  # r = 0: the position, r = 1..3: axis row r - 1 (times the local coordinate)
                f1 = 1.0 if r == 0 else l1[r - 1]
                f2 = 1.0 if r == 0 else l2[r - 1]
                jac[i, 0, 3 * r] += f1 * g1x
                jac[i, 0, 3 * r + 1] += f1 * g1y
                jac[i, 0, 3 * r + 2] += f1 * g1z
                jac[i, 1, 3 * r] += f2 * g2x
                jac[i, 1, 3 * r + 1] += f2 * g2y
                jac[i, 1, 3 * r + 2] += f2 * g2z
    if grad:
        jac[i, :, :] /= n_s
    return acc / n_s


@njit(parallel=True, **_JIT)
def _forward(cr, ua, ub, ptr, blob, centres, sigmas, acts, tc, tofp, lut_c, lut_h, mu, pos, axes, m, lref2, grad,
             out, jac):
    """``out`` (n,) the lines' expectations; with ``grad``, ``jac`` (n, 2, 12) their pose gradients."""
    for i in prange(cr.shape[0]):
        out[i] = _one_line(i, cr, ua, ub, ptr, blob, centres, sigmas, acts, tc, tofp, lut_c, lut_h, mu, pos, axes, m,
                           lref2, grad, jac)


@njit(parallel=True, **_JIT)
def _scatter(cr, m, jac, gout, part):
    """``part`` (C, N, 12): per chunk of lines (C chunks), ``sum_i gout_i jac[i, end]`` into each
    end point's block."""
    n = cr.shape[0]
    n_chunks = part.shape[0]
    for ch in prange(n_chunks):
        for i in range(ch * n // n_chunks, (ch + 1) * n // n_chunks):
            g = gout[i]
            if g != 0.0:
                for e in range(2):
                    b = cr[i, e] // m
                    for r in range(12):
                        part[ch, b, r] += g * jac[i, e, r]


def _np(t, dtype=np.float64):
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=dtype)


class _Expected(torch.autograd.Function):
    """Expected line integrals (n,) differentiable in the block positions (N, 3) and axes (N, 3, 3).

    The forward pass also computes each line's pose gradient (24 numbers per line) when a
    gradient is needed; the backward pass only weights and sums them per block."""

    @staticmethod
    def forward(ctx, pos, axes, args, grad):
        out, jac = _run(args, pos, axes, grad)
        ctx.cr, ctx.m, ctx.jac, ctx.n_blocks = args[0], args[13], jac, pos.shape[0]
        return torch.from_numpy(out).to(pos.dtype)

    @staticmethod
    def backward(ctx, gout):
        part = np.zeros((min(_N_CHUNKS, max(1, ctx.cr.shape[0])), ctx.n_blocks, 12))
        with numba_threads():
            _scatter(ctx.cr, ctx.m, ctx.jac, _np(gout), part)
        g = torch.from_numpy(part.sum(0)).to(gout.dtype)
        return g[:, :3], g[:, 3:].reshape(-1, 3, 3), None, None


def _run(args, pos, axes, grad):
    """``(values (n,), jac)`` of :func:`_forward` on ``args`` (:func:`_args`) at the poses; ``jac``
    (n, 2, 12) with ``grad``, else a (1, 2, 12) dummy."""
    n = args[0].shape[0]
    out, jac = np.empty(n), np.empty((n, 2, 12) if grad else (1, 2, 12))
    with numba_threads():
        _forward(*args[:13], _np(pos), _np(axes), *args[13:], grad, out, jac)
    return out, jac


def _args(problem, cr, row, blob, tof_bin, ua, ub):
    """The kernels' arguments other than the poses (numpy; see :func:`expected_counts`)."""
    n = cr.shape[0]
    counts = torch.bincount(row, minlength=n) if row.numel() else torch.zeros(n, dtype=torch.int64)
    ptr = np.zeros(n + 1, np.int64)
    np.cumsum(counts.numpy(), out=ptr[1:])
    if tof_bin is None:
        tofp = np.array([0.0, 0.0, 0.0, float(problem.inverse_square)])
        tc = np.zeros(n)
    else:
        tof = problem.tof
        tofp = np.array([1.0, 0.5 * tof.bin_width_mm, tof.sigma_mm, float(problem.inverse_square)])
        tc = _np(tof_bin) * tof.bin_width_mm * float(tof.sign.value)
    return (_np(cr, np.int64), _np(ua, ua.numpy().dtype), _np(ub, ub.numpy().dtype), ptr, _np(blob, np.int64),
            _np(problem.centres), _np(problem.sigmas), _np(problem.activities), tc, tofp, _np(problem.lut_centres),
            _np(problem.lut_half), float(problem.depth_mu), int(problem.lut_centres.shape[0]),
            float(problem.length_ref) ** 2)


def expected_counts(problem, cr, row, blob, tof_bin, poses, ua, ub):
    """The kernel's form of ``objective._expected`` (same arguments, the uniforms ``ua``, ``ub``
    (n, S, 3) of the two crystals drawn by the caller): (n,) in the poses' dtype, differentiable
    in the poses (positions (N, 3), axes (N, 3, 3))."""
    grad = torch.is_grad_enabled() and (poses[0].requires_grad or poses[1].requires_grad)
    return _Expected.apply(*poses, _args(problem, cr, row, blob, tof_bin, ua, ub), grad)


def expected_with_jacobian(problem, cr, row, blob, tof_bin, poses, ua, ub):
    """As :func:`expected_counts`, not differentiable, with each line's pose gradient:
    ``(values (n,), jac (n, 2, 12))`` float64 numpy, ``jac[i, e]`` for the block of end point ``e``
    (single 1, 2) = ``[dF/dP (3), dF/dA[0] (3), dF/dA[1] (3), dF/dA[2] (3)]`` (position, axis rows)."""
    return _run(_args(problem, cr, row, blob, tof_bin, ua, ub), *poses, True)
