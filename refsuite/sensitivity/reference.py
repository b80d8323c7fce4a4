"""Reference (oracle) evaluation of Lin et al.'s contour integrals by adaptive quadrature.

This is deliberately the paper's own formulation, not the one used by the closed form:
the Green's-theorem 1-form -h y dx / ((x - r)^2 + h^2) / rho integrated along the circles
parametrised by their own central angle (Lin et al., eqs. 11-12 for nested caps, eqs. 14-15
for overlapping caps, intersection from eq. 13), with scipy's QUADPACK ``quad`` at
epsabs = epsrel = 1e-14, one point at a time. It is slow (about a millisecond per point) and
exists to check :func:`geometric_sensitivity`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.integrate import quad

from ._inputs import unwrap, validate_point

__all__ = ["geometric_sensitivity_reference"]

_QUAD = dict(epsabs=1e-14, epsrel=1e-14, limit=500)


def geometric_sensitivity_reference(r, z=0.0, *, radius, half_length):
    """S_g by adaptive quadrature of Lin et al.'s contour integrals (eqs. 12, 15, 16).

    Same parameters, units, validation and result as :func:`geometric_sensitivity`; about
    1e3 times slower. Absolute accuracy about 1e-14 (QUADPACK tolerance), with the peaks of
    the integrand near the wall given to ``quad`` as break points.

    Parameters
    ----------
    r, z : float or array_like
        Radial offset and axial position, mm (``0 <= r < radius``, ``|z| < half_length``).
    radius, half_length : float or array_like
        Cylinder radius R and half-length L, mm.

    Returns
    -------
    float or ndarray
        S_g (dimensionless).
    """
    p = validate_point(r, z, radius, half_length)
    out = np.empty(p.r.shape)
    flat = out.reshape(-1)
    for i, (ri, zi, ra, hl) in enumerate(
        zip(p.r.ravel(), p.z_abs.ravel(), p.radius.ravel(), p.half_length.ravel())
    ):
        flat[i] = _reference_one(ri / ra, zi / ra, hl / ra)
    return unwrap(out, p.scalar)


def _reference_one(r: float, z: float, half_length: float) -> float:
    """One normalised point (R = 1): Lin et al. eq. 16 with eqs. 12 and 15."""
    h = half_length - z
    r2 = h / (half_length + z)
    m = r * (1.0 + r2)

    def cap1(theta: float) -> float:  # integrand of eq. 12 / first integral of eq. 15
        u = math.cos(theta) - r
        s = math.sin(theta)
        return h * s * s / ((u * u + h * h) * math.sqrt(u * u + s * s + h * h))

    def cap2(theta: float) -> float:  # second integral of eq. 15 (circle of cap 2')
        u = r2 * math.cos(theta) + m - r
        s = r2 * math.sin(theta)
        return h * s * s / ((u * u + h * h) * math.sqrt(u * u + s * s + h * h))

    # The cap-1 integrand peaks where cos(theta) = r (the wall point nearest the source);
    # telling quad where keeps it exact for sources close to the wall.
    peak1 = math.acos(min(r, 1.0))
    if m + r2 <= 1.0:  # eq. 12: integral over the whole circle, symmetric in theta
        omega = 2.0 * _integrate(cap1, 0.0, math.pi, [peak1])
    else:  # eq. 15, with x_c from eq. 13 and the half central angles phi_1, phi_2
        x_c = (1.0 - r2 * r2 + m * m) / (2.0 * m)
        phi1 = math.acos(max(-1.0, min(1.0, x_c)))
        phi2 = math.acos(max(-1.0, min(1.0, (m - x_c) / r2)))
        omega = 2.0 * _integrate(cap1, phi1, math.pi, [peak1])
        omega += 2.0 * _integrate(cap2, 0.0, math.pi - phi2, [])
    return 1.0 - omega / (2.0 * math.pi)


def _integrate(f, a: float, b: float, points: list[float]) -> float:
    inner = sorted(p for p in points if a < p < b)
    edges = [a, *inner, b]
    return sum(quad(f, lo, hi, **_QUAD)[0] for lo, hi in zip(edges[:-1], edges[1:]))
