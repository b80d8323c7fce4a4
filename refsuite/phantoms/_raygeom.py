"""Exact ray / segment intersections with spheres, boxes and z-aligned cylinders.

All functions are vectorised over rays: ``origin`` (n, 3) and ``direction`` (n, 3) (not
necessarily unit) define ``x(t) = origin + t * direction``; they return the parameter
interval ``(t_in, t_out)`` of the intersection with each shape (n, K) for K shapes, with
``t_in >= t_out`` meaning no intersection.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

_INF = np.inf


def sphere_interval(origin, direction, centres, radius):
    """Intervals of rays (n, 3) with spheres ``centres`` (K, 3) of ``radius`` (K,) mm."""
    o = origin[:, None, :] - centres[None]
    d = direction[:, None, :]
    a = np.sum(d * d, -1)
    b = np.sum(o * d, -1)
    c = np.sum(o * o, -1) - np.asarray(radius, float) ** 2
    disc = b * b - a * c
    s = np.sqrt(np.maximum(disc, 0.0))
    t0, t1 = (-b - s) / a, (-b + s) / a
    miss = disc <= 0
    return np.where(miss, 0.0, t0), np.where(miss, 0.0, t1)


def box_interval(origin, direction, lower, upper):
    """Intervals of rays (n, 3) with axis-aligned boxes ``lower``/``upper`` (K, 3) (slab method)."""
    o = origin[:, None, :]
    d = direction[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        ta = (lower[None] - o) * inv
        tb = (upper[None] - o) * inv
    # a ray parallel to a slab is inside it for all t or for none
    par = d == 0
    inside = (o >= lower[None]) & (o <= upper[None])
    lo = np.where(par, np.where(inside, -_INF, _INF), np.minimum(ta, tb))
    hi = np.where(par, np.where(inside, _INF, -_INF), np.maximum(ta, tb))
    return lo.max(-1), hi.min(-1)


def cylinder_interval(origin, direction, centres_xy, radius, z_min, z_max):
    """Intervals of rays (n, 3) with z-aligned cylinders (K,): axis at ``centres_xy`` (K, 2)."""
    ox = origin[:, None, 0] - centres_xy[None, :, 0]
    oy = origin[:, None, 1] - centres_xy[None, :, 1]
    dx, dy = direction[:, None, 0], direction[:, None, 1]
    a = dx * dx + dy * dy
    b = ox * dx + oy * dy
    c = ox * ox + oy * oy - np.asarray(radius, float) ** 2
    disc = b * b - a * c
    s = np.sqrt(np.maximum(disc, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        t0 = np.where(a > 0, (-b - s) / a, np.where(c < 0, -_INF, _INF))
        t1 = np.where(a > 0, (-b + s) / a, np.where(c < 0, _INF, -_INF))
    miss = (a > 0) & (disc <= 0)
    t0 = np.where(miss, _INF, t0)
    t1 = np.where(miss, -_INF, t1)
    zlo, zhi = box_interval(origin[:, 2:3], direction[:, 2:3], np.atleast_1d(z_min)[:, None] * np.ones((1, 1)),
                            np.atleast_1d(z_max)[:, None] * np.ones((1, 1)))
    return np.maximum(t0, zlo), np.minimum(t1, zhi)


def clip_length(t_in, t_out, t_min=0.0, t_max=_INF):
    """Length (in t units) of ``[t_in, t_out]`` clipped to ``[t_min, t_max]``, >= 0."""
    return np.maximum(np.minimum(t_out, t_max) - np.maximum(t_in, t_min), 0.0)


def segment_weights(start, end, t_in, t_out, tof_sigma_mm=None, tof_centre_mm=0.0):
    """Integral of the LOR kernel over ``[t_in, t_out]`` (clipped to the segment), mm.

    Without TOF: the chord length (mm). With TOF: the integral of a unit-area Gaussian of
    standard deviation ``tof_sigma_mm`` centred ``tof_centre_mm`` from the segment midpoint
    (positive towards ``end``) over the chord (dimensionless).
    """
    length = np.linalg.norm(end - start, axis=-1)[:, None]
    a = np.clip(t_in, 0.0, 1.0)
    b = np.clip(t_out, 0.0, 1.0)
    b = np.maximum(a, b)
    if tof_sigma_mm is None:
        return (b - a) * length
    sig = np.asarray(tof_sigma_mm, float)
    c = np.broadcast_to(np.asarray(tof_centre_mm, float), length.shape[:1])[:, None]
    la, lb = (a - 0.5) * length - c, (b - 0.5) * length - c
    return 0.5 * (erf(lb / (np.sqrt(2) * sig)) - erf(la / (np.sqrt(2) * sig)))


def forward_box_lengths(origin, direction, centres, half):
    """Total forward path (t >= 0) of rays through cubes of half-edge ``half`` at ``centres``.

    ``direction`` must be unit vectors (result in mm). Equivalent to summing
    :func:`box_interval` over all cubes, but only rays passing within a cube's circumsphere
    are tested exactly (culling with one matrix product), which keeps many small cubes cheap.
    """
    c = np.asarray(centres, float)
    rho = np.sqrt(3.0) * half * (1 + 1e-9) + 1e-9
    # broadcasting, not a K = 3 matrix product: BLAS threads stall on a shared machine
    rx, ry, rz = (c[None, :, k] - origin[:, k:k + 1] for k in range(3))
    tc = rx * direction[:, 0:1] + ry * direction[:, 1:2] + rz * direction[:, 2:3]
    d2 = rx * rx + ry * ry + rz * rz - tc * tc
    i, k = np.nonzero((d2 <= rho * rho + 1e-6) & (tc >= -rho))
    t_in = np.zeros(len(i))
    t_out = np.full(len(i), np.inf)
    for ax in range(3):
        dd = direction[i, ax]
        inv = 1.0 / np.where(dd == 0.0, 1e-300, dd)
        mid = (c[k, ax] - origin[i, ax]) * inv
        hw = half * np.abs(inv)
        np.maximum(t_in, mid - hw, out=t_in)
        np.minimum(t_out, mid + hw, out=t_out)
    return np.bincount(i, weights=np.maximum(t_out - t_in, 0.0), minlength=origin.shape[0])
