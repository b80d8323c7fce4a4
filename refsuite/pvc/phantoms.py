"""Body-like attenuation maps and random 177Lu activity distributions (Leube et al., Fig. 1).

The paper used XCAT phantoms (thorax, abdomen, head bed positions) and random shapes of
4-100 voxels placed inside the body until a target active volume was reached, multiplied by
a smooth non-uniform pattern and scaled to patient-like activities. Here the anatomy is
analytic (ellipses with lungs, spine, sternum, skull) with randomised size and shape; the
rest follows the paper.

Attenuation coefficients at 208 keV (NIST XCOM mass attenuation x density): soft tissue
0.0143 /mm (1.05 g/cm^3), lung 0.0041 /mm (0.30 g/cm^3), cortical bone 0.0241 /mm
(1.92 g/cm^3), air 0.

Activity concentrations: the mean concentration in the active volume is drawn
log-uniformly in [50, 1000] kBq/mL (peri-therapeutic 177Lu SPECT 1-4 days after 7.4 GBq:
kidneys and lesions of the order of 0.1-1 MBq/mL); the active volume is 2-15 % of the body
volume, giving 0.1-3 GBq in a full-size field of view.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .._checks import check_in_range, check_positive

__all__ = [
    "BodyRegion",
    "MU_208KEV_PER_MM",
    "attenuation_map",
    "random_shape",
    "activity_distribution",
    "cube_phantom",
    "ActivityTruth",
]

MU_208KEV_PER_MM = {"soft_tissue": 0.0143, "lung": 0.0041, "bone": 0.0241, "air": 0.0}
CONCENTRATION_RANGE_KBQ_ML = (50.0, 1000.0)
ACTIVE_FRACTION_RANGE = (0.02, 0.15)
SHAPE_SIZE_RANGE = (4, 100)
_ADULT_FOV_MM = 128 * 4.8  # the paper's 128-matrix, 4.8 mm field of view


class BodyRegion(enum.Enum):
    """Bed position of the paper's dataset: 40 % thorax, 40 % abdomen, 20 % head."""

    THORAX = "thorax"
    ABDOMEN = "abdomen"
    HEAD = "head"


_REGION_P = {BodyRegion.THORAX: 0.4, BodyRegion.ABDOMEN: 0.4, BodyRegion.HEAD: 0.2}


def _grid(shape, voxel_mm):
    nz, ny, nx = shape
    z = (np.arange(nz) - (nz - 1) / 2) * voxel_mm
    y = (np.arange(ny) - (ny - 1) / 2) * voxel_mm
    x = (np.arange(nx) - (nx - 1) / 2) * voxel_mm
    return np.meshgrid(z, y, x, indexing="ij")


