"""Monte Carlo estimate of the geometric pair sensitivity: isotropic back-to-back pairs traced
to the cylinder wall.

Independent of the closed form: no solid angles, only ray-cylinder intersections.
"""

from __future__ import annotations

import numpy as np

from .._checks import check_positive
from ._inputs import unwrap, validate_point

__all__ = ["geometric_sensitivity_mc", "pair_hits_wall"]

_BLOCK = 1 << 18  # pairs per vectorised block (bounded memory)


def geometric_sensitivity_mc(r, z=0.0, *, radius, half_length, n_pairs, rng):
    """Monte Carlo estimate of S_g with its binomial standard error.

    For each point, ``n_pairs`` isotropic directions u are drawn; the pair counts when both
    rays, along u and -u from (r, 0, z), meet the wall ``x^2 + y^2 = radius^2`` at
    ``|z_hit| <= half_length`` (Lin et al., Sec. I-C: neither photon leaves through a cap).

    Parameters
    ----------
    r, z : float or array_like
        Radial offset and axial position, mm (``0 <= r < radius``, ``|z| < half_length``).
    radius, half_length : float or array_like
        Cylinder radius R and half-length L, mm.
    n_pairs : int
        Pairs per point, >= 1.
    rng : numpy.random.Generator
        Random stream (same stream and inputs, same result).

    Returns
    -------
    estimate, standard_error : float or ndarray
        Detected fraction k/n and sqrt(S (1 - S) / n), shapes of the broadcast inputs.
    """
    p = validate_point(r, z, radius, half_length)
    n_pairs = _check_count(n_pairs)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    hits = np.empty(p.r.shape, dtype=np.int64)
    flat = hits.reshape(-1)
    for i, (ri, zi, ra, hl) in enumerate(
        zip(p.r.ravel(), p.z_abs.ravel(), p.radius.ravel(), p.half_length.ravel())
    ):
        count = 0
        for start in range(0, n_pairs, _BLOCK):
            m = min(_BLOCK, n_pairs - start)
            u = _isotropic(m, rng)
            count += int(np.count_nonzero(pair_hits_wall(ri, zi, u, radius=ra, half_length=hl)))
        flat[i] = count
    estimate = hits / n_pairs
    stderr = np.sqrt(estimate * (1.0 - estimate) / n_pairs)
    return unwrap(estimate, p.scalar), unwrap(stderr, p.scalar)


def pair_hits_wall(r: float, z: float, u: np.ndarray, *, radius: float, half_length: float) -> np.ndarray:
    """Whether both photons of pairs emitted at (r, 0, z) along ``u`` and ``-u`` hit the wall.

    Parameters
    ----------
    r, z : float
        Source position, mm (x = r, y = 0).
    u : ndarray, shape (n, 3)
        Unit directions.
    radius, half_length : float
        Cylinder radius and half-length, mm.

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    wx, wy, wz = u[:, 0], u[:, 1], u[:, 2]
    w2 = wx * wx + wy * wy
    pw = r * wx  # p . w with p = (r, 0)
    # Transverse path parameter t >= 0 to the wall along +u and along -u:
    # |p + t w|^2 = R^2  ->  t = (-p.w +- sqrt((p.w)^2 + w2 (R^2 - r^2))) / w2
    root = np.sqrt(pw * pw + w2 * (radius * radius - r * r))
    with np.errstate(divide="ignore", invalid="ignore"):
        t_plus = (root - pw) / w2
        t_minus = (root + pw) / w2
        z_plus = z + t_plus * wz
        z_minus = z - t_minus * wz
    return (w2 > 0.0) & (np.abs(z_plus) <= half_length) & (np.abs(z_minus) <= half_length)


def _isotropic(n: int, rng: np.random.Generator) -> np.ndarray:
    """n unit vectors uniform on the sphere (Archimedes: u_z uniform in [-1, 1])."""
    uz = rng.uniform(-1.0, 1.0, n)
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    st = np.sqrt(1.0 - uz * uz)
    return np.stack([st * np.cos(phi), st * np.sin(phi), uz], axis=1)


def _check_count(n_pairs) -> int:
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, (int, np.integer)):
        raise TypeError(f"n_pairs must be an integer, got {n_pairs!r}")
    check_positive("n_pairs", n_pairs)
    return int(n_pairs)
