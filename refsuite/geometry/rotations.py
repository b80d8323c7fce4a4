"""Rotations about a detector block's local axes (Thull et al., sec. 2.1).

Convention (used by :meth:`refsuite.geometry.Scanner.transform`, :func:`perturb` and the
alignment solver): a block's rotation is three angles ``r = (r_x, r_y, r_z)`` in radians
about the block's *own* blueprint axes X, Y, Z, applied in the order X, then Y, then Z
(extrinsic, in the block frame). In the block's local coordinates the rotation matrix is

    R_loc(r) = R_z(r_z) @ R_y(r_y) @ R_x(r_x)

with the usual right-handed active matrices. For a block whose axes are the rows of ``A``
(global coordinates of local X, Y, Z) the rotated axes are ``A_new = R_loc(r).T @ A`` and
the global rotation matrix is ``M = A.T @ R_loc(r) @ A``, so that a local point ``l`` maps to
``P_new + l @ A_new``.

The functions accept numpy arrays and, without importing torch here, torch tensors too
(they dispatch on the input type), so a torch solver can differentiate through them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["euler_to_matrix", "matrix_to_euler", "axis_angle_matrix", "pose_points"]


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def euler_to_matrix(angles):
    """Rotation matrices ``R_z(c) R_y(b) R_x(a)`` for angles ``(a, b, c)``.

    Parameters
    ----------
    angles : array_like or torch.Tensor, shape (..., 3)
        Rotation angles about the local x, y, z axes, radians.

    Returns
    -------
    ndarray or torch.Tensor, shape (..., 3, 3)
        Active rotation matrices in the local frame (columns are the images of the local
        basis vectors).
    """
    if _is_torch(angles):
        import torch

        lib, stack = torch, torch.stack
    else:
        angles = np.asarray(angles, dtype=np.float64)
        lib, stack = np, np.stack
    a, b, c = angles[..., 0], angles[..., 1], angles[..., 2]
    ca, sa = lib.cos(a), lib.sin(a)
    cb, sb = lib.cos(b), lib.sin(b)
    cc, sc = lib.cos(c), lib.sin(c)
    rows = [
        stack([cc * cb, cc * sb * sa - sc * ca, cc * sb * ca + sc * sa], -1),
        stack([sc * cb, sc * sb * sa + cc * ca, sc * sb * ca - cc * sa], -1),
        stack([-sb, cb * sa, cb * ca], -1),
    ]
    return stack(rows, -2)


def matrix_to_euler(matrix: np.ndarray) -> np.ndarray:
    """Inverse of :func:`euler_to_matrix` for ``|r_y| < 90 deg``.

    Parameters
    ----------
    matrix : ndarray, shape (..., 3, 3)
        Rotation matrices.

    Returns
    -------
    ndarray, shape (..., 3)
        Angles ``(r_x, r_y, r_z)`` in radians, ``r_y`` in [-pi/2, pi/2].
    """
    m = np.asarray(matrix, dtype=np.float64)
    a = np.arctan2(m[..., 2, 1], m[..., 2, 2])
    b = np.arctan2(-m[..., 2, 0], np.hypot(m[..., 0, 0], m[..., 1, 0]))
    c = np.arctan2(m[..., 1, 0], m[..., 0, 0])
    return np.stack([a, b, c], -1)


def axis_angle_matrix(axis: np.ndarray, angle) -> np.ndarray:
    """Rodrigues rotation matrices about unit vectors ``axis`` (..., 3) by ``angle`` (...) rad."""
    k = np.asarray(axis, dtype=np.float64)
    k = k / np.linalg.norm(k, axis=-1, keepdims=True)
    t = np.asarray(angle, dtype=np.float64)[..., None, None]
    kx = np.zeros(k.shape[:-1] + (3, 3))
    kx[..., 0, 1], kx[..., 0, 2] = -k[..., 2], k[..., 1]
    kx[..., 1, 0], kx[..., 1, 2] = k[..., 2], -k[..., 0]
    kx[..., 2, 0], kx[..., 2, 1] = -k[..., 1], k[..., 0]
    eye = np.broadcast_to(np.eye(3), kx.shape)
    return eye + np.sin(t) * kx + (1.0 - np.cos(t)) * (kx @ kx)


def pose_points(local_points, block_ids, positions, axes, rotations=None, translations=None):
    """Global positions of block-local points under per-block rotations and translations.

    The differentiable form of ``Scanner.transform(rotations, translations).to_global(...)``
    for solvers (Thull et al., sec. 2.1): with ``A`` the blueprint axes of the block,

        p = P + T + l @ (R_loc(r).T @ A)

    where ``R_loc`` is :func:`euler_to_matrix`. Works on numpy arrays or torch tensors
    (gradients flow to ``rotations`` and ``translations``).

    Parameters
    ----------
    local_points : (..., 3)
        Points in the block frame, mm (crystal-voxel centres or samples inside voxels).
    block_ids : int array (...)
        Block of each point.
    positions : (N, 3)
        Blueprint block centres, mm.
    axes : (N, 3, 3)
        Blueprint block axes (rows X, Y, Z).
    rotations : (N, 3), optional
        Angles about each block's local axes, radians.
    translations : (N, 3), optional
        Global translations, mm.

    Returns
    -------
    (..., 3) global points, mm (same array type as ``local_points``).
    """
    a = axes
    if rotations is not None:
        r = euler_to_matrix(rotations)
        a = (r.transpose(-1, -2) if _is_torch(r) else np.swapaxes(r, -1, -2)) @ axes
    p = positions if translations is None else positions + translations
    ab, pb = a[block_ids], p[block_ids]
    if _is_torch(local_points):
        import torch

        return pb + torch.einsum("...i,...ij->...j", local_points, ab)
    return pb + np.einsum("...i,...ij->...j", np.asarray(local_points, float), ab)
