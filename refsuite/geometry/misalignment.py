"""Misaligned scanners and their evaluation (Thull et al., secs. 2.5, 2.7 and 2.8)."""

from __future__ import annotations

import enum
from dataclasses import replace

import numpy as np

from refsuite._checks import check_finite

from .clearance import _pairs_below, min_block_clearance
from .rotations import euler_to_matrix, matrix_to_euler
from .scanner import Misalignment, Scanner

__all__ = ["GroupMotion", "MAX_RESAMPLE_ROUNDS", "perturb", "procrustes_errors", "rigid_fit", "apply_rigid"]


class GroupMotion(enum.Enum):
    """How a misalignment shared by a group of blocks moves them."""

    #: the group moves as one rigid body: one rotation (angles about the global x, y, z axes,
    #: order x then y then z) about the centroid of its block centres, then one translation
    RIGID = "rigid"
    #: every block of the group gets the same local angles (about its own axes, own centre)
    #: and the same global translation, i.e. shared alignment parameters of Thull et al. 2.7
    SHARED_LOCAL = "shared_local"


#: Rounds of per-block (per-group) resampling :func:`perturb` tries before it gives up.
MAX_RESAMPLE_ROUNDS = 1000


def perturb(scanner: Scanner, *, sigma_t_mm: float, sigma_r_deg: float, groups=None,
            rng: np.random.Generator, group_motion=GroupMotion.RIGID,
            min_clearance_mm: float | None = 0.0) -> Scanner:
    """Gaussian misalignment of a blueprint, with the applied truth recorded.

    Thull et al. (secs. 2.5-2.7) perturb positions and axes with ``sigma_T`` (mm) and
    ``sigma_R`` (deg) per block, or per group of half-rings. Real blocks cannot
    interpenetrate, so by default the draw is constrained to physically possible geometry.

    Parameters
    ----------
    scanner : Scanner
        Blueprint.
    sigma_t_mm : float
        Standard deviation of each translation component (global x, y, z), mm (>= 0).
    sigma_r_deg : float
        Standard deviation of each rotation angle (about local X, Y, Z), degrees (>= 0).
    groups : None, True or int array (N,)
        ``None``: independent noise per block. ``True``: share within ``scanner.groups``.
        An array: share within these labels.
    rng : numpy.random.Generator
    group_motion : GroupMotion
        How shared noise moves a group (default rigid body).
    min_clearance_mm : float or None
        Smallest allowed signed clearance between any two blocks (exact box-to-box distance,
        minus the penetration depth when they overlap; :func:`block_clearances`), mm.
        Default 0: blocks may touch but not overlap. ``None``: the unconstrained Gaussian
        draw (blocks may overlap; :func:`overlapping_blocks` finds them).

    Returns
    -------
    Scanner
        The perturbed scanner with ``misalignment`` = per-block ``(R, T)`` such that
        ``scanner.transform(R, T)`` reproduces it (rotations about each blueprint block's
        local axes, translations global), plus the sigmas, groups and clearance rule.

    Raises
    ------
    ValueError
        Bad sigmas or groups, or no draw meets ``min_clearance_mm`` within
        :data:`MAX_RESAMPLE_ROUNDS` rounds (sigmas too large for the blueprint's gaps).

    Notes
    -----
    Clearance rule (rejection resampling per unit): the whole scanner is drawn as without
    the rule; then every unit (block, or group when the noise is shared) of a pair of blocks
    closer than ``min_clearance_mm`` gets a fresh draw of its parameters from the same
    Gaussians, and this repeats until no pair offends. Per unit rather than per whole draw:
    at sigma 1 mm / 1 deg most unconstrained draws of ``thull_sim`` and ``thull_halfrings``
    overlap somewhere, and at 2 mm / 2 deg, or for ``lin_clinical`` (whose rings touch), a
    clear whole draw is practically never found, while a few rounds per unit suffice. The
    result is reproducible for a seed (the draws come from ``rng`` in a fixed order) and
    equals the unconstrained draw whenever that is already clear. It is a truncated
    Gaussian: the units that were redrawn sit a little closer to their blueprint poses than
    ``sigma`` says, which ``sigma_t_mm`` and ``sigma_r_deg`` in the record do not show.
    """
    st = float(check_finite("sigma_t_mm", sigma_t_mm))
    sr = float(check_finite("sigma_r_deg", sigma_r_deg))
    if st < 0 or sr < 0:
        raise ValueError(f"sigma_t_mm and sigma_r_deg must be >= 0, got {st!r} mm and {sr!r} deg")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    lim = None if min_clearance_mm is None else float(check_finite("min_clearance_mm", min_clearance_mm))
    motion = GroupMotion(group_motion)
    n = scanner.n_blocks
    if groups is None:
        labels, inv, n_units = None, np.arange(n), n
    else:
        labels = scanner.groups if groups is True else np.asarray(groups, np.int64)
        if labels.shape != (n,):
            raise ValueError(f"groups must have shape ({n},), got {labels.shape}")
        uniq, inv = np.unique(labels, return_inverse=True)
        n_units = len(uniq)
    u_rot = rng.normal(0.0, np.deg2rad(sr), (n_units, 3))
    u_trans = rng.normal(0.0, st, (n_units, 3))
    rounds = MAX_RESAMPLE_ROUNDS if st > 0 or sr > 0 else 0  # nothing to redraw at zero sigma
    for k in range(rounds + 1):
        if labels is not None and motion is GroupMotion.RIGID:
            rot, trans = _rigid_group_equivalent(scanner, inv, u_rot, u_trans)
        else:
            rot, trans = u_rot[inv], u_trans[inv]
        out = scanner.transform(rot, trans)
        if lim is None:
            break
        pairs, clear = _pairs_below(out, lim)
        if not len(pairs):
            break
        if k == rounds:
            raise ValueError(_no_clear_draw(scanner, lim, st, sr, rounds, pairs, clear))
        redo = np.unique(inv[pairs.ravel()])
        u_rot[redo] = rng.normal(0.0, np.deg2rad(sr), (len(redo), 3))
        u_trans[redo] = rng.normal(0.0, st, (len(redo), 3))
    truth = Misalignment(rot, trans, st, sr, labels, None if labels is None else motion.value, lim)
    return replace(out, misalignment=truth)


