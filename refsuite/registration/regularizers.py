"""Voxel-wise weighted DDF regularisers (the CT-guided method's loss terms).

One implementation serves both the uniform baseline (a scalar weight) and the CT-guided
method (a voxel-wise weight map): the weight is broadcast against the per-voxel energy
density, so ``weighted_diffusion(ddf, c)`` is exactly ``c * monai.losses.DiffusionLoss()(ddf)``
for unit spacing (and likewise for the bending energy), which the tests check.

Energies (per voxel ``x`` of the interior, mean over batch, components and voxels)
--------------------------------------------------------------------------------
Diffusion (first-order, Balakrishnan et al. 2019, VoxelMorph, eq. 4 with weight ``w``)::

    R_diff = mean_{b, i, x} w(x) * sum_j (d u_i / d x_j)^2            (dimensionless)

Bending energy (second-order, Rueckert et al. 1999, IEEE TMI 18(8), eq. 6 with weight ``w``)::

    R_bend = mean_{b, i, x} w(x) * [sum_j (d2 u_i / d x_j^2)^2
                                    + 2 sum_{j<k} (d2 u_i / d x_j d x_k)^2]   (mm^-2)

``u_i = ddf_i * spacing_i`` is the displacement in mm; derivatives are taken in mm with MONAI's
central stencils (:func:`monai.losses.deform.spatial_gradient`,
:func:`~monai.losses.deform.spatial_gradient_squared`), on the interior ``[1:-1]`` of every
axis, so the values equal MONAI's losses up to the spacing factors. The weight map is the
paper's "voxel-wise regularisation map" (Wu et al., CT-guided spatially-varying regularisation).
"""

from __future__ import annotations

import torch
from monai.losses.deform import spatial_gradient, spatial_gradient_squared

from .transforms import monai_quiet

__all__ = ["weighted_diffusion", "weighted_bending_energy"]


def weighted_diffusion(ddf: torch.Tensor, weight, *, spacing=(1.0, 1.0, 1.0)) -> torch.Tensor:
    """Voxel-wise weighted diffusion regulariser of a DDF (dimensionless, scalar tensor).

    Parameters
    ----------
    ddf : torch.Tensor, shape (B, 3, D, H, W), voxel units
        Dense displacement field, channel ``i`` along array axis ``i`` (MONAI layout).
    weight : float or torch.Tensor broadcastable to (B, 1, D, H, W)
        Regularisation weight, >= 0 (a scalar for the uniform baseline, the CT map of
        :func:`~refsuite.registration.ct_regularization_map` for the method).
    spacing : sequence of 3 floats, mm
        Voxel size along the array axes.

    Returns
    -------
    torch.Tensor, shape ()
        ``R_diff`` of the module docstring.
    """
    return _weighted_energy(ddf, weight, spacing, order=1)


def weighted_bending_energy(ddf: torch.Tensor, weight, *, spacing=(1.0, 1.0, 1.0)) -> torch.Tensor:
    """Voxel-wise weighted bending energy of a DDF (mm^-2, scalar tensor).

    Parameters are those of :func:`weighted_diffusion`. For unit spacing and a constant
    weight ``c`` it equals ``c * monai.losses.BendingEnergyLoss()(ddf)``; for an isotropic
    spacing ``s`` it is that value divided by ``s**2``.
    """
    return _weighted_energy(ddf, weight, spacing, order=2)


def _weighted_energy(ddf, weight, spacing, *, order: int) -> torch.Tensor:
    if not isinstance(ddf, torch.Tensor):
        raise TypeError(f"ddf must be a torch.Tensor of shape (B, 3, D, H, W), got {type(ddf).__name__}")
    if ddf.ndim != 5 or ddf.shape[1] != 3:
        raise ValueError(f"ddf must have shape (B, 3, D, H, W), got {tuple(ddf.shape)}")
    if min(ddf.shape[2:]) < 3:
        raise ValueError(f"ddf needs at least 3 voxels along every spatial axis, got {tuple(ddf.shape[2:])}")
    sp = [float(s) for s in spacing]
    if len(sp) != 3 or not all(s > 0 and s < float("inf") for s in sp):
        raise ValueError(f"spacing must be 3 finite values > 0 mm, got {spacing!r}")
    w = _interior_weight(weight, ddf)
    # scale[i] converts the voxel-unit component i to mm
    scale = torch.tensor(sp, dtype=ddf.dtype, device=ddf.device).view(1, 3, 1, 1, 1)
    u = ddf * scale
    density = torch.zeros((), dtype=ddf.dtype, device=ddf.device)
    with monai_quiet():
        if order == 1:
            for j in range(3):
                density = density + (spatial_gradient(u, j + 2) / sp[j]) ** 2
        else:
            for j in range(3):
                density = density + (spatial_gradient_squared(u, j + 2, j + 2) / sp[j] ** 2) ** 2
                for k in range(j + 1, 3):
                    density = density + 2.0 * (spatial_gradient_squared(u, j + 2, k + 2) / (sp[j] * sp[k])) ** 2
    # density: (B, 3, D-2, H-2, W-2); the mean over all of it is MONAI's "mean" reduction
    return torch.mean(w * density)


def _interior_weight(weight, ddf: torch.Tensor) -> torch.Tensor:
    w = torch.as_tensor(weight, dtype=ddf.dtype, device=ddf.device)
    if w.ndim == 0:
        if not torch.isfinite(w) or w < 0:
            raise ValueError(f"weight must be finite and >= 0, got {float(w)!r}")
        return w
    if w.ndim == 3:  # a bare (D, H, W) map
        w = w[None, None]
    if w.ndim != 5:
        raise ValueError(
            f"weight must be a scalar, (D, H, W) or broadcastable to (B, 1, D, H, W), got shape {tuple(w.shape)}"
        )
    target = (ddf.shape[0], 1) + tuple(ddf.shape[2:])
    try:
        w = torch.broadcast_to(w, target)
    except RuntimeError:
        raise ValueError(f"weight of shape {tuple(w.shape)} does not broadcast to {target}") from None
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError("weight must be finite and >= 0 everywhere")
    return w[:, :, 1:-1, 1:-1, 1:-1]