def attenuation_map(shape, voxel_mm: float, *, region: BodyRegion | None = None, rng: np.random.Generator,
                    scale: float | None = None) -> tuple[np.ndarray, BodyRegion]:
    """A randomised analytic body (1/mm at 208 keV) filling the transaxial field of view.

    Parameters
    ----------
    shape : (nz, ny, nx)
    voxel_mm : float
    region : BodyRegion, optional
        Drawn with the paper's proportions (thorax 0.4, abdomen 0.4, head 0.2) when None.
    rng : numpy Generator
    scale : float, optional
        Size of the body relative to an adult in the paper's 614 mm field of view; by
        default ``nx * voxel_mm / 614 mm`` so a smaller matrix holds a proportionally
        smaller body (quick mode).

    Returns
    -------
    mu : (nz, ny, nx) ndarray, 1/mm
    region : BodyRegion
    """
    check_positive("voxel_mm", voxel_mm, unit="mm")
    if region is None:
        keys = list(_REGION_P)
        region = keys[rng.choice(len(keys), p=[_REGION_P[k] for k in keys])]
    if not isinstance(region, BodyRegion):
        raise TypeError(f"region must be a BodyRegion or None, got {region!r}")
    nz, ny, nx = shape
    s = nx * voxel_mm / _ADULT_FOV_MM if scale is None else float(check_positive("scale", scale))
    z, y, x = _grid(shape, voxel_mm)
    zr = z / max(nz * voxel_mm / 2, 1e-9)  # -1 ... 1 along the bed position
    mu = np.zeros(shape)
    soft, lung, bone = (MU_208KEV_PER_MM[k] for k in ("soft_tissue", "lung", "bone"))
    # Smooth axial variation of the outline (+-8 %) and a random AP/LR offset of the body.
    taper = 1.0 + rng.uniform(-0.08, 0.08) * zr + rng.uniform(-0.05, 0.05) * zr**2
    y0, x0 = rng.uniform(-10, 10, 2) * s
    yy, xx = y - y0, x - x0
    if region is BodyRegion.HEAD:
        a, b = rng.uniform(70, 85) * s * taper, rng.uniform(90, 105) * s * taper
        r = np.sqrt((xx / a) ** 2 + (yy / b) ** 2)
        mu[r <= 1] = bone
        skull = rng.uniform(5, 8) * s
        mu[np.sqrt((xx / (a - skull)) ** 2 + (yy / (b - skull)) ** 2) <= 1] = soft
        return mu, region
    a, b = rng.uniform(150, 200) * s * taper, rng.uniform(95, 130) * s * taper  # LR, AP half axes
    mu[(xx / a) ** 2 + (yy / b) ** 2 <= 1] = soft
    if region is BodyRegion.THORAX:
        for side in (-1, 1):
            la, lb = rng.uniform(0.28, 0.36) * a, rng.uniform(0.55, 0.7) * b
            cx, cy = side * rng.uniform(0.42, 0.52) * a, rng.uniform(-0.1, 0.05) * b
            mu[((xx - cx) / la) ** 2 + ((yy - cy) / lb) ** 2 <= 1] = lung
        sternum = (np.abs(xx) <= 12 * s) & (np.abs(yy + 0.85 * b) <= 6 * s)
        mu[sternum] = bone
    # Spine: vertebral body posterior (+y) with the spinal canal behind it.
    rv = rng.uniform(16, 22) * s
    cy = 0.55 * b
    mu[xx**2 + (yy - cy) ** 2 <= rv**2] = bone
    mu[xx**2 + (yy - cy - 1.5 * rv) ** 2 <= (0.45 * rv) ** 2] = soft
    return mu, region


def random_shape(n_voxels: int, rng: np.random.Generator) -> np.ndarray:
    """A random compact shape of exactly ``n_voxels`` face-connected voxels, as a (k, 3) offset list.

    Grown from one voxel by repeatedly adding a random face neighbour of the current shape
    (an Eden-type random aggregate; Leube et al. 2022 use random shapes of 4-100 voxels).
    """
    n = int(n_voxels)
    if n < 1:
        raise ValueError(f"n_voxels must be >= 1, got {n_voxels!r}")
    steps = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
    shape = {(0, 0, 0)}
    cells = [(0, 0, 0)]
    while len(cells) < n:
        base = cells[rng.integers(len(cells))]
        step = steps[rng.integers(6)]
        cand = (base[0] + step[0], base[1] + step[1], base[2] + step[2])
        if cand not in shape:
            shape.add(cand)
            cells.append(cand)
    return np.array(cells, dtype=np.int64)


