"""Phantoms made of z-aligned cylinders: uniform cylinder, shell, line source, hot-rod.

Each has uniform activity concentration in its active cylinders and a closed-form
(TOF-weighted) line integral: the exact chord of a segment with each cylinder times the
concentration (Thull et al., sec. 2.3 model, evaluated analytically).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refsuite._checks import check_positive

from ._raygeom import cylinder_interval, segment_weights
from .base import MU_PMMA_511, MU_WATER_511, Phantom, _register

__all__ = ["UniformCylinder", "CylindricalShell", "LineSource", "HotRod", "HOT_ROD_DIAMETERS_MM"]

#: rod diameters of the hot-rod phantom of Thull et al., sec. 2.6, mm
HOT_ROD_DIAMETERS_MM = (2.0, 1.5, 1.2, 1.0, 0.9, 0.8)


def _forward(t_in, t_out):
    return np.maximum(t_out - np.maximum(t_in, 0.0), 0.0)


def _disc(n, rng, r_in, r_out):
    """Uniform points in annuli ``r_in <= r <= r_out`` (broadcast (n,)), offsets (n, 2)."""
    r = np.sqrt(rng.uniform(0.0, 1.0, n) * (r_out**2 - r_in**2) + r_in**2)
    phi = rng.uniform(0.0, 2 * np.pi, n)
    return np.stack([r * np.cos(phi), r * np.sin(phi)], -1)


class _Cylinders(Phantom):
    """Union of disjoint active z-aligned cylinders (centres_xy (K,2), radii (K,), z range)."""

    def _geometry(self):  # -> centres_xy (K,2), radii (K,), z_min, z_max, inner radius of hole or None
        raise NotImplementedError

    def _concentration(self) -> float:
        c, r, z0, z1, hole = self._geometry()
        area = np.pi * np.sum(r**2) - (0.0 if hole is None else np.pi * hole**2)
        return self.activity_bq / (area * (z1 - z0))

    @property
    def total_activity(self) -> float:
        return float(self.activity_bq)

    def contains(self, points) -> np.ndarray:
        p = np.asarray(points, float).reshape(-1, 3)
        c, r, z0, z1, hole = self._geometry()
        step = max(1, 2_000_000 // len(r))  # bound the (points x cylinders) work array
        if p.shape[0] > step:
            return np.concatenate([self.contains(p[i:i + step]) for i in range(0, p.shape[0], step)])
        d2 = (p[:, None, 0] - c[None, :, 0]) ** 2 + (p[:, None, 1] - c[None, :, 1]) ** 2
        inside = (d2 <= r**2).any(1) & (p[:, 2] >= z0) & (p[:, 2] <= z1)
        if hole is not None:
            inside &= d2[:, 0] > hole**2
        return inside * self._concentration()

    def _line_integral(self, s, e, sigma, centre):
        c, r, z0, z1, hole = self._geometry()
        t0, t1 = cylinder_interval(s, e - s, c, r, z0, z1)
        w = segment_weights(s, e, t0, t1, sigma, centre).sum(1)
        if hole is not None:
            h0, h1 = cylinder_interval(s, e - s, c[:1], np.array([hole]), z0, z1)
            w = w - segment_weights(s, e, h0, h1, sigma, centre)[:, 0]
        return w * self._concentration()

    def _sample(self, n, rng):
        c, r, z0, z1, hole = self._geometry()
        k = rng.choice(len(r), size=n, p=r**2 / np.sum(r**2)) if len(r) > 1 else np.zeros(n, int)
        xy = c[k] + _disc(n, rng, 0.0 if hole is None else hole, r[k])
        return np.column_stack([xy, rng.uniform(z0, z1, n)])


@_register
@dataclass(frozen=True)
class UniformCylinder(_Cylinders):
    """Uniform water cylinder along z (e.g. NEMA-like scatter/uniformity phantom).

    Parameters: ``radius_mm``, ``length_mm``, ``centre_mm`` (3,), ``activity_bq``,
    ``mu_per_mm`` (water at 511 keV by default; 0 disables attenuation).
    """

    radius_mm: float = 25.0
    length_mm: float = 100.0
    centre_mm: tuple = (0.0, 0.0, 0.0)
    activity_bq: float = 1.0e6
    mu_per_mm: float = MU_WATER_511

    def __post_init__(self):
        check_positive("radius_mm", self.radius_mm, unit="mm")
        check_positive("length_mm", self.length_mm, unit="mm")
        check_positive("activity_bq", self.activity_bq, unit="Bq")

    def _geometry(self):
        cx, cy, cz = self.centre_mm
        h = self.length_mm / 2
        return np.array([[cx, cy]], float), np.array([self.radius_mm], float), cz - h, cz + h, None

    def attenuation_length(self, origins, directions):
        c, r, z0, z1, _ = self._geometry()
        t0, t1 = cylinder_interval(np.asarray(origins, float), np.asarray(directions, float), c, r, z0, z1)
        return _forward(t0, t1)[:, 0] * np.linalg.norm(directions, axis=-1)


@_register
@dataclass(frozen=True)
class CylindricalShell(_Cylinders):
    """Thin cylindrical shell of activity (fan-sum efficiency acquisitions, Thull et al. 2.2).

    Active between ``inner_radius_mm`` and ``outer_radius_mm`` over ``length_mm``, centred on
    the scanner axis at ``centre_mm``; the shell fluid attenuates with ``mu_per_mm``.
    """

    inner_radius_mm: float = 45.0
    outer_radius_mm: float = 47.0
    length_mm: float = 140.0
    centre_mm: tuple = (0.0, 0.0, 0.0)
    activity_bq: float = 1.0e6
    mu_per_mm: float = MU_WATER_511

    def __post_init__(self):
        check_positive("outer_radius_mm", self.outer_radius_mm, unit="mm")
        check_positive("length_mm", self.length_mm, unit="mm")
        check_positive("activity_bq", self.activity_bq, unit="Bq")
        if not 0 <= self.inner_radius_mm < self.outer_radius_mm:
            raise ValueError(f"inner_radius_mm must be in [0, outer_radius_mm={self.outer_radius_mm}), "
                             f"got {self.inner_radius_mm}")

    def _geometry(self):
        cx, cy, cz = self.centre_mm
        h = self.length_mm / 2
        return (np.array([[cx, cy]], float), np.array([self.outer_radius_mm], float), cz - h, cz + h,
                float(self.inner_radius_mm))

    def attenuation_length(self, origins, directions):
        c, r, z0, z1, hole = self._geometry()
        o, d = np.asarray(origins, float), np.asarray(directions, float)
        t0, t1 = cylinder_interval(o, d, c, r, z0, z1)
        h0, h1 = cylinder_interval(o, d, c, np.array([hole]), z0, z1)
        return (_forward(t0, t1) - _forward(h0, h1))[:, 0] * np.linalg.norm(d, axis=-1)


@_register
@dataclass(frozen=True)
class LineSource(_Cylinders):
    """Line source along z (NEMA NU 2 sensitivity; Lin et al.: radius 0.01 mm, 700 mm long).

    ``position_mm`` is the (x, y) of the line, ``centre_z_mm`` its axial centre. No
    attenuating sleeve by default (``mu_per_mm = 0``).
    """

    position_mm: tuple = (0.0, 0.0)
    radius_mm: float = 0.01
    length_mm: float = 700.0
    centre_z_mm: float = 0.0
    activity_bq: float = 7.4e6

    def __post_init__(self):
        check_positive("radius_mm", self.radius_mm, unit="mm")
        check_positive("length_mm", self.length_mm, unit="mm")
        check_positive("activity_bq", self.activity_bq, unit="Bq")

    def _geometry(self):
        h = self.length_mm / 2
        return (np.array([self.position_mm], float), np.array([self.radius_mm], float),
                self.centre_z_mm - h, self.centre_z_mm + h, None)


@_register
@dataclass(frozen=True)
class HotRod(_Cylinders):
    """Hot-rod (Derenzo-type) phantom: six sectors of rods (Thull et al., sec. 2.6).

    Sector ``k`` (60 deg wide, starting at ``rotation_deg + 60 k``) holds rods of diameter
    ``diameters_mm[k]`` on a triangular lattice of pitch ``2 x diameter`` (edge-to-edge
    spacing = diameter), inside a disc of radius ``sector_radius_mm``. Rods run along z
    over ``length_mm``; the PMMA body (radius ``body_radius_mm``) attenuates with
    ``mu_per_mm``. All rods share one activity concentration.
    """

    diameters_mm: tuple = HOT_ROD_DIAMETERS_MM
    sector_radius_mm: float = 12.0
    body_radius_mm: float = 15.0
    length_mm: float = 20.0
    centre_mm: tuple = (0.0, 0.0, 0.0)
    rotation_deg: float = 0.0
    activity_bq: float = 1.0e6
    mu_per_mm: float = MU_PMMA_511

    def __post_init__(self):
        check_positive("diameters_mm", self.diameters_mm, unit="mm")
        check_positive("length_mm", self.length_mm, unit="mm")
        check_positive("activity_bq", self.activity_bq, unit="Bq")
        object.__setattr__(self, "diameters_mm", tuple(float(d) for d in self.diameters_mm))
        if self.rods()[0].shape[0] == 0:
            raise ValueError(f"sector_radius_mm={self.sector_radius_mm} leaves no room for any rod")

    def rods(self):
        """Rod centres (K, 2) mm (x, y) and radii (K,) mm."""
        centres, radii = [], []
        n_sec = len(self.diameters_mm)
        width = 2 * np.pi / n_sec
        for k, d in enumerate(self.diameters_mm):
            pitch = 2.0 * d
            ang = np.deg2rad(self.rotation_deg) + k * width + width / 2
            # lattice rows perpendicular to the sector bisector, starting ~one pitch from the centre
            m = int(self.sector_radius_mm / pitch) + 2
            i, j = np.meshgrid(np.arange(m), np.arange(-m, m + 1), indexing="ij")
            u = pitch * (1.0 + i)  # along the bisector
            v = pitch * (j + 0.5 * (i % 2))  # across
            ok = (np.abs(v) + d / 2 <= u * np.tan(width / 2) - d / 2) & (np.hypot(u, v) + d / 2 <= self.sector_radius_mm)
            u, v = u[ok], v[ok]
            xy = np.stack([u * np.cos(ang) - v * np.sin(ang), u * np.sin(ang) + v * np.cos(ang)], -1)
            centres.append(xy + np.asarray(self.centre_mm[:2], float))
            radii.append(np.full(len(u), d / 2))
        return np.concatenate(centres), np.concatenate(radii)

    def _geometry(self):
        c, r = self.rods()
        h = self.length_mm / 2
        return c, r, self.centre_mm[2] - h, self.centre_mm[2] + h, None

    def attenuation_length(self, origins, directions):
        cx, cy, cz = self.centre_mm
        h = self.length_mm / 2
        t0, t1 = cylinder_interval(np.asarray(origins, float), np.asarray(directions, float),
                                   np.array([[cx, cy]]), np.array([self.body_radius_mm]), cz - h, cz + h)
        return _forward(t0, t1)[:, 0] * np.linalg.norm(directions, axis=-1)
