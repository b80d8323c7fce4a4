"""Peak-to-valley ratios of a reconstructed hot-rod (Derenzo-type) phantom, per rod size.

For the sector of rods of diameter ``d`` (:class:`refsuite.phantoms.HotRod`: rows of pitch
``2 d``), peaks are the image on the rod axes and valleys the image at the centres of the
lattice triangles (Delaunay triangles of the sector's rod axes whose circumradius is at most
``1.3 d``: the lattice's own, 1.25 d, not the thin ones along the sector's hull), the points
farthest from every rod. Both are read by trilinear interpolation on the slices of the central
part of the rods (``|z - z_c| <= length / 2 - margin``), which keeps sub-voxel rods measurable.
PVR = mean(peaks) / mean(valleys), as Thull et al. report for image quality.
"""

from __future__ import annotations

import numpy as np

__all__ = ["hot_rod_line_profiles", "hot_rod_sample_points", "hot_rod_peak_to_valley"]


def hot_rod_sample_points(phantom) -> dict:
    """``{diameter_mm: (peaks (P, 2), valleys (V, 2))}`` transaxial points, mm.

    Sizes whose sector has no lattice triangle (fewer than three rods) are left out.
    """
    from scipy.spatial import Delaunay

    centres, radii = phantom.rods()
    out = {}
    for d in phantom.diameters_mm:
        pts = centres[np.isclose(2 * radii, d)]
        if len(pts) < 3:
            continue
        tri = pts[Delaunay(pts).simplices]  # (T, 3, 2)
        a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
        # circumcentre of each triangle
        ax, ay, bx, by, cx, cy = a[:, 0], a[:, 1], b[:, 0], b[:, 1], c[:, 0], c[:, 1]
        den = 2 * (ax * (by - cy) + bx * (cy - ay) + cx * (ay - by))
        ok = np.abs(den) > 1e-12
        ux = ((ax**2 + ay**2) * (by - cy) + (bx**2 + by**2) * (cy - ay) + (cx**2 + cy**2) * (ay - by)) / np.where(ok, den, 1)
        uy = ((ax**2 + ay**2) * (cx - bx) + (bx**2 + by**2) * (ax - cx) + (cx**2 + cy**2) * (bx - ax)) / np.where(ok, den, 1)
        cc = np.stack([ux, uy], 1)
        r = np.linalg.norm(cc - a, axis=1)
        keep = ok & (r <= 1.3 * d)
        if keep.any():
            out[float(d)] = (pts, cc[keep])
    return out


def hot_rod_peak_to_valley(image, phantom, *, voxel_size, origin, axial_margin_mm: float = 2.0) -> dict:
    """``{diameter_mm: PVR}`` of a reconstructed ``image`` (x, y, z) of ``phantom``.

    Parameters
    ----------
    image : ndarray (nx, ny, nz)
    phantom : refsuite.phantoms.HotRod
    voxel_size : float or (3,)
        mm.
    origin : (3,)
        Centre of voxel (0, 0, 0), mm.
    axial_margin_mm : float
        Slices closer than this to the rods' ends are not used, mm.
    """
    from scipy.ndimage import map_coordinates

    img, vs, org, slices = _central_slices(image, phantom, voxel_size, origin, axial_margin_mm)

    def mean_at(xy):
        ix = (xy[:, 0] - org[0]) / vs[0]
        iy = (xy[:, 1] - org[1]) / vs[1]
        coords = np.stack([np.repeat(ix, slices.size), np.repeat(iy, slices.size), np.tile(slices, len(xy))])
        return float(map_coordinates(img, coords, order=1, mode="nearest").mean())

    return {d: mean_at(p) / max(mean_at(v), 1e-30) for d, (p, v) in hot_rod_sample_points(phantom).items()}


def hot_rod_line_profiles(image, phantom, *, voxel_size, origin, n_samples: int = 200,
                          axial_margin_mm: float = 2.0) -> dict:
    """Line profiles through one row of rods per size (Thull et al., Fig. 6 analogue).

    For each rod size the profile runs along the lattice row (perpendicular to the sector's
    bisector) holding the most rods of that size, from one diameter before the first rod axis
    to one after the last, and is the image averaged over the slices of the rods' central part
    (``|z - z_c| <= length / 2 - axial_margin_mm``), read by bilinear interpolation.

    Returns
    -------
    dict ``{diameter_mm: (positions_mm (n_samples,), values (n_samples,), rod_positions_mm (R,))}``
        Positions along the row (mm, 0 = the bisector); sizes with fewer than two rods on any
        row are left out.
    """
    from scipy.ndimage import map_coordinates

    img, vs, org, slices = _central_slices(image, phantom, voxel_size, origin, axial_margin_mm)
    plane = img[:, :, slices].mean(axis=2)
    centres, radii = phantom.rods()
    rel = centres - np.asarray(phantom.centre_mm[:2], float)
    width = 2 * np.pi / len(phantom.diameters_mm)
    out = {}
    for k, d in enumerate(phantom.diameters_mm):
        ang = np.deg2rad(phantom.rotation_deg) + k * width + width / 2
        u, v = np.array([np.cos(ang), np.sin(ang)]), np.array([-np.sin(ang), np.cos(ang)])
        pts = rel[np.isclose(2 * radii, d)]
        if len(pts) < 2:
            continue
        along = np.round(pts @ u / (2.0 * d))  # row index: HotRod rows are one pitch (2 d) apart
        rows, counts = np.unique(along, return_counts=True)
        if counts.max() < 2:
            continue
        best = rows[counts == counts.max()].max()  # the outermost of the longest rows
        on_row = pts[along == best]
        t_rods = np.sort(on_row @ v)
        s = float(np.mean(on_row @ u))
        t = np.linspace(t_rods[0] - d, t_rods[-1] + d, int(n_samples))
        xy = s * u[None] + t[:, None] * v[None] + np.asarray(phantom.centre_mm[:2], float)
        idx = np.stack([(xy[:, 0] - org[0]) / vs[0], (xy[:, 1] - org[1]) / vs[1]])
        out[float(d)] = (t, map_coordinates(plane, idx, order=1, mode="nearest"), t_rods)
    return out


def _central_slices(image, phantom, voxel_size, origin, axial_margin_mm):
    """The image (float), voxel size (3,), origin (3,) and the slices of the rods' central part."""
    img = np.asarray(image, float)
    if img.ndim != 3:
        raise ValueError(f"image must be 3-D (x, y, z), got shape {img.shape}")
    vs = np.broadcast_to(np.asarray(voxel_size, float), (3,))
    org = np.asarray(origin, float)
    z = org[2] + vs[2] * np.arange(img.shape[2])
    h = phantom.length_mm / 2 - axial_margin_mm
    if h <= 0:
        raise ValueError(f"axial_margin_mm={axial_margin_mm} leaves none of the rods' {phantom.length_mm} mm length")
    slices = np.flatnonzero(np.abs(z - phantom.centre_mm[2]) <= h)
    if slices.size == 0:
        raise ValueError("the image holds no slice of the rods' central part")
    return img, vs, org, slices
