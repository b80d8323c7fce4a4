"""Validation and normalisation of the (r, z, R, L) inputs shared by the sensitivity functions."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import check_finite, check_positive


class Point(NamedTuple):
    """Broadcast, validated inputs: r, |z| in mm and the scanner radius R, half-length L in mm."""

    r: np.ndarray
    z_abs: np.ndarray
    radius: np.ndarray
    half_length: np.ndarray
    scalar: bool


def validate_point(r, z, radius, half_length) -> Point:
    """Check ``0 <= r < radius``, ``|z| < half_length``, positive finite dimensions; broadcast.

    Raises ValueError naming the parameter, its value and the allowed range.
    """
    radius_a = check_positive("radius", radius, unit="mm")
    half_a = check_positive("half_length", half_length, unit="mm")
    r_a = check_finite("r", r)
    z_a = check_finite("z", z)
    try:
        r_b, z_b, rad_b, half_b = np.broadcast_arrays(r_a, z_a, radius_a, half_a)
    except ValueError:
        raise ValueError(
            f"r, z, radius and half_length must broadcast together, got shapes "
            f"{r_a.shape}, {z_a.shape}, {radius_a.shape}, {half_a.shape}"
        ) from None
    bad_r = (r_b < 0) | (r_b >= rad_b)
    if np.any(bad_r):
        i = np.flatnonzero(bad_r.ravel())[0]
        raise ValueError(
            f"r must lie in [0, radius) = [0, {rad_b.ravel()[i]:g}) mm, got {float(r_b.ravel()[i])!r} mm"
        )
    bad_z = np.abs(z_b) >= half_b
    if np.any(bad_z):
        i = np.flatnonzero(bad_z.ravel())[0]
        raise ValueError(
            f"z must lie in (-half_length, half_length) = (-{half_b.ravel()[i]:g}, {half_b.ravel()[i]:g}) mm, "
            f"got {float(z_b.ravel()[i])!r} mm"
        )
    scalar = all(np.ndim(v) == 0 for v in (r, z, radius, half_length))
    return Point(r_b, np.abs(z_b), rad_b, half_b, scalar)


def unwrap(values: np.ndarray, scalar: bool):
    """Scalars in, scalars out."""
    return float(values) if scalar else values
