"""Point sources and the B-spline tube phantom of Thull et al., sec. 2.5."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from refsuite._checks import check_finite, check_positive

from ._raygeom import forward_box_lengths, sphere_interval, segment_weights
from .base import MU_PMMA_511, Phantom, _register

__all__ = ["PointSources", "Tube"]


@_register
@dataclass(frozen=True)
class PointSources(Phantom):
    """Small spherical sources, each in a PMMA cube (Thull et al., sec. 2.5: 10 x 22Na,
    radius 0.125 mm, in 1 x 1 x 1 mm^3 acrylic cubes, randomly placed in the FOV).

    Parameters
    ----------
    centres_mm : array_like, shape (K, 3)
    radius_mm : float
        Radius of every active sphere, mm.
    activities_bq : float or (K,)
        Activity of each source, Bq.
    cube_mm : float
        Edge of the PMMA cube around each source (attenuation only), mm; 0 for none.
    mu_per_mm : float
        Attenuation coefficient of the cube material at 511 keV, 1/mm.
    """

    centres_mm: np.ndarray
    radius_mm: float = 0.125
    activities_bq: np.ndarray | float = 1.0e5
    cube_mm: float = 1.0
    mu_per_mm: float = MU_PMMA_511

    def __post_init__(self):
        c = check_finite("centres_mm", self.centres_mm).reshape(-1, 3)
        a = np.broadcast_to(check_positive("activities_bq", self.activities_bq, unit="Bq"), c.shape[:1]).copy()
        check_positive("radius_mm", self.radius_mm, unit="mm")
        if self.cube_mm < 2 * self.radius_mm and self.cube_mm != 0:
            raise ValueError(f"cube_mm must be 0 or >= 2 * radius_mm = {2 * self.radius_mm}, got {self.cube_mm}")
        object.__setattr__(self, "centres_mm", c)
        object.__setattr__(self, "activities_bq", a)

    @classmethod
    def random(cls, n_sources: int = 10, *, fov_radius_mm: float = 60.0, fov_half_length_mm: float = 60.0,
               rng: np.random.Generator, **options) -> "PointSources":
        """``n_sources`` sources uniform in the cylinder ``r <= fov_radius_mm``, ``|z| <= fov_half_length_mm``."""
        r = fov_radius_mm * np.sqrt(rng.uniform(0, 1, n_sources))
        phi = rng.uniform(0, 2 * np.pi, n_sources)
        z = rng.uniform(-fov_half_length_mm, fov_half_length_mm, n_sources)
        return cls(np.column_stack([r * np.cos(phi), r * np.sin(phi), z]), **options)

    @property
    def total_activity(self) -> float:
        return float(self.activities_bq.sum())

    def _concentrations(self):
        return self.activities_bq / (4.0 / 3.0 * np.pi * self.radius_mm**3)

    def _sample(self, n, rng):
        # source by inverse CDF of the activities, point uniform in the unit ball by rejection
        # from the cube (acceptance pi / 6): cheaper than normal directions and a cube root
        cdf = np.cumsum(self.activities_bq) / self.total_activity
        u = rng.random(n)
        if len(cdf) <= 16:  # same k as searchsorted(side="right"), faster for a few sources
            k = np.zeros(n, np.intp)
            for c in cdf[:-1]:
                k += u >= c
        else:
            k = np.searchsorted(cdf[:-1], u, side="right")
        out = _unit_ball(n, rng)
        out *= self.radius_mm
        out += np.take(self.centres_mm, k, axis=0)  # np.take: faster than fancy indexing
        return out

    def contains(self, points):
        p = np.asarray(points, float).reshape(-1, 3)
        out = np.zeros(p.shape[0])
        for c, conc in zip(self.centres_mm, self._concentrations()):
            out += conc * (np.sum((p - c) ** 2, 1) <= self.radius_mm**2)
        return out

    def _line_integral(self, s, e, sigma, centre):
        t0, t1 = sphere_interval(s, e - s, self.centres_mm, np.full(len(self.centres_mm), self.radius_mm))
        return segment_weights(s, e, t0, t1, sigma, centre) @ self._concentrations()

    def attenuation_length(self, origins, directions):
        o = np.asarray(origins, float)
        d = np.asarray(directions, float)
        if self.cube_mm == 0:
            return np.zeros(o.shape[0])
        return forward_box_lengths(o, d, self.centres_mm, self.cube_mm / 2)


def _unit_ball(n, rng):
    """``n`` points uniform in the unit ball, (n, 3): uniform points of the cube ``[-1, 1)^3``
    with ``|p| <= 1``, in order (rejection sampling; ~1.91 triplets per point)."""
    out = np.empty((n, 3))
    done = 0
    while done < n:
        need = n - done
        v = rng.random((int(1.91 * need + 4.0 * np.sqrt(need)) + 8, 3))
        v *= 2.0
        v -= 1.0
        inside = np.flatnonzero(np.einsum("ij,ij->i", v, v) <= 1.0)[:need]
        out[done:done + len(inside)] = np.take(v, inside, axis=0)
        done += len(inside)
    return out


@_register
@dataclass(frozen=True)
class Tube(Phantom):
    """Thin tube filled with activity along a cubic B-spline through control points
    (Thull et al., sec. 2.5: 250 um diameter, the 10 point-source positions as control points).

    The centre line interpolates ``control_points_mm`` (chord-length parametrisation,
    degree ``min(3, K - 1)``); activity is uniform over the tube volume. No closed-form
    line integral (voxelise it instead); no attenuation.

    Parameters
    ----------
    control_points_mm : array_like, shape (K, 3), K >= 2
    diameter_mm : float
    activity_bq : float
    """

    control_points_mm: np.ndarray
    diameter_mm: float = 0.25
    activity_bq: float = 1.0e6

    has_line_integral = False

    def __post_init__(self):
        p = check_finite("control_points_mm", self.control_points_mm).reshape(-1, 3)
        if p.shape[0] < 2:
            raise ValueError(f"control_points_mm needs at least 2 points, got {p.shape[0]}")
        if np.any(np.linalg.norm(np.diff(p, axis=0), axis=1) == 0):
            raise ValueError("control_points_mm must not repeat consecutive points")
        check_positive("diameter_mm", self.diameter_mm, unit="mm")
        check_positive("activity_bq", self.activity_bq, unit="Bq")
        object.__setattr__(self, "control_points_mm", p)

    @cached_property
    def _polyline(self):
        """Dense centre line (m, 3), cumulative arc length (m,), unit tangents (m, 3)."""
        from scipy.interpolate import make_interp_spline

        p = self.control_points_mm
        u = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])
        spline = make_interp_spline(u, p, k=min(3, len(p) - 1))
        # vertex spacing ~0.02 mm keeps the distance-to-curve error below 1e-3 mm
        m = int(np.clip(u[-1] / 0.02, 200, 200_000))
        uu = np.linspace(0.0, u[-1], m)
        pts = spline(uu)
        tang = spline.derivative()(uu)
        tang /= np.linalg.norm(tang, axis=1, keepdims=True)
        arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
        return pts, arc, tang

    @property
    def length_mm(self) -> float:
        """Arc length of the centre line, mm."""
        return float(self._polyline[1][-1])

    @property
    def total_activity(self) -> float:
        return float(self.activity_bq)

    def centre_line(self, n: int = 200) -> np.ndarray:
        """``n`` points along the centre line (for plots), mm."""
        pts, arc, _ = self._polyline
        s = np.linspace(0, arc[-1], n)
        return np.stack([np.interp(s, arc, pts[:, i]) for i in range(3)], -1)

    def _sample(self, n, rng):
        pts, arc, tang = self._polyline
        s = rng.uniform(0.0, arc[-1], n)
        c = np.stack([np.interp(s, arc, pts[:, i]) for i in range(3)], -1)
        t = np.stack([np.interp(s, arc, tang[:, i]) for i in range(3)], -1)
        t /= np.linalg.norm(t, axis=1, keepdims=True)
        ref = np.where(np.abs(t[:, [0]]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]])
        n1 = np.cross(t, ref)
        n1 /= np.linalg.norm(n1, axis=1, keepdims=True)
        n2 = np.cross(t, n1)
        r = self.diameter_mm / 2 * np.sqrt(rng.uniform(0, 1, n))
        phi = rng.uniform(0, 2 * np.pi, n)
        return c + (r * np.cos(phi))[:, None] * n1 + (r * np.sin(phi))[:, None] * n2

    def contains(self, points):
        from scipy.spatial import cKDTree

        pts, _, _ = self._polyline
        if "_tree" not in self.__dict__:
            self.__dict__["_tree"] = cKDTree(pts)
        q = np.asarray(points, float).reshape(-1, 3)
        _, i = self.__dict__["_tree"].query(q)
        # exact distance to the two polyline segments around the nearest vertex
        d = np.full(q.shape[0], np.inf)
        for a, b in ((np.maximum(i - 1, 0), i), (i, np.minimum(i + 1, len(pts) - 1))):
            ab = pts[b] - pts[a]
            den = np.maximum(np.sum(ab * ab, 1), 1e-300)
            t = np.clip(np.sum((q - pts[a]) * ab, 1) / den, 0.0, 1.0)
            d = np.minimum(d, np.linalg.norm(q - pts[a] - t[:, None] * ab, axis=1))
        conc = self.activity_bq / (np.pi * (self.diameter_mm / 2) ** 2 * self.length_mm)
        return conc * (d <= self.diameter_mm / 2)
