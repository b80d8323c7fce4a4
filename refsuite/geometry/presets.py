"""Scanner presets from the source papers.

``thull_sim``       Thull et al., sec. 2.5: simulated small-animal scanner, 24 blocks of
                    48 x 48 x 10 mm LYSO in 3 rings of 8 at ~75 mm inner radius.
``thull_halfrings`` Thull et al., sec. 2.7 (real scanner no. 2): 28 blocks in 2 rings, each
                    ring two axially offset half-rings; staggered three-layer 1.3 mm needles.
``lin_clinical``    Lin et al., sec. "Simulation": R = 403.8 mm, 2L = 306 mm, 3 rings of 48
                    modules of 1 x 2 x 4 sub-blocks, each 6 x 6 LYSO crystals 3.9 x 3.9 x 20 mm.

Blocks of a ring face the axis: local Y (DOI) is the outward radial direction, Z the scanner
axis, X = Y x Z (tangential). Dimensions the papers leave open are options with the
defaults stated in each builder's docstring.
"""

from __future__ import annotations

import numpy as np

from refsuite._checks import check_positive

from .lut import CrystalLUT
from .scanner import Scanner

__all__ = ["preset", "PRESETS", "THULL_BINNINGS", "ring_axes"]

#: Crystal binnings of ``thull_sim`` (counts along local x, y=DOI, z of a 48 x 10 x 48 mm block);
#: Thull et al., Table 1 evaluate coarse planar-only binnings through 2 mm and 1 mm voxels.
THULL_BINNINGS = {
    "planar_4mm": (12, 1, 12),
    "planar_2mm": (24, 1, 24),
    "planar_1mm": (48, 1, 48),
    "4mm": (12, 2, 12),
    "2mm": (24, 5, 24),  # Thull et al., Fig. 1 (left): 24 x 24 x 5 voxels of 2 x 2 x 2 mm
    "1mm": (48, 10, 48),
}


def ring_axes(phi) -> np.ndarray:
    """Axes (n, 3, 3) of blocks at azimuths ``phi`` (rad): X tangential, Y radial out, Z = +z."""
    phi = np.asarray(phi, float)
    y = np.stack([np.cos(phi), np.sin(phi), np.zeros_like(phi)], -1)
    z = np.broadcast_to([0.0, 0.0, 1.0], y.shape)
    x = np.cross(y, z)
    return np.stack([x, y, z], -2)


def _ring_blocks(inner_radius, depth, phis, zs):
    """Positions and axes of blocks whose front faces are tangent to ``inner_radius``."""
    phis, zs = np.broadcast_arrays(np.asarray(phis, float), np.asarray(zs, float))
    rc = inner_radius + depth / 2
    pos = np.stack([rc * np.cos(phis), rc * np.sin(phis), zs], -1)
    return pos, ring_axes(phis)


def thull_sim(*, binning="2mm", inner_radius_mm=75.0, axial_gap_mm=2.0, n_rings=3,
              blocks_per_ring=8, mu_per_mm=0.087) -> Scanner:
    """Thull et al.'s simulated scanner (sec. 2.5).

    Parameters
    ----------
    binning : str or (3,) int
        A key of :data:`THULL_BINNINGS` or explicit voxel counts (x, DOI y, z).
    inner_radius_mm : float
        Distance of each block's front face from the axis (paper: "approximately 75 mm").
    axial_gap_mm : float
        Gap between rings (not given in the paper; 2 mm assumed).
    n_rings, blocks_per_ring : int
        3 and 8 in the paper.

    Returns
    -------
    Scanner
        Block size 48 (x) x 10 (y, DOI) x 48 (z) mm; ``groups`` = ring index.
    """
    if isinstance(binning, str) and binning not in THULL_BINNINGS:
        raise ValueError(f"binning must be one of {sorted(THULL_BINNINGS)} or 3 counts, got {binning!r}")
    counts = THULL_BINNINGS[binning] if isinstance(binning, str) else tuple(int(c) for c in binning)
    r = float(check_positive("inner_radius_mm", inner_radius_mm, unit="mm"))
    size = np.array([48.0, 10.0, 48.0])
    ring = np.repeat(np.arange(n_rings), blocks_per_ring)
    phi = np.tile(2 * np.pi * np.arange(blocks_per_ring) / blocks_per_ring, n_rings)
    z = (ring - (n_rings - 1) / 2) * (size[2] + axial_gap_mm)
    pos, axes = _ring_blocks(r, size[1], phi, z)
    meta = {"preset": "thull_sim", "binning": list(counts), "inner_radius_mm": r,
            "axial_gap_mm": float(axial_gap_mm), "n_rings": int(n_rings), "blocks_per_ring": int(blocks_per_ring)}
    return Scanner(pos, axes, size, CrystalLUT.regular(size, counts), mu_per_mm=mu_per_mm, groups=ring,
                   name="thull_sim", metadata=meta)


