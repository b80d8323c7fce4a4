"""Dense displacement fields: warping, velocity integration, resizing, point mapping.

Convention (MONAI's ``Warp``): a DDF is a tensor ``(B, 3, D, H, W)`` in **voxel units** of the
fixed grid; channel ``i`` is the displacement along array axis ``i`` (D, H, W). The warped
moving image is ``moving(x + ddf(x))``, sampled trilinearly with ``align_corners=True``
(voxel centres at integer indices, the first and last voxel centres at the grid ends) and
``border`` padding. Physical displacement: ``u_i = ddf_i * spacing_i`` mm.

A stationary velocity field is integrated to a diffeomorphic DDF by scaling and squaring
(Arsigny et al. 2006, MICCAI, "A Log-Euclidean framework"; 7 steps, MONAI ``DVF2DDF``).
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.blocks import DVF2DDF, Warp

from refsuite._threads import limited_threads

__all__ = ["limited_threads", "as_volume_tensor", "warp", "warp_labels", "integrate_velocity", "resize_ddf", "map_points", "smooth_ddf"]


def as_volume_tensor(name: str, image, *, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """A volume ``(D, H, W)``, ``(C, D, H, W)`` or ``(B, C, D, H, W)`` as a 5-D float tensor."""
    t = image if isinstance(image, torch.Tensor) else torch.as_tensor(np.asarray(image))
    t = t.to(device=device, dtype=dtype)
    while t.ndim < 5:
        t = t[None]
    if t.ndim != 5:
        raise ValueError(f"{name} must be (D, H, W), (C, D, H, W) or (B, C, D, H, W), got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


@contextlib.contextmanager
def monai_quiet():
    """Silence two MONAI warnings users cannot act on: its list indexing (a torch deprecation,
    same result in the torch we pin) and Warp's note that it uses torch's native grid_sample."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using a non-tuple sequence for multidimensional indexing")
        warnings.filterwarnings("ignore", message="monai.networks.blocks.Warp: Using PyTorch native grid_sample")
        yield


def warp(image: torch.Tensor, ddf: torch.Tensor, *, mode: str = "bilinear") -> torch.Tensor:
    """Warp ``image`` (B, C, D, H, W) by ``ddf`` (B, 3, D, H, W), voxel units: ``image(x + ddf(x))``.

    ``mode`` is ``"bilinear"`` (trilinear, differentiable) or ``"nearest"`` (label maps).
    """
    if image.shape[0] != ddf.shape[0] or image.shape[2:] != ddf.shape[2:]:
        raise ValueError(
            f"image {tuple(image.shape)} and ddf {tuple(ddf.shape)} must share batch size and spatial shape"
        )
    with monai_quiet():
        return Warp(mode=mode, padding_mode="border")(image, ddf)


def warp_labels(labels, ddf: torch.Tensor) -> np.ndarray:
    """Warp an integer label map ``(D, H, W)`` with nearest-neighbour sampling; returns int ndarray."""
    lab = torch.as_tensor(np.asarray(labels), dtype=torch.float32, device=ddf.device)[None, None]
    out = warp(lab, ddf.detach().to(torch.float32), mode="nearest")
    return np.rint(out[0, 0].cpu().numpy()).astype(np.asarray(labels).dtype)


def integrate_velocity(velocity: torch.Tensor, *, num_steps: int = 7) -> torch.Tensor:
    """Scaling-and-squaring integration of a stationary velocity field (voxel units) to a DDF."""
    if int(num_steps) < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps!r}")
    return DVF2DDF(num_steps=int(num_steps), mode="bilinear", padding_mode="zeros")(velocity)


def resize_ddf(ddf: torch.Tensor, shape) -> torch.Tensor:
    """Resample a DDF to another grid of the same field of view, rescaling its voxel units.

    With ``align_corners=True`` the grid ends coincide, so a displacement of ``d`` voxels on a
    grid of ``n`` voxels is ``d * (m - 1) / (n - 1)`` voxels on a grid of ``m`` voxels.
    """
    shape = tuple(int(s) for s in shape)
    out = F.interpolate(ddf, size=shape, mode="trilinear", align_corners=True)
    factors = [(m - 1) / max(n - 1, 1) for m, n in zip(shape, ddf.shape[2:])]
    return out * torch.tensor(factors, dtype=ddf.dtype, device=ddf.device).view(1, 3, 1, 1, 1)


def map_points(points_vox, ddf) -> np.ndarray:
    """Map fixed-grid points (N, 3), voxel indices, to moving-grid positions ``p + ddf(p)``.

    The DDF is interpolated trilinearly at the points (exact at voxel centres). ``ddf`` is
    ``(3, D, H, W)`` or ``(1, 3, D, H, W)``, array or tensor, voxel units.
    """
    d = ddf.detach().cpu().numpy() if isinstance(ddf, torch.Tensor) else np.asarray(ddf)
    if d.ndim == 5:
        d = d[0]
    p = np.asarray(points_vox, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"points_vox must be (N, 3), got {p.shape}")
    from scipy.ndimage import map_coordinates

    disp = np.stack([map_coordinates(d[i].astype(np.float64), p.T, order=1, mode="nearest") for i in range(3)], 1)
    return p + disp


def smooth_ddf(param: torch.Tensor) -> torch.Tensor:
    """Separable [1, 2, 1] / 4 filter of each DDF component, shape (B, 3, D, H, W) (replicate padding).

    The central-difference stencils of MONAI's regularisers couple only voxels two apart, so
    odd-even (Nyquist) patterns of the DDF cost almost nothing, and the trilinear warp lets the
    similarity feed image noise into them. Optimising the DDF behind this filter, whose response
    is exactly 0 at the Nyquist frequency, removes that null space (cf. the smoothed DDF of
    Siebert et al. 2021, ConvexAdam, MICCAI).
    """
    k1 = torch.tensor([0.25, 0.5, 0.25], dtype=param.dtype, device=param.device)
    kernel = (k1[:, None, None] * k1[None, :, None] * k1[None, None, :]).expand(3, 1, 3, 3, 3)
    return F.conv3d(F.pad(param, (1, 1, 1, 1, 1, 1), mode="replicate"), kernel, groups=3)
