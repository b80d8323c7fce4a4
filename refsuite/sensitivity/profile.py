"""Radial sensitivity profile of a line-source sweep against an analytic reference.

A line source along z is stepped across the field of view; the coincidence counts per
position are compared with a reference shape times one global efficiency fitted by Poisson
maximum likelihood. The reference is either Lin et al.'s ideal cylinder (closed form,
line-source mean, finite wall) for an *equivalent cylinder* of the block scanner, or a
deterministic quadrature over the scanner's actual blocks, which keeps the gaps between them.

Measured on ``thull_sim`` (8 blocks of 48 mm per ring at 75 mm: an octagon whose front faces
cover 79 % of the azimuth seen from the centre) with the built-in Monte Carlo, a 150 mm line
source at 0, 5, ..., 60 mm and 2e6 decays per point (~1.9e5 coincidences, 0.23 % Poisson):

* equivalent cylinder, any model (``GEOMETRIC`` / ``LINE_SOURCE`` / ``DETECTION``) and any
  radius convention (75, 77.0, 80 mm): max |shape deviation| 17-44 %, chi2/dof 1400-6200.
  The gaps shape the profile (-28 % from 0 to 20 mm, then back up): at r = 0 both photons
  of a pair see the same gap, off centre they see different ones. The radius choice moves
  the normalised shape by < 2 %; it only changes the fitted efficiency.
* :func:`block_profile_reference` of the blueprint (``n_polar=96, n_axial=24``): max
  |deviation| 0.55 % (towards a block centre) and 0.45 % (towards a gap), chi2 = 17.6 and
  8.1 for 12 dof (p = 0.13, 0.78); the absolute level is the MC's to 0.2 % once the energy
  window's 0.981 is applied. With the faster defaults and 1e6 decays per point (an
  acceptance quick run): max |deviation| 0.64 %, chi2 = 10.4 / 12.
* Faults, 1e6 decays per point, sweep towards the middle ring's block at phi = 0: that
  block removed -> deviations +5.8 ... -8.0 %, chi2 = 2184; moved 3 mm outward -> -2.2 %
  at 60 mm (z = -7.6); re-mounted 0.4 mm / 0.3 deg or one 4 mm crystal voxel dead ->
  indistinguishable from the blueprint (chi2 = 6.9 and 10.8 for 12 dof).

So the block reference is the one to test a block scanner against; the cylinder models are
for scanners that are close to Lin et al.'s ideal wall (``lin_clinical``: 48 modules, 1.9 mm
gaps).

References
----------
B. Lin et al., "Analytic model of radial sensitivity in cylindrical PET systems based on first
principles": eqs. 10, 12, 15, 16 (S_g of a cylinder), Sec. III (line-source sweep).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .._checks import check_finite, check_in_range, check_positive
from .closed_form import geometric_sensitivity
from .extended import detection_sensitivity, line_source_sensitivity

__all__ = [
    "CylinderChoice",
    "EquivalentCylinder",
    "ReferenceModel",
    "ProfileComparison",
    "equivalent_cylinder",
    "radial_profile_reference",
    "block_profile_reference",
    "compare_radial_profile",
]


class CylinderChoice(enum.Enum):
    """Which radius of a ring of flat blocks stands for the cylinder of Lin et al.

    INNER_FACE
        Mean distance of the blocks' front-face planes from the axis (the polygon's apothem;
        the radius :mod:`validation.gate` uses for ``lin_clinical``). Default.
    AREA
        Radius of the circle with the area of the front-face polygon, ``a sqrt(n tan(pi/n) / pi)``
        for ``n`` blocks per ring at apothem ``a``.
    MID_DEPTH
        Apothem plus half the block depth (where the mean 511 keV photon interacts, roughly).
    """

    INNER_FACE = "inner_face"
    AREA = "area"
    MID_DEPTH = "mid_depth"


class ReferenceModel(enum.Enum):
    """Analytic model of the radial profile of an equivalent cylinder.

    GEOMETRIC
        Point source in the centre slice: S_g(r, 0) (Lin et al., eqs. 10, 12, 15, 16).
    LINE_SOURCE
        S_g averaged along the centred line source (Lin et al., Sec. III; NEMA NU 2).
    DETECTION
        Wall of finite depth and attenuation, pair interaction probability averaged along
        the line source (:func:`refsuite.sensitivity.detection_sensitivity`, beyond the paper).
    """

    GEOMETRIC = "geometric"
    LINE_SOURCE = "line_source"
    DETECTION = "detection"


@dataclass(frozen=True)
class EquivalentCylinder:
    """An ideal cylindrical wall standing for a block scanner.

    Attributes
    ----------
    radius_mm : float
        Inner radius R, mm.
    half_length_mm : float
        Half the axial extent L (wall spans [-L, L]), mm.
    depth_mm : float
        Radial wall thickness (block depth), mm.
    mu_per_mm : float
        Linear attenuation coefficient of the wall at 511 keV, 1/mm.
    choice : CylinderChoice
        How ``radius_mm`` was derived.
    """

    radius_mm: float
    half_length_mm: float
    depth_mm: float
    mu_per_mm: float
    choice: CylinderChoice = CylinderChoice.INNER_FACE


def equivalent_cylinder(scanner, *, choice: CylinderChoice = CylinderChoice.INNER_FACE) -> EquivalentCylinder:
    """The cylinder of Lin et al. that represents a ring scanner of flat blocks.

    Parameters
    ----------
    scanner : refsuite.geometry.Scanner
        Blocks whose local Y axis points radially outward (as every preset).
    choice : CylinderChoice, optional
        Radius convention (default :attr:`CylinderChoice.INNER_FACE`).

    Returns
    -------
    EquivalentCylinder
        ``half_length_mm`` = largest |z| of any block corner, ``depth_mm`` = block size along
        local Y, ``mu_per_mm`` = the scanner's.

    Notes
    -----
    The choice barely matters for the *shape* inside ~0.8 R: on ``thull_sim`` (apothem 75 mm)
    the line-source profiles for R = 75 (inner face), 77.0 (area) and 80 mm (mid depth),
    each normalised to the same total, differ by < 0.5 % for r <= 50 mm and by 1.7 % at
    r = 60 mm; they differ in the fitted efficiency only. INNER_FACE is the default because
    it is the geometric bound of the field of view (S_g diverges in slope as r -> R) and it
    is what the Lin et al. comparison on ``lin_clinical`` uses.
    """
    from refsuite.geometry import Scanner

    if not isinstance(scanner, Scanner):
        raise TypeError(f"scanner must be a refsuite.geometry.Scanner, got {type(scanner).__name__}")
    if not isinstance(choice, CylinderChoice):
        raise TypeError(f"choice must be a CylinderChoice, got {choice!r}")
    outward = scanner.axes[:, 1]
    depth = float(scanner.block_size[1])
    front = scanner.positions - 0.5 * depth * outward
    # distance of each front-face plane from the axis, measured in the transaxial plane
    radial = outward[:, :2] / np.linalg.norm(outward[:, :2], axis=1, keepdims=True)
    apothem = float(np.mean(np.sum(front[:, :2] * radial, axis=1)))
    if choice is CylinderChoice.INNER_FACE:
        radius = apothem
    elif choice is CylinderChoice.MID_DEPTH:
        radius = apothem + 0.5 * depth
    else:
        n = _blocks_per_ring(np.arctan2(radial[:, 1], radial[:, 0]))
        radius = apothem * math.sqrt(n * math.tan(math.pi / n) / math.pi)
    half = float(np.abs(scanner.block_corners()[..., 2]).max())
    return EquivalentCylinder(radius, half, depth, float(scanner.mu_per_mm), choice)


def _blocks_per_ring(phi: np.ndarray) -> int:
    """Number of distinct block azimuths; blocks within 0.05 rad (3 deg) of each other (same
    column of another ring, or a slightly misaligned block) count once."""
    ordered = np.sort(np.mod(phi, 2 * np.pi))
    gaps = np.diff(np.concatenate([ordered, [ordered[0] + 2 * np.pi]]))
    n = int(np.count_nonzero(gaps > 0.05))
    if n < 3:
        raise ValueError(f"scanner must have blocks at >= 3 azimuths for an area-equivalent radius, got {n}")
    return n


def radial_profile_reference(offsets_mm, cylinder: EquivalentCylinder, *, source_length_mm: float,
                             model: ReferenceModel = ReferenceModel.LINE_SOURCE, n_axial: int = 16):
    """Analytic sensitivity of an equivalent cylinder at the radial offsets of a sweep.

    Parameters
    ----------
    offsets_mm : array_like, shape (n,)
        Radial offsets of the line source, mm, in ``[0, cylinder.radius_mm)``.
    cylinder : EquivalentCylinder
        From :func:`equivalent_cylinder`.
    source_length_mm : float
        Length of the centred line source, mm (> 0); ignored by ``GEOMETRIC``.
    model : ReferenceModel, optional
        Default ``LINE_SOURCE`` (Lin et al., eqs. 16 averaged along the source).
    n_axial : int, optional
        Gauss-Legendre nodes along the source for ``DETECTION`` (>= 2).

    Returns
    -------
    ndarray, shape (n,)
        Pairs detected per decay (dimensionless; for ``GEOMETRIC``, per decay at z = 0).
    """
    if not isinstance(cylinder, EquivalentCylinder):
        raise TypeError(f"cylinder must be an EquivalentCylinder, got {type(cylinder).__name__}")
    if not isinstance(model, ReferenceModel):
        raise TypeError(f"model must be a ReferenceModel, got {model!r}")
    offsets = _offsets(offsets_mm, cylinder.radius_mm)
    src = float(check_positive("source_length_mm", source_length_mm, unit="mm"))
    _check_int("n_axial", n_axial, 2)
    R, L = cylinder.radius_mm, cylinder.half_length_mm
    if model is ReferenceModel.GEOMETRIC:
        return np.asarray(geometric_sensitivity(offsets, 0.0, radius=R, half_length=L), float)
    if model is ReferenceModel.LINE_SOURCE:
        return np.asarray(line_source_sensitivity(offsets, radius=R, half_length=L, source_length=src), float)
    # detection probability is symmetric in z: Gauss-Legendre over [0, min(L, l/2)), the
    # fraction of the source outside the wall contributes nothing
    z_top = min(L, 0.5 * src) * (1.0 - 1e-9)
    x, w = np.polynomial.legendre.leggauss(int(n_axial))
    z = 0.5 * z_top * (x + 1.0)
    vals = detection_sensitivity(offsets[:, None], z[None, :], radius=R, half_length=L,
                                 depth=cylinder.depth_mm, mu=cylinder.mu_per_mm)
    return (vals @ (0.5 * z_top * w)) * 2.0 / src


def block_profile_reference(offsets_mm, scanner, *, source_length_mm: float, azimuth_rad: float = 0.0,
                            centre_z_mm: float = 0.0, n_azimuth: int = 3, n_polar: int = 48,
                            n_axial: int = 12):
    """Pair detection probability of a line source in a block scanner, by quadrature.

    The line source runs along z at ``(r cos a, r sin a)``. For an annihilation at x and a
    pair direction ±u, each photon interacts with probability ``1 - exp(-mu * s)``, s its
    total LYSO path through all blocks it crosses (the penetration model of
    :mod:`refsuite.geometry.tracing`); the pair counts when both interact. This is
    :func:`~refsuite.sensitivity.detection_sensitivity` with the cylinder replaced by the
    scanner's boxes, so gaps, corners and block depth are kept; for an ideal wall it reduces
    to Lin et al.'s S_g (eq. 10). Averaged over isotropic pair directions (Gauss-Legendre in
    the azimuth between the break points where a photon grazes a block edge parallel to the
    axis, midpoint rule in cos(theta) over the upper hemisphere) and uniformly along the
    source (midpoint rule over its part inside the blocks' axial extent). The path length
    through a box is a continuous function of the ray with kinks at the box's edges, so the
    midpoint rules converge as h^2 and the piecewise Gauss rule faster.

    Parameters
    ----------
    offsets_mm : array_like, shape (n,)
        Radial offsets r of the line source, mm (>= 0).
    scanner : refsuite.geometry.Scanner
        Blocks (boxes of ``scanner.block_size``) and their attenuation ``mu_per_mm``.
    source_length_mm : float
        Source length, mm (> 0).
    azimuth_rad : float, optional
        Direction of the sweep in the transaxial plane, rad (0: along +x).
    centre_z_mm : float, optional
        Axial centre of the source, mm.
    n_azimuth, n_polar, n_axial : int, optional
        Gauss-Legendre nodes in each azimuth interval between edge break points (see Notes),
        midpoints in cos(theta) over [0, 1] and midpoints along the source.

    Returns
    -------
    ndarray, shape (n,)
        Coincidences per decay of the whole source (dimensionless), before energy and time
        windows (which scale every offset alike and go into the fitted efficiency).

    Notes
    -----
    Accuracy on ``thull_sim`` (150 mm source, 0-60 mm): the defaults are within 0.35 % of
    ``n_polar=384, n_axial=64`` in absolute value and within 0.14 % in the normalised shape
    (what :func:`compare_radial_profile` uses), at 0.5 s per offset on one shared core;
    ``n_polar=96, n_axial=24`` is within 0.15 % absolute at 4x the cost. The azimuth rule has
    converged to 0.01 % (a uniform 256-point rule in azimuth was 1.3 % off: the kinks at the
    gaps' edges). Against the built-in MC with open windows (3e5 decays per point, r = 0, 20,
    55 mm) |z| < 1.

    A line source is symmetric only about the sweep direction's mirror plane; the shape
    depends on the sweep azimuth. Moving the sweep 2 deg (5 deg) off a block centre changes
    the normalised shape by <= 0.5 % (2.3 %) within 60 mm; off a gap by 1.4 % (4.3 %).
    The radial slope reaches -2.6 % per mm (5-10 mm on ``thull_sim``): offsets must be the
    source's true positions (measured, e.g. from the LORs' closest approach), not nominal ones.

    References
    ----------
    Lin et al., eq. 10 (pair acceptance as the product of the two photons' detection) and
    Sec. III (line-source sweep); this generalises eq. 10 from a cylinder to boxes.
    """
    from refsuite.geometry import Scanner

    if not isinstance(scanner, Scanner):
        raise TypeError(f"scanner must be a refsuite.geometry.Scanner, got {type(scanner).__name__}")
    offsets = check_finite("offsets_mm", offsets_mm).astype(float)
    if offsets.ndim != 1 or offsets.size < 1 or np.any(offsets < 0):
        raise ValueError(f"offsets_mm must be a 1-D array of radial offsets >= 0 mm, got {offsets!r}")
    src = float(check_positive("source_length_mm", source_length_mm, unit="mm"))
    azimuth = float(check_finite("azimuth_rad", azimuth_rad))
    zc = float(check_finite("centre_z_mm", centre_z_mm))
    for name, value in (("n_azimuth", n_azimuth), ("n_polar", n_polar), ("n_axial", n_axial)):
        _check_int(name, value, 1)
    cos_t = (np.arange(n_polar) + 0.5) / n_polar
    sin_t = np.sqrt(1.0 - cos_t**2)
    corners = scanner.block_corners().reshape(-1, 3)
    lo = max(zc - 0.5 * src, float(corners[:, 2].min()))
    hi = min(zc + 0.5 * src, float(corners[:, 2].max()))
    if hi <= lo:
        return np.zeros(offsets.size)
    # midpoints along the source: Gauss nodes near an axial gap would need the polar angle
    # resolved to the gap's width; the midpoint rule's errors there largely cancel
    z = lo + (np.arange(n_axial) + 0.5) * ((hi - lo) / n_axial)
    w_z = np.full(n_axial, (hi - lo) / (n_axial * src))
    half = (0.5 * np.asarray(scanner.block_size, float)).astype(np.float32)
    mu = scanner.mu_per_mm
    gauss_x, gauss_w = np.polynomial.legendre.leggauss(int(n_azimuth))
    out = np.empty(offsets.size)
    for i, r in enumerate(offsets):
        xy = np.array([r * math.cos(azimuth), r * math.sin(azimuth)])
        phi, w_phi = _azimuth_rule(corners[:, :2] - xy, gauss_x, gauss_w)
        u = np.stack([np.outer(np.cos(phi), sin_t), np.outer(np.sin(phi), sin_t),
                      np.broadcast_to(cos_t, (phi.size, n_polar))], -1).reshape(-1, 3)
        weight = np.repeat(w_phi / (2.0 * np.pi * n_polar), n_polar)
        local_u = np.einsum("bij,nj->bni", scanner.axes, u)  # (blocks, directions, 3)
        with np.errstate(divide="ignore"):
            # a ray parallel to a slab gets a huge finite slope (1e30 fits float32; inf would
            # give 0 * inf = NaN for a source exactly on the slab's plane)
            inv_u = (1.0 / np.where(local_u == 0.0, 1e-30, local_u)).astype(np.float32)
        total = 0.0
        for zz, wz in zip(z, w_z):
            fwd, back = _paths_through_blocks(np.array([xy[0], xy[1], zz]), scanner.positions, scanner.axes, half,
                                              inv_u)
            total += wz * float(np.dot(weight, np.expm1(-mu * fwd.astype(float)) * np.expm1(-mu * back.astype(float))))
        out[i] = total
    return out


def _azimuth_rule(corner_offsets, gauss_x, gauss_w):
    """Nodes and weights over [0, 2 pi): Gauss-Legendre between the azimuths where a photon
    or its partner (phi + pi) grazes a block edge parallel to the axis, seen from the source.

    Between those break points the path lengths vary smoothly with phi; across them they
    have kinks, which a uniform rule would resolve only as h^2.
    """
    seen = np.arctan2(corner_offsets[:, 1], corner_offsets[:, 0])
    breaks = np.unique(np.round(np.mod(np.concatenate([seen, seen + np.pi]), 2.0 * np.pi), 12))
    edges = np.concatenate([breaks, [breaks[0] + 2.0 * np.pi]])
    mid, width = 0.5 * (edges[1:] + edges[:-1]), 0.5 * np.diff(edges)
    keep = width > 1e-12
    phi = (mid[keep, None] + width[keep, None] * gauss_x).ravel()
    return phi, (width[keep, None] * gauss_w).ravel()


def _paths_through_blocks(x, positions, axes, half, inv_u):
    """Total path length (mm) through all boxes along +u (fwd) and -u (back) from x.

    Slab method in each block's frame: the line x + t u meets box b for t in [t0, t1];
    the forward photon crosses [max(t0, 0), t1], the backward one [t0, min(t1, 0)].
    """
    # float32 halves the time; path lengths of tens of mm keep ~1e-6 mm resolution
    o = np.einsum("bij,bj->bi", axes, x - positions)[:, None, :].astype(np.float32)  # (blocks, 1, 3)
    ta = (-half - o) * inv_u
    tb = (half - o) * inv_u
    t0 = np.max(np.minimum(ta, tb), axis=2)
    t1 = np.min(np.maximum(ta, tb), axis=2)
    fwd = np.clip(t1 - np.maximum(t0, 0.0), 0.0, None).sum(0)
    back = np.clip(np.minimum(t1, 0.0) - t0, 0.0, None).sum(0)
    return fwd, back


@dataclass(frozen=True)
class ProfileComparison:
    """Outcome of :func:`compare_radial_profile`; arrays have the shape of the offsets.

    Attributes
    ----------
    offsets_mm : ndarray
        Radial offsets, mm.
    counts, expected : ndarray
        Measured counts n and fitted expectation eps * ref.
    efficiency : float
        Fitted global efficiency eps (counts per unit of reference).
    efficiency_error : float
        Its standard error, eps / sqrt(sum n).
    z_scores : ndarray
        Pearson residuals (n - eps ref) / sqrt(eps ref).
    deviation : ndarray
        Shape deviation n / (eps ref) - 1 (dimensionless).
    deviation_error : ndarray
        Its standard error under the reference, sqrt((1 - p) / (eps ref)) with p = ref / sum(ref)
        (the fit makes the residuals multinomial).
    chi2, dof, p_value : float, int, float
        Pearson chi-square sum(z^2), dof = n_points - 1, its upper-tail probability.
    max_shape_deviation, z_max : float
        The tolerances used.
    offending_offsets_mm : ndarray
        Offsets with |z| > z_max and |deviation| > max_shape_deviation.
    passed : bool
        No offending offset.
    """

    offsets_mm: np.ndarray
    counts: np.ndarray
    expected: np.ndarray
    efficiency: float
    efficiency_error: float
    z_scores: np.ndarray
    deviation: np.ndarray
    deviation_error: np.ndarray
    chi2: float
    dof: int
    p_value: float
    max_shape_deviation: float
    z_max: float
    offending_offsets_mm: np.ndarray
    passed: bool

    @property
    def min_detectable_deviation(self) -> np.ndarray:
        """Smallest |deviation| per point that could reach |z| > z_max: z_max * deviation_error.

        Where it exceeds ``max_shape_deviation`` the counts are too few to test the tolerance.
        """
        return self.z_max * self.deviation_error

    @property
    def conclusive(self) -> bool:
        """True when every point has counts enough that a deviation of the tolerance would be
        flagged (``min_detectable_deviation <= max_shape_deviation``); a passing but
        inconclusive comparison means the sweep had too few counts to test the tolerance."""
        return bool(np.all(self.min_detectable_deviation <= self.max_shape_deviation))


def compare_radial_profile(offsets_mm, counts, reference, *, max_shape_deviation: float,
                           z_max: float = 4.0) -> ProfileComparison:
    """Compare a measured sensitivity profile with a reference shape times a fitted efficiency.

    Model: counts n_i ~ Poisson(eps * ref_i) with one global efficiency eps (detector
    efficiency, energy and time windows, decays per point). Its maximum-likelihood estimate
    is eps = sum(n) / sum(ref). A point is flagged only when it is both statistically
    significant (|z| > ``z_max``) and physically relevant (|n / (eps ref) - 1| >
    ``max_shape_deviation``): with very many counts a sub-percent mismatch of the analytic
    model is significant but not a hardware fault, and with few counts a large excursion may
    be noise.

    Parameters
    ----------
    offsets_mm : array_like, shape (n,)
        Radial offsets of the line source, mm (finite, >= 0, n >= 2).
    counts : array_like, shape (n,)
        Coincidences at each offset (true coincidences: randoms and scatter subtracted), >= 0,
        sum > 0.
    reference : array_like, shape (n,)
        Reference sensitivity at each offset (> 0), e.g. :func:`radial_profile_reference` or
        :func:`block_profile_reference`; any common scale. When the points had different
        numbers of decays (activity x live time), pass reference x decays per point.
    max_shape_deviation : float
        Largest tolerated |relative deviation| from the reference shape, in (0, 1].
    z_max : float, optional
        Significance threshold on |z| (> 0; default 4: a correct profile of 13 points is
        flagged by chance with probability < 1e-3 even without the deviation tolerance).

    Returns
    -------
    ProfileComparison

    Raises
    ------
    ValueError
        For shapes that differ, fewer than 2 points, negative or non-finite counts, a
        non-positive reference, zero total counts or tolerances out of range (the message
        names the parameter, its value and the allowed range).

    References
    ----------
    Lin et al., eqs. 10-16 (the reference S_g of a cylinder) and Sec. III (line-source sweep).
    """
    offsets = check_finite("offsets_mm", offsets_mm).astype(float)
    if offsets.ndim != 1 or offsets.size < 2:
        raise ValueError(f"offsets_mm must be a 1-D array of >= 2 offsets, got shape {offsets.shape}")
    check_in_range("offsets_mm", offsets, 0.0, np.inf, unit="mm")
    n = check_finite("counts", counts).astype(float)
    ref = check_finite("reference", reference).astype(float)
    for name, arr in (("counts", n), ("reference", ref)):
        if arr.shape != offsets.shape:
            raise ValueError(f"{name} must have the shape {offsets.shape} of offsets_mm, got {arr.shape}")
    check_in_range("counts", n, 0.0, np.inf)
    check_positive("reference", ref)
    if n.sum() <= 0:
        raise ValueError("counts must have a positive sum (sum > 0), got 0")
    tol = float(check_in_range("max_shape_deviation", max_shape_deviation, 0.0, 1.0, low_inclusive=False))
    zlim = float(check_positive("z_max", z_max))
    return _compare(offsets, n, ref, tol, zlim)


def _compare(offsets, n, ref, tol, zlim) -> ProfileComparison:
    total = n.sum()
    eps = total / ref.sum()
    mu = eps * ref
    z = (n - mu) / np.sqrt(mu)
    dev = n / mu - 1.0
    share = ref / ref.sum()
    dev_err = np.sqrt((1.0 - share) / mu)
    chi2 = float(np.sum(z**2))
    dof = offsets.size - 1
    bad = (np.abs(z) > zlim) & (np.abs(dev) > tol)
    return ProfileComparison(offsets, n, mu, float(eps), float(eps / math.sqrt(total)), z, dev, dev_err, chi2, dof,
                             float(stats.chi2.sf(chi2, dof)), tol, zlim, offsets[bad], not bool(bad.any()))


def _offsets(offsets_mm, radius):
    offsets = check_finite("offsets_mm", offsets_mm).astype(float)
    if offsets.ndim != 1 or offsets.size < 1:
        raise ValueError(f"offsets_mm must be a 1-D array of radial offsets, got shape {offsets.shape}")
    check_in_range("offsets_mm", offsets, 0.0, radius, high_inclusive=False, unit="mm")
    return offsets


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