def _no_clear_draw(scanner, lim, st, sr, rounds, pairs, clear) -> str:
    k = int(np.argmin(clear))
    return (f"perturb: no draw with sigma_t_mm={st:g}, sigma_r_deg={sr:g} keeps every pair of blocks at least "
            f"min_clearance_mm={lim:g} mm apart after {rounds} rounds of resampling (last draw: blocks "
            f"{pairs[k, 0]} and {pairs[k, 1]} at {clear[k]:.3g} mm; the blueprint's smallest clearance is "
            f"{min_block_clearance(scanner):.3g} mm); use smaller sigmas, a blueprint with wider gaps, or "
            "min_clearance_mm=None for the unconstrained draw")


def _rigid_group_equivalent(scanner, inv, g_rot, g_trans):
    """Per-block (local angles, global translation) of rigid group motions about centroids."""
    m_glob = euler_to_matrix(g_rot)  # rotation in the global frame, one per group
    centroid = np.stack([scanner.positions[inv == g].mean(0) for g in range(len(g_rot))])
    m, c = m_glob[inv], centroid[inv]
    p = scanner.positions
    new_p = c + np.einsum("dij,dj->di", m, p - c) + g_trans[inv]
    a = scanner.axes
    # block-local matrix of the same rotation: R_loc = A M A^T (see rotations module)
    r_loc = a @ m @ np.swapaxes(a, 1, 2)
    return matrix_to_euler(r_loc), new_p - p


def rigid_fit(source: np.ndarray, target: np.ndarray):
    """Least-squares rotation and translation mapping ``source`` onto ``target`` (Kabsch).

    Parameters
    ----------
    source, target : ndarray, shape (K, 3)

    Returns
    -------
    rotation : ndarray (3, 3)
        Proper rotation (det +1).
    translation : ndarray (3,)
        ``target ~= source @ rotation.T + translation``.
    """
    s = np.asarray(source, float)
    t = np.asarray(target, float)
    cs, ct = s.mean(0), t.mean(0)
    u, _, vt = np.linalg.svd((s - cs).T @ (t - ct))
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return rot, ct - cs @ rot.T


def apply_rigid(scanner: Scanner, rotation, translation) -> Scanner:
    """Move the whole scanner by one global rotation (3, 3) and translation (3,) mm."""
    rot = np.asarray(rotation, float)
    return replace(scanner, positions=scanner.positions @ rot.T + np.asarray(translation, float),
                   axes=scanner.axes @ rot.T, misalignment=None)


def procrustes_errors(found: Scanner, truth: Scanner) -> dict:
    """Alignment errors after a global rigid Procrustes fit, as Thull et al. (sec. 2.8).

    ``found`` is first mapped onto ``truth`` by the rotation and translation that best
    superimpose the 8 corners of every block box (Kabsch), so a misplaced phantom or
    a global motion does not count. Then, per block ``d`` and block-local dimension ``i``:

    * translation error ``|(P_found_d - P_truth_d) . A_truth_d,i|`` (mm),
    * rotation error: the angle between the axis vectors ``A_found_d,i`` and ``A_truth_d,i``
      (deg).

    Parameters
    ----------
    found, truth : Scanner
        Same number of blocks.

    Returns
    -------
    dict
        ``translation_mm_mean``, ``translation_mm_max``, ``rotation_deg_mean``,
        ``rotation_deg_max``: each shape (3,) for block-local x, y, z; also the per-block
        ``translation_mm`` and ``rotation_deg`` (N, 3) and the fitted ``global_rotation``
        (3, 3) and ``global_translation`` (3,) mm.
    """
    if found.n_blocks != truth.n_blocks:
        raise ValueError(f"found has {found.n_blocks} blocks but truth has {truth.n_blocks}")
    rot, trans = rigid_fit(found.block_corners().reshape(-1, 3), truth.block_corners().reshape(-1, 3))
    fitted = apply_rigid(found, rot, trans)
    dp = np.abs(np.einsum("dij,dj->di", truth.axes, fitted.positions - truth.positions))
    cosang = np.clip(np.einsum("dij,dij->di", fitted.axes, truth.axes), -1.0, 1.0)
    # arccos is ill-conditioned near 0: use atan2(|a x b|, a . b) for the angle
    sinang = np.linalg.norm(np.cross(fitted.axes, truth.axes), axis=-1)
    ang = np.rad2deg(np.arctan2(sinang, cosang))
    return {
        "translation_mm_mean": dp.mean(0), "translation_mm_max": dp.max(0),
        "rotation_deg_mean": ang.mean(0), "rotation_deg_max": ang.max(0),
        "translation_mm": dp, "rotation_deg": ang,
        "global_rotation": rot, "global_translation": trans,
    }
