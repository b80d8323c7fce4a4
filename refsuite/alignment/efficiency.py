"""Fan-sum crystal efficiencies from a cylindrical-shell acquisition (Thull et al., sec. 2.2).

For each crystal voxel, the coincidences it recorded with the blocks of its fan (the opposite
blocks of every ring: for ``thull_sim``, each block with its three opposite blocks in its own
ring and the axially shifted counterparts, nine blocks, Thull et al., sec. 2.6 and Fig. 1 right)
are counted. The raw counts, without any geometric correction (which would need the unknown
alignment), are the efficiency estimates; they are normalised here to a mean of one (the
alignment's global scale absorbs any constant).
"""

from __future__ import annotations

import numpy as np

from refsuite._checks import check_in_range

__all__ = ["depth_layer_efficiencies", "fan_partners", "fan_sum_efficiencies"]


def fan_partners(scanner, *, fan_half_angle_deg: float = 50.0) -> np.ndarray:
    """Which block pairs form a fan: (N, N) bool.

    Block ``j`` is in the fan of block ``d`` when the transaxial directions of their DOI axes
    (local Y, pointing outwards) are opposite within ``fan_half_angle_deg``: with 8 blocks per
    ring and the default 50 deg, the opposite block and its two neighbours, in every ring.

    Parameters
    ----------
    scanner : Scanner
    fan_half_angle_deg : float
        Half opening of the fan, degrees, in (0, 180).
    """
    half = float(check_in_range("fan_half_angle_deg", fan_half_angle_deg, 0.0, 180.0, low_inclusive=False,
                                high_inclusive=False, unit="deg"))
    y = scanner.axes[:, 1, :2]
    norm = np.linalg.norm(y, axis=1)
    if np.any(norm < 1e-6):
        raise ValueError("fan_partners needs blocks whose DOI axis has a transaxial component (ring scanners)")
    y = y / norm[:, None]
    cos = -(y @ y.T)  # cosine of the angle between y_d and -y_j
    return cos >= np.cos(np.deg2rad(half))


def fan_sum_efficiencies(events, scanner, *, fan_half_angle_deg: float = 50.0, normalise: bool = True) -> np.ndarray:
    """Crystal-voxel efficiencies by the fan-sum method (Thull et al., sec. 2.2).

    Parameters
    ----------
    events : mapping
        Coincidences of a cylindrical-shell (or line-source) acquisition with ``BlockID1/2``,
        ``CrystalID1/2`` (as :func:`refsuite.io.read_coincidences` gives with ``scanner``).
    scanner : Scanner
        The blueprint: crystal ids refer to it, the fans are built from it.
    fan_half_angle_deg : float
        Fan opening (:func:`fan_partners`).
    normalise : bool
        Divide by the mean over crystals that recorded counts (default); else raw counts.

    Returns
    -------
    ndarray, shape (N, M)
        Efficiency of each crystal voxel (dimensionless with ``normalise``; counts otherwise).
        Crystals without any fan coincidence get 0 (and a warning-free zero: the alignment then
        gives their bins no expected counts, as it should for dead channels).
    """
    from .solver import prepare_events

    cr = prepare_events(events, scanner)
    m = scanner.n_crystals
    fan = fan_partners(scanner, fan_half_angle_deg=fan_half_angle_deg)
    b1, b2 = cr[:, 0] // m, cr[:, 1] // m
    ok = fan[b1, b2]
    counts = np.bincount(cr[ok].ravel(), minlength=scanner.n_blocks * m).astype(float)
    if normalise:
        hit = counts > 0
        if not hit.any():
            raise ValueError("no coincidence falls in any fan: not a shell acquisition of this scanner?")
        counts = counts / counts[hit].mean()
    return counts.reshape(scanner.n_blocks, m)


def depth_layer_efficiencies(efficiencies, scanner) -> np.ndarray:
    """Average crystal efficiencies per depth-of-interaction layer, over all blocks and planar positions.

    Fan sums of a shell (:func:`fan_sum_efficiencies`) mix three things: the intrinsic efficiency,
    the photon's chance of reaching a deep layer (attenuation in the crystals in front) and the
    geometric fan profile (axial and transaxial position). The alignment model has no crystal
    attenuation, so it needs the depth factor, but the geometric profile, which it already models
    with its line integrals, biases the normalisation. Averaging over the crystals of one depth
    (same local y centre) keeps the first and removes the rest (a component-based normalisation).

    Parameters
    ----------
    efficiencies : ndarray (N, M)
    scanner : Scanner

    Returns
    -------
    ndarray (N, M), the mean of ``efficiencies`` over every crystal of the same DOI layer.
    """
    eff = np.asarray(efficiencies, float)
    if eff.shape != (scanner.n_blocks, scanner.n_crystals):
        raise ValueError(f"efficiencies must have shape {(scanner.n_blocks, scanner.n_crystals)}, got {eff.shape}")
    _, layer = np.unique(np.round(scanner.crystals.centres[:, 1], 6), return_inverse=True)
    means = np.bincount(layer, weights=eff.sum(0)) / (np.bincount(layer) * eff.shape[0])
    return np.broadcast_to(means[layer], eff.shape).copy()