def lin_clinical(*, radius_mm=403.8, crystal_pitch_mm=4.25, mu_per_mm=0.087) -> Scanner:
    """Lin et al.'s clinical scanner (sec. "Simulation"): 144 modules, 288 crystals each.

    Each module (one block here) is 1 x 2 x 4 sub-blocks of 20 (DOI) x 25.5 x 25.5 mm, i.e.
    51 (x) x 20 (y) x 102 (z) mm; 3 rings x 102 mm = 306 mm axial length and 48 modules of
    51 mm around R = 403.8 mm leave ~1.9 mm between modules. Each sub-block holds 6 x 6
    crystals of 3.9 x 3.9 x 20 mm at ``crystal_pitch_mm`` (assumed 25.5 / 6 = 4.25 mm, i.e.
    0.35 mm reflector; a smaller pitch leaves wider gaps at the sub-block borders): 12 x 24
    crystals, built per sub-block so other pitches give the irregular layout. Points in
    the reflector gaps are binned to the nearest crystal (:meth:`CrystalLUT.locate`).
    ``radius_mm`` is the front-face radius. ``groups`` = ring index.
    """
    r = float(check_positive("radius_mm", radius_mm, unit="mm"))
    sub = 25.5
    local = (np.arange(6) - 2.5) * crystal_pitch_mm
    xs = np.concatenate([(k - 0.5) * sub + local for k in range(2)])
    zs = np.concatenate([(k - 1.5) * sub + local for k in range(4)])
    lut = CrystalLUT.from_axes(xs, [0.0], zs, [1.95, 10.0, 1.95])
    size = np.array([2 * sub, 20.0, 4 * sub])
    ring = np.repeat(np.arange(3), 48)
    phi = np.tile(2 * np.pi * np.arange(48) / 48, 3)
    pos, axes = _ring_blocks(r, size[1], phi, (ring - 1) * size[2])
    meta = {"preset": "lin_clinical", "radius_mm": r, "crystal_pitch_mm": float(crystal_pitch_mm)}
    return Scanner(pos, axes, size, lut, mu_per_mm=mu_per_mm, groups=ring, name="lin_clinical", metadata=meta)


def thull_halfrings(*, inner_radius_mm=75.0, half_ring_offset_mm=8.0, axial_gap_mm=2.0,
                    mu_per_mm=0.087) -> Scanner:
    """Thull et al.'s real scanner no. 2 (sec. 2.7): 28 blocks, 2 rings of 2 half-rings.

    Each block is three staggered arrays of 1.3 x 1.3 mm LYSO needles at 1.385 mm pitch
    (0.085 mm BaSO4), heights 3.2 (top, facing the FOV), 4.4 and 7.4 mm (bottom, at the
    SiPMs); each array is offset by half a pitch in x and z from the one below: 23 x 23,
    22 x 22 and 23 x 23 needles (1542 voxels, irregular). Block 32 x 15 x 32 mm. The inner
    radius and the axial half-ring offset are not given in the paper (75 mm and 8 mm
    assumed; the first half-ring of each ring is shifted by ``+offset/2``, the second by
    ``-offset/2``). ``groups`` = half-ring id 0..3 (``2 * ring + half``); the paper's shared
    sets "left two half-rings" and "right two half-rings" are ``groups % 2``.
    """
    r = float(check_positive("inner_radius_mm", inner_radius_mm, unit="mm"))
    pitch, needle = 1.385, 1.3
    heights = [3.2, 4.4, 7.4]
    size = np.array([32.0, sum(heights), 32.0])
    y0 = -size[1] / 2
    layers = []
    for k, h in enumerate(heights):
        n = 23 if k != 1 else 22
        c = (np.arange(n) - (n - 1) / 2) * pitch
        layers.append(CrystalLUT.from_axes(c, [y0 + h / 2], c, [needle / 2, h / 2, needle / 2]))
        y0 += h
    lut = CrystalLUT.concatenate(layers)
    per_ring = 14
    ring = np.repeat(np.arange(2), per_ring)
    k = np.tile(np.arange(per_ring), 2)
    half = (k >= per_ring // 2).astype(np.int64)
    phi = 2 * np.pi * (k + 0.5) / per_ring
    z = (ring - 0.5) * (size[2] + half_ring_offset_mm + axial_gap_mm) + np.where(half == 0, 0.5, -0.5) * half_ring_offset_mm
    pos, axes = _ring_blocks(r, size[1], phi, z)
    meta = {"preset": "thull_halfrings", "inner_radius_mm": r, "half_ring_offset_mm": float(half_ring_offset_mm),
            "axial_gap_mm": float(axial_gap_mm)}
    return Scanner(pos, axes, size, lut, mu_per_mm=mu_per_mm, groups=2 * ring + half, name="thull_halfrings",
                   metadata=meta)


PRESETS = {"thull_sim": thull_sim, "lin_clinical": lin_clinical, "thull_halfrings": thull_halfrings}


def preset(name: str, **options) -> Scanner:
    """A scanner from the papers by name: ``"thull_sim"``, ``"lin_clinical"``, ``"thull_halfrings"``.

    Keyword options are passed to the builder (e.g. ``preset("thull_sim", binning="1mm")``).
    """
    if name not in PRESETS:
        raise ValueError(f"name must be one of {sorted(PRESETS)}, got {name!r}")
    return PRESETS[name](**options)
