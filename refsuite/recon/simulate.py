"""Seeded list-mode data of an ideal cylindrical detector (no scatter, perfect detection).

Used to validate the reconstruction independently of the detector-block geometry: emissions are
drawn from a phantom, given isotropic directions and detected where both photons hit the
cylinder ``r = R``, ``|z| <= H``; the matching sensitivity LORs are drawn from the uniform
(isotropic) line measure, so both sides of the EM equation see the same system model. Truths
(emission points) are returned next to the events.
"""

from __future__ import annotations

import math

import numpy as np

from refsuite._checks import check_positive
from refsuite.projectors.tof import TOFParameters

__all__ = ["cylinder_intersections", "ideal_cylinder_events", "ideal_cylinder_lors", "isotropic_lines"]


def _isotropic(n, rng):
    u = rng.normal(size=(n, 3))
    return u / np.linalg.norm(u, axis=1, keepdims=True)


def isotropic_lines(n: int, *, radius_mm: float, rng: np.random.Generator, centre_mm=(0.0, 0.0, 0.0)):
    """``n`` lines of the isotropic line measure restricted to the ball of radius ``radius_mm``.

    Each line gets an isotropic direction ``u`` and a foot point uniform on the disc of radius
    ``radius_mm`` through ``centre_mm`` perpendicular to ``u``: every line meeting the ball is
    drawn with its measure, so a line back-projected with the weight ``pi r^2 / n`` estimates
    the chord-length density (detection probability per unit volume, times the voxel volume).

    Returns
    -------
    foot : ndarray (n, 3), mm
    u : ndarray (n, 3), unit directions
    """
    u = _isotropic(int(n), rng)
    # orthonormal basis of the plane perpendicular to u
    helper = np.where(np.abs(u[:, :1]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))
    e1 = np.cross(u, helper)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(u, e1)
    rad = radius_mm * np.sqrt(rng.random(int(n)))
    ang = rng.uniform(0, 2 * np.pi, int(n))
    foot = np.asarray(centre_mm, float) + e1 * (rad * np.cos(ang))[:, None] + e2 * (rad * np.sin(ang))[:, None]
    return foot, u


def cylinder_intersections(points, directions, *, radius_mm):
    """Both intersections ``p + t u`` (t < 0 first) of lines with the infinite cylinder ``r = R``.

    Points must lie inside the cylinder. Returns (n, 3) arrays ``(x_minus, x_plus)`` in mm.
    """
    p, u = np.asarray(points, float), np.asarray(directions, float)
    a = u[:, 0] ** 2 + u[:, 1] ** 2
    b = p[:, 0] * u[:, 0] + p[:, 1] * u[:, 1]
    c = p[:, 0] ** 2 + p[:, 1] ** 2 - radius_mm**2
    a_safe = np.where(a > 1e-300, a, 1e-300)  # a direction along z never reaches the cylinder
    root = np.sqrt(np.maximum(b * b - a * c, 0.0))
    t_minus, t_plus = (-b - root) / a_safe, (-b + root) / a_safe
    return p + t_minus[:, None] * u, p + t_plus[:, None] * u


def ideal_cylinder_events(points, *, radius_mm: float, half_length_mm: float, rng: np.random.Generator,
                          tof: TOFParameters | None = None, attenuation=None):
    """Detected coincidences of emissions at ``points`` (n, 3) mm.

    Parameters
    ----------
    points : ndarray, shape (n, 3)
        Emission points (mm), inside the cylinder.
    radius_mm, half_length_mm : float
        Detector cylinder radius and half axial length (mm).
    rng : numpy Generator
    tof : TOFParameters, optional
        Adds ``tof_bin``: the signed bin (towards ``xend``) of the emission point displaced by a
        Gaussian error truncated at ``n_sigmas`` — the generative model of the projector's kernel.
        Events falling outside the bins are dropped.
    attenuation : callable(xstart, xend) -> survival probability (n,), optional
        Each event survives with this probability (the pair's attenuation factor).

    Returns
    -------
    dict with ``xstart``, ``xend`` (m, 3) mm, ``emission`` (m, 3) mm (truth), optionally ``tof_bin`` (m,).
    """
    check_positive("radius_mm", radius_mm, unit="mm")
    check_positive("half_length_mm", half_length_mm, unit="mm")
    p = np.asarray(points, float)
    u = _isotropic(p.shape[0], rng)
    xs, xe = cylinder_intersections(p, u, radius_mm=radius_mm)
    keep = (np.abs(xs[:, 2]) <= half_length_mm) & (np.abs(xe[:, 2]) <= half_length_mm) & (np.abs(u[:, 2]) < 1.0)
    if attenuation is not None:
        keep &= rng.random(p.shape[0]) < np.asarray(attenuation(xs, xe))
    out = {"xstart": xs[keep], "xend": xe[keep], "emission": p[keep]}
    if tof is not None:
        d = out["xend"] - out["xstart"]
        s = np.einsum("ij,ij->i", out["emission"] - 0.5 * (out["xstart"] + out["xend"]), d / np.linalg.norm(d, axis=1)[:, None])
        err = rng.normal(size=s.size)
        bad = np.abs(err) > tof.n_sigmas
        while bad.any():  # truncated Gaussian by redrawing
            err[bad] = rng.normal(size=int(bad.sum()))
            bad = np.abs(err) > tof.n_sigmas
        k = np.round((s + tof.sigma_mm * err) * float(tof.sign.value) / tof.bin_width_mm)
        half = (tof.num_bins - 1) / 2.0
        inside = np.abs(k) <= half
        out = {key: v[inside] for key, v in out.items()}
        out["tof_bin"] = k[inside]
    return out


def ideal_cylinder_lors(n_lors: int, *, radius_mm: float, half_length_mm: float, fov_radius_mm: float,
                        voxel_volume_mm3: float, rng: np.random.Generator):
    """Uniformly distributed (isotropic line measure) detected LORs for the sensitivity image.

    Lines get an isotropic direction and a uniform foot point on the disk of radius
    ``fov_radius_mm`` perpendicular to it; detected lines (both ends within ``|z| <= H``) are
    returned with the weight ``pi r_fov^2 / (n_lors V_voxel)``, which makes the back projection
    ``s_j`` the detection probability of an emission in voxel ``j`` (so the OSEM image counts
    emissions per voxel).

    Returns
    -------
    xstart, xend : ndarray (m, 3) mm; weights : ndarray (m,)
    """
    foot, u = isotropic_lines(n_lors, radius_mm=fov_radius_mm, rng=rng)
    ok = (foot[:, 0] ** 2 + foot[:, 1] ** 2 < radius_mm**2) & (np.abs(u[:, 2]) < 1.0)
    xs, xe = cylinder_intersections(foot[ok], u[ok], radius_mm=radius_mm)
    det = (np.abs(xs[:, 2]) <= half_length_mm) & (np.abs(xe[:, 2]) <= half_length_mm)
    w = math.pi * fov_radius_mm**2 / (n_lors * voxel_volume_mm3)
    return xs[det], xe[det], np.full(int(det.sum()), w)
