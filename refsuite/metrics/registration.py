"""Metrics of deformable registration: overlap, landmark error, folding and bone rigidity.

Conventions (shared with :mod:`refsuite.registration`)
-----------------------------------------------------
* Volumes are arrays ``(D, H, W)`` indexed along the array axes 0, 1, 2; ``spacing`` is the
  voxel size along the same axes, in mm.
* A dense displacement field (DDF) is ``(3, D, H, W)`` (or MONAI's ``(1, 3, D, H, W)``), in
  **voxel units**, channel ``i`` being the displacement along array axis ``i``; it maps a fixed
  voxel ``x`` to the moving position ``x + ddf(x)`` (MONAI ``Warp`` convention). The physical
  displacement is ``u_i = ddf_i * spacing_i`` (mm).
* The Jacobian of the transform ``phi(x) = x + u(x)`` is ``J = I + grad u`` with derivatives
  taken in mm (central differences inside, one-sided on the border, :func:`numpy.gradient`).

References
----------
Dice, L. R. (1945), Ecology 26(3), 297-302 (overlap).
Fitzpatrick, J. M. & West, J. B. (2001), IEEE TMI 20(9), 917-927 (target registration error).
Higham, N. J. (1986), SIAM J. Sci. Stat. Comput. 7(4), 1160-1174 (polar decomposition: the
closest rotation to a matrix, used by :func:`rigidity_error`).
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from refsuite._checks import check_finite, check_positive

__all__ = [
    "dice",
    "dice_per_label",
    "target_registration_error",
    "jacobian_matrix",
    "jacobian_determinant",
    "folding_fraction",
    "rigidity_error",
    "normalized_cross_correlation",
]


def dice(pred, truth) -> float:
    """Dice overlap ``2 |A & B| / (|A| + |B|)`` of two binary masks (dimensionless, 0..1).

    Parameters
    ----------
    pred, truth : array_like of bool, same shape
        The masks (non-zero is inside).

    Raises
    ------
    ValueError
        If the shapes differ or both masks are empty (Dice is undefined, not 1).
    """
    a = np.asarray(pred) != 0
    b = np.asarray(truth) != 0
    if a.shape != b.shape:
        raise ValueError(f"pred and truth must have the same shape, got {a.shape} and {b.shape}")
    denom = int(a.sum()) + int(b.sum())
    if denom == 0:
        raise ValueError("dice: pred and truth are both empty masks; Dice is undefined")
    return 2.0 * float(np.logical_and(a, b).sum()) / denom


def dice_per_label(pred_labels, truth_labels, labels: Iterable[int] | Mapping[str, int]) -> dict:
    """Dice of each label of two integer label maps.

    Parameters
    ----------
    pred_labels, truth_labels : array_like of int, same shape
    labels : iterable of int, or mapping name -> int
        The labels to score. A label absent from ``truth_labels`` raises (an empty organ in the
        reference is a data error, not a perfect score).

    Returns
    -------
    dict
        ``{label or name: dice}``.
    """
    p = np.asarray(pred_labels)
    t = np.asarray(truth_labels)
    items = labels.items() if isinstance(labels, Mapping) else ((int(v), int(v)) for v in labels)
    out = {}
    for key, value in items:
        tm = t == value
        if not tm.any():
            raise ValueError(f"dice_per_label: label {key!r} ({value}) is empty in truth_labels")
        out[key] = dice(p == value, tm)
    return out


def target_registration_error(mapped_points, target_points) -> np.ndarray:
    """Euclidean distance between mapped and true landmark positions (mm).

    Parameters
    ----------
    mapped_points, target_points : array_like, shape (N, 3), mm
        Landmarks mapped by the estimated transform, and their true positions.

    Returns
    -------
    ndarray, shape (N,)
        Per-landmark error in mm (Fitzpatrick & West 2001); summarise with mean/median/max.
    """
    a = check_finite("mapped_points", mapped_points)
    b = check_finite("target_points", target_points)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"mapped_points and target_points must both be (N, 3), got {a.shape} and {b.shape}")
    if a.shape[0] == 0:
        raise ValueError("target_registration_error: no landmarks given (N = 0)")
    return np.linalg.norm(a - b, axis=1)


def _ddf_and_spacing(ddf, spacing) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(ddf.detach().cpu() if hasattr(ddf, "detach") else ddf, dtype=np.float64)
    if d.ndim == 5:
        if d.shape[0] != 1:
            raise ValueError(f"ddf with a batch axis must have batch size 1, got shape {d.shape}")
        d = d[0]
    if d.ndim != 4 or d.shape[0] != 3:
        raise ValueError(f"ddf must have shape (3, D, H, W) or (1, 3, D, H, W), got {d.shape}")
    if min(d.shape[1:]) < 2:
        raise ValueError(f"ddf needs at least 2 voxels along every axis, got spatial shape {d.shape[1:]}")
    s = check_positive("spacing", spacing, unit="mm")
    if s.shape != (3,):
        raise ValueError(f"spacing must have 3 entries (mm, array-axis order), got {s.shape}")
    return check_finite("ddf", d), s


def jacobian_matrix(ddf, *, spacing) -> np.ndarray:
    """Jacobian ``J = I + grad u`` of ``x -> x + u(x)`` at every voxel (dimensionless).

    Parameters
    ----------
    ddf : array_like, shape (3, D, H, W) or (1, 3, D, H, W), voxel units
    spacing : (3,) mm

    Returns
    -------
    ndarray, shape (D, H, W, 3, 3)
        ``J[..., i, j] = delta_ij + d u_i / d x_j`` with ``u_i = ddf_i * spacing_i`` (mm).
    """
    d, s = _ddf_and_spacing(ddf, spacing)
    jac = np.empty(d.shape[1:] + (3, 3))
    for i in range(3):
        grads = np.gradient(d[i] * s[i], *s)
        for j in range(3):
            jac[..., i, j] = grads[j] + (1.0 if i == j else 0.0)
    return jac


def jacobian_determinant(ddf, *, spacing) -> np.ndarray:
    """Determinant of :func:`jacobian_matrix`, shape (D, H, W); <= 0 marks a folded voxel."""
    return np.linalg.det(jacobian_matrix(ddf, spacing=spacing))


def _mask(mask, shape) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask) != 0
    if m.shape != tuple(shape):
        raise ValueError(f"mask must have the DDF's spatial shape {tuple(shape)}, got {m.shape}")
    if not m.any():
        raise ValueError("mask is empty; the metric is undefined on no voxels")
    return m


def folding_fraction(ddf, *, spacing, mask=None) -> float:
    """Fraction of voxels (inside ``mask``) whose Jacobian determinant is <= 0 (0..1).

    Multiply by 100 for the "% folding" usually reported.
    """
    det = jacobian_determinant(ddf, spacing=spacing)
    m = _mask(mask, det.shape)
    vals = det if m is None else det[m]
    return float(np.mean(vals <= 0.0))


def rigidity_error(ddf, *, spacing, mask) -> float:
    """Mean distance of the local Jacobian from the closest rotation, inside ``mask``.

    For each voxel, ``e = || J - R(J) ||_F`` where ``R(J) = U V^T`` from the SVD
    ``J = U S V^T`` (with the sign of the last singular vector flipped when ``det(U V^T) < 0``,
    so that ``R`` is a proper rotation; Higham 1986). ``e`` is 0 for any rigid motion
    (rotation + translation) and equals ``|lambda - 1|`` summed in quadrature over the
    principal stretches otherwise (dimensionless; 0.01 is a 1 % strain).

    Parameters
    ----------
    ddf : array_like, shape (3, D, H, W) or (1, 3, D, H, W), voxel units
    spacing : (3,) mm
    mask : array_like of bool, shape (D, H, W)
        Where to measure (e.g. a bone mask of the fixed image). Must not be empty.
    """
    jac = jacobian_matrix(ddf, spacing=spacing)
    m = _mask(mask, jac.shape[:3])
    j = jac[m]
    u, _, vt = np.linalg.svd(j)
    flip = np.linalg.det(u @ vt) < 0
    u[flip, :, -1] *= -1.0
    rot = u @ vt
    return float(np.mean(np.linalg.norm(j - rot, axis=(1, 2))))


def normalized_cross_correlation(a, b, *, mask=None) -> float:
    """Global Pearson correlation of two images (inside ``mask``), in [-1, 1].

    Raises ValueError when either image is constant (the correlation is undefined).
    """
    x = check_finite("a", a)
    y = check_finite("b", b)
    if x.shape != y.shape:
        raise ValueError(f"a and b must have the same shape, got {x.shape} and {y.shape}")
    m = _mask(mask, x.shape)
    if m is not None:
        x, y = x[m], y[m]
    x = x.ravel() - x.mean()
    y = y.ravel() - y.mean()
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    if nx == 0 or ny == 0:
        raise ValueError("normalized_cross_correlation: an image is constant; NCC is undefined")
    return float(x @ y / (nx * ny))