def _smooth_pattern(shape, rng, sigma_vox: float, low: float) -> np.ndarray:
    """Spatially contiguous non-uniform pattern in [low, 1] (Gaussian-filtered white noise)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma_vox, mode="wrap")
    field = (field - field.min()) / max(np.ptp(field), 1e-12)
    return low + (1.0 - low) * field


@dataclass(frozen=True)
class ActivityTruth:
    """Ground truth of one case, recorded next to its SPECT images."""

    concentration_kbq_ml: np.ndarray  # (nz, ny, nx)
    mask: np.ndarray  # (nz, ny, nx) bool, active voxels
    total_activity_mbq: float
    mean_concentration_kbq_ml: float
    active_fraction: float
    n_shapes: int


def activity_distribution(body_mu: np.ndarray, voxel_mm: float, *, rng: np.random.Generator,
                          active_fraction: float | None = None,
                          mean_concentration_kbq_ml: float | None = None) -> ActivityTruth:
    """Random shapes (4-100 voxels) placed in the body until a target active volume is reached.

    Parameters
    ----------
    body_mu : (nz, ny, nx) array
        Attenuation map; voxels with mu > 0 are inside the body.
    voxel_mm : float
    rng : numpy Generator
    active_fraction : float, optional
        Target active volume as a fraction of the body volume; drawn in [0.02, 0.15].
    mean_concentration_kbq_ml : float, optional
        Mean concentration in the active volume; drawn log-uniformly in [50, 1000] kBq/mL.
    """
    body = np.asarray(body_mu) > 0
    if not body.any():
        raise ValueError("body_mu has no voxel with mu > 0: empty body")
    frac = rng.uniform(*ACTIVE_FRACTION_RANGE) if active_fraction is None else float(
        check_in_range("active_fraction", active_fraction, 0.0, 1.0, low_inclusive=False))
    conc = np.exp(rng.uniform(*np.log(CONCENTRATION_RANGE_KBQ_ML))) if mean_concentration_kbq_ml is None else float(
        check_positive("mean_concentration_kbq_ml", mean_concentration_kbq_ml))
    # Keep shapes one voxel away from the skin so the active volume lies inside the body.
    inside = ndimage.binary_erosion(body, iterations=1)
    candidates = np.argwhere(inside if inside.any() else body)
    target = max(1, int(round(frac * body.sum())))
    mask = np.zeros(body.shape, dtype=bool)
    n_shapes = 0
    for _ in range(100_000):
        if mask.sum() >= target:
            break
        offsets = random_shape(int(rng.integers(SHAPE_SIZE_RANGE[0], SHAPE_SIZE_RANGE[1] + 1)), rng)
        centre = candidates[rng.integers(len(candidates))]
        pts = centre + offsets - offsets.mean(0).round().astype(np.int64)
        ok = np.all((pts >= 0) & (pts < np.array(body.shape)), axis=1)
        pts = pts[ok]
        pts = pts[body[pts[:, 0], pts[:, 1], pts[:, 2]]]
        if len(pts):
            mask[pts[:, 0], pts[:, 1], pts[:, 2]] = True
            n_shapes += 1
    pattern = _smooth_pattern(body.shape, rng, sigma_vox=rng.uniform(2.0, 5.0), low=rng.uniform(0.2, 0.6))
    c = np.where(mask, pattern, 0.0)
    c *= conc / c[mask].mean()
    voxel_ml = (voxel_mm / 10.0) ** 3
    return ActivityTruth(
        concentration_kbq_ml=c,
        mask=mask,
        total_activity_mbq=float(c.sum() * voxel_ml / 1000.0),
        mean_concentration_kbq_ml=float(conc),
        active_fraction=float(mask.sum() / body.sum()),
        n_shapes=n_shapes,
    )


def cube_phantom(body_mu: np.ndarray, edge_voxels: int, *, concentration_kbq_ml: float = 500.0,
                 background: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A uniform cube of ``edge_voxels`` placed centrally (Leube et al., minimum feature size).

    Returns ``(concentration, cube_mask)``; the cube replaces ``background`` (kBq/mL) there.
    """
    e = int(edge_voxels)
    shape = np.asarray(body_mu).shape
    if not 1 <= e <= min(shape):
        raise ValueError(f"edge_voxels must lie in [1, {min(shape)}], got {edge_voxels!r}")
    check_positive("concentration_kbq_ml", concentration_kbq_ml)
    start = [(n - e) // 2 for n in shape]
    cube = np.zeros(shape, dtype=bool)
    cube[start[0]:start[0] + e, start[1]:start[1] + e, start[2]:start[2] + e] = True
    conc = np.zeros(shape) if background is None else np.array(background, dtype=np.float64)
    conc[cube] = concentration_kbq_ml
    return conc, cube
