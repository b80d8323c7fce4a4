"""Alignment parameters and the block poses they give (Thull et al., sec. 2.1), in torch.

Per block (``groups=None``): angles ``R_d`` (rad) about block ``d``'s own blueprint axes X, Y, Z
(order and matrices of :mod:`refsuite.geometry.rotations`) and a global translation ``T_d`` (mm):

    P_d' = P_d + T_d,    A_d' = R_loc(R_d)^T A_d.

Per group, two documented motions (:class:`refsuite.geometry.GroupMotion`):

* ``SHARED_LOCAL``: every block of group ``g`` takes the same local angles ``R_g`` and global
  translation ``T_g`` (shared learnable parameters, Thull et al., sec. 2.7);
* ``RIGID``: group ``g`` moves as one rigid body, rotated by ``M_g = R(R_g)`` (angles about the
  global x, y, z) about the centroid ``c_g`` of its blueprint block centres, then translated:
  ``P_d' = c_g + M_g (P_d - c_g) + T_g``, ``A_d' = A_d M_g^T``. This is the motion
  :func:`refsuite.geometry.perturb` draws for group misalignments by default.
"""

from __future__ import annotations

import numpy as np
import torch

from refsuite.geometry import GroupMotion, Scanner, euler_to_matrix, matrix_to_euler

__all__ = ["PoseModel"]


class PoseModel:
    """Maps the learnable ``(rotations, translations)`` of blocks or groups to block poses.

    Parameters
    ----------
    blueprint : Scanner
    groups : None or int array (N,)
        Group label per block; ``None``: one parameter set per block.
    group_motion : GroupMotion
    dtype, device
        Of the torch tensors.
    """

    def __init__(self, blueprint: Scanner, groups=None, group_motion=GroupMotion.RIGID, *, dtype=torch.float64,
                 device="cpu"):
        self.motion = GroupMotion(group_motion)
        n = blueprint.n_blocks
        if groups is None:
            inv = np.arange(n)
        else:
            labels = np.asarray(groups)
            if labels.shape != (n,):
                raise ValueError(f"groups must have shape ({n},) (one label per block), got {labels.shape}")
            _, inv = np.unique(labels, return_inverse=True)
        self.per_block = groups is None
        self.index = torch.as_tensor(inv, dtype=torch.long, device=device)
        self.n_params = int(inv.max()) + 1
        t = lambda a: torch.as_tensor(np.array(a, float), dtype=dtype, device=device)  # noqa: E731
        self.positions, self.axes = t(blueprint.positions), t(blueprint.axes)
        cent = np.stack([blueprint.positions[inv == g].mean(0) for g in range(self.n_params)])
        self.centroids = t(cent)

    def poses(self, rotations: torch.Tensor, translations: torch.Tensor):
        """Block positions (N, 3) mm and axes (N, 3, 3) for parameters (G, 3) rad and (G, 3) mm."""
        r, tr = rotations[self.index], translations[self.index]
        if self.per_block or self.motion is GroupMotion.SHARED_LOCAL:
            axes = euler_to_matrix(r).transpose(-1, -2) @ self.axes
            return self.positions + tr, axes
        m = euler_to_matrix(r)  # global-frame rotation of each block's group
        c = self.centroids[self.index]
        pos = c + torch.einsum("dij,dj->di", m, self.positions - c) + tr
        return pos, self.axes @ m.transpose(-1, -2)

    def block_parameters(self, rotations, translations):
        """Per-block local angles (N, 3) rad and global translations (N, 3) mm (numpy) such that
        ``blueprint.transform(R, T)`` gives the same poses as :meth:`poses`."""
        with torch.no_grad():
            pos, axes = self.poses(rotations, translations)
        pos, axes = pos.cpu().numpy(), axes.cpu().numpy()
        a0, p0 = self.axes.cpu().numpy(), self.positions.cpu().numpy()
        # A' = R_loc^T A  =>  R_loc = A A'^T (rows of A orthonormal)
        r_loc = a0 @ np.swapaxes(axes, 1, 2)
        return matrix_to_euler(r_loc), pos - p0
