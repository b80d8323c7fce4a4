"""Misaligned scanners and their evaluation (Thull et al., secs. 2.5, 2.7 and 2.8)."""

from __future__ import annotations

import enum
from dataclasses import replace

import numpy as np

from refsuite._checks import check_finite

from .rotations import euler_to_matrix, matrix_to_euler
from .scanner import Misalignment, Scanner

__all__ = ["GroupMotion", "perturb", "procrustes_errors", "rigid_fit", "apply_rigid", "overlapping_blocks"]


class GroupMotion(enum.Enum):
    """How a misalignment shared by a group of blocks moves them."""

    #: the group moves as one rigid body: one rotation (angles about the global x, y, z axes,
    #: order x then y then z) about the centroid of its block centres, then one translation
    RIGID = "rigid"
    #: every block of the group gets the same local angles (about its own axes, own centre)
    #: and the same global translation, i.e. shared alignment parameters of Thull et al. 2.7
    SHARED_LOCAL = "shared_local"


def perturb(scanner: Scanner, *, sigma_t_mm: float, sigma_r_deg: float, groups=None,
            rng: np.random.Generator, group_motion=GroupMotion.RIGID) -> Scanner:
    """Gaussian misalignment of a blueprint, with the applied truth recorded.

    Thull et al. (secs. 2.5-2.7) perturb positions and axes with ``sigma_T`` (mm) and
    ``sigma_R`` (deg) per block, or per group of half-rings.

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

    Returns
    -------
    Scanner
        The perturbed scanner with ``misalignment`` = per-block ``(R, T)`` such that
        ``scanner.transform(R, T)`` reproduces it (rotations about each blueprint block's
        local axes, translations global), plus the sigmas and groups.
    """
    st = float(check_finite("sigma_t_mm", sigma_t_mm))
    sr = float(check_finite("sigma_r_deg", sigma_r_deg))
    if st < 0 or sr < 0:
        raise ValueError(f"sigma_t_mm and sigma_r_deg must be >= 0, got {st!r} mm and {sr!r} deg")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    motion = GroupMotion(group_motion)
    n = scanner.n_blocks
    if groups is None:
        rot = rng.normal(0.0, np.deg2rad(sr), (n, 3))
        trans = rng.normal(0.0, st, (n, 3))
        labels = None
    else:
        labels = scanner.groups if groups is True else np.asarray(groups, np.int64)
        if labels.shape != (n,):
            raise ValueError(f"groups must have shape ({n},), got {labels.shape}")
        uniq, inv = np.unique(labels, return_inverse=True)
        g_rot = rng.normal(0.0, np.deg2rad(sr), (len(uniq), 3))
        g_trans = rng.normal(0.0, st, (len(uniq), 3))
        if motion is GroupMotion.SHARED_LOCAL:
            rot, trans = g_rot[inv], g_trans[inv]
        else:
            rot, trans = _rigid_group_equivalent(scanner, inv, g_rot, g_trans)
    out = scanner.transform(rot, trans)
    truth = Misalignment(rot, trans, st, sr, labels, None if labels is None else motion.value)
    return replace(out, misalignment=truth)


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


def overlapping_blocks(scanner: Scanner, *, tolerance_mm: float = 0.0) -> np.ndarray:
    """Pairs of blocks whose boxes intersect (separating-axis test for oriented boxes).

    Gaussian misalignments (:func:`perturb`) can push neighbours into each other; GATE
    (Geant4) rejects overlapping volumes and the built-in MC assumes disjoint blocks.

    Parameters
    ----------
    scanner : Scanner
    tolerance_mm : float
        Boxes must interpenetrate by more than this to count, mm.

    Returns
    -------
    ndarray of int, shape (K, 2)
        Block index pairs ``(i, j)``, ``i < j``.
    """
    h = scanner.block_size / 2
    radius = np.linalg.norm(h)
    i, j = np.triu_indices(scanner.n_blocks, 1)
    d = scanner.positions[j] - scanner.positions[i]
    near = np.linalg.norm(d, axis=1) <= 2 * radius + tolerance_mm
    i, j, d = i[near], j[near], d[near]
    a, b = scanner.axes[i], scanner.axes[j]
    cand = [a[:, k] for k in range(3)] + [b[:, k] for k in range(3)]
    cand += [np.cross(a[:, k], b[:, m]) for k in range(3) for m in range(3)]
    separated = np.zeros(len(i), bool)
    for axis in cand:
        norm = np.linalg.norm(axis, axis=1)
        ok = norm > 1e-9  # parallel edges give a null cross product: no new axis
        u = axis / np.where(ok, norm, 1.0)[:, None]
        ra = np.abs(np.einsum("nkj,nj->nk", a, u)) @ h
        rb = np.abs(np.einsum("nkj,nj->nk", b, u)) @ h
        separated |= ok & (np.abs(np.einsum("nj,nj->n", d, u)) >= ra + rb - tolerance_mm)
    return np.column_stack([i[~separated], j[~separated]])
