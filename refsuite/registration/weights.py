"""CT-derived voxel-wise regularisation map (the paper's contribution).

The paper (Wu et al., "CT-Guided Spatially-varying Regularization for Voxel-Wise Deformable
Whole-Body PET Registration") replaces the single global weight of the DDF regulariser by a
voxel-wise map built from the paired CT: "a piecewise linear function of CT Hounsfield units
that assigns higher regularisation weights to bone-like intensities", after intensity
clipping (contrast agent, metal) and spatial smoothing (partial volume at bone boundaries).
No equation is given; the form implemented here is::

    h      = clip(HU, clip_low, clip_high)
    t      = clip((h - hu_soft) / (hu_bone - hu_soft), 0, 1)
    w_raw  = soft_weight + (bone_weight - soft_weight) * t
    w      = G_sigma * w_raw          (Gaussian, sigma = smoothing_mm in mm, per axis / spacing)

so air, lung, fat and soft tissue (HU <= hu_soft) get ``soft_weight``, bone (HU >= hu_bone)
gets ``bone_weight``, with a linear ramp between. Defaults: ``hu_soft`` = 150 HU lies above
enhanced soft tissue and blood (40-120 HU), ``hu_bone`` = 400 HU below cortical bone
(> 700 HU) and around dense cancellous bone (DenOtter & Schubert 2019, "Hounsfield unit").
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from refsuite._checks import check_finite, check_positive

__all__ = ["ct_regularization_map", "check_ct_hu"]


def check_ct_hu(name: str, ct_hu) -> np.ndarray:
    """Validate that ``ct_hu`` looks like a CT in Hounsfield units; return it as float array.

    A CT in HU spans at least a few hundred HU between its 1st and 99th percentiles (air
    -1000, soft tissue 0..100, bone > 300) and has its median between -1100 and 3000 HU.
    Volumes scaled to [0, 1] or given as attenuation coefficients (1/mm) fail, with a message.
    """
    arr = check_finite(name, ct_hu)
    if arr.ndim < 3:
        raise ValueError(f"{name} must be a volume with >= 3 dimensions (..., D, H, W), got shape {arr.shape}")
    p1, p50, p99 = np.percentile(arr, [1, 50, 99])
    if p99 - p1 < 200.0 or not -1100.0 <= p50 <= 3000.0:
        raise ValueError(
            f"{name} does not look like a CT in Hounsfield units: 1st/50th/99th percentiles "
            f"{p1:.4g}/{p50:.4g}/{p99:.4g}; expected a spread >= 200 HU and a median in [-1100, 3000] HU "
            "(air -1000, water 0, bone > 300). Convert normalised or mu-map volumes to HU first."
        )
    return arr


def ct_regularization_map(
    ct_hu,
    *,
    spacing,
    soft_weight: float = 1.0,
    bone_weight: float = 20.0,
    hu_soft: float = 150.0,
    hu_bone: float = 400.0,
    clip: tuple[float, float] = (-1000.0, 2000.0),
    smoothing_mm: float = 4.0,
) -> np.ndarray:
    """Voxel-wise regularisation weight from a CT in Hounsfield units.

    Parameters
    ----------
    ct_hu : array_like, shape (..., D, H, W), HU
        The CT paired with the fixed PET, on the PET grid. Leading axes (batch, channel) are
        kept; smoothing acts on the last three axes only.
    spacing : sequence of 3 floats, mm
        Voxel size along the last three axes.
    soft_weight, bone_weight : float, >= 0
        Weight of soft tissue, fat, lung and air (HU <= ``hu_soft``) and of bone
        (HU >= ``hu_bone``). Multiplies the regulariser (dimensionless factor of its units).
    hu_soft, hu_bone : float, HU
        Ends of the linear ramp, ``hu_soft < hu_bone``.
    clip : (low, high), HU
        HU clipping before the ramp (contrast agent, metal streaks, padding values like -3024).
    smoothing_mm : float, mm
        Standard deviation of the Gaussian smoothing of the map (0 disables it).

    Returns
    -------
    ndarray, float32, same shape as ``ct_hu``
        The weight map, between ``min(soft_weight, bone_weight)`` and the maximum.

    Raises
    ------
    ValueError
        On a CT not in HU (see :func:`check_ct_hu`), a bad ramp or negative weights.
    """
    ct = check_ct_hu("ct_hu", ct_hu)
    sp = check_positive("spacing", spacing, unit="mm")
    if sp.shape != (3,):
        raise ValueError(f"spacing must have 3 entries (mm), got shape {sp.shape}")
    for name, value in (("soft_weight", soft_weight), ("bone_weight", bone_weight)):
        v = float(check_finite(name, value))
        if v < 0:
            raise ValueError(f"{name} must be >= 0, got {v!r}")
    if not float(hu_soft) < float(hu_bone):
        raise ValueError(f"hu_soft must be < hu_bone, got hu_soft={hu_soft!r} HU, hu_bone={hu_bone!r} HU")
    lo, hi = (float(c) for c in clip)
    if not lo < hi:
        raise ValueError(f"clip must be (low, high) with low < high HU, got {clip!r}")
    sigma = float(check_finite("smoothing_mm", smoothing_mm))
    if sigma < 0:
        raise ValueError(f"smoothing_mm must be >= 0 mm, got {sigma!r}")
    return _ct_map(ct, sp, float(soft_weight), float(bone_weight), float(hu_soft), float(hu_bone), lo, hi, sigma)


def _ct_map(ct, sp, soft, bone, hu_soft, hu_bone, lo, hi, sigma_mm) -> np.ndarray:
    h = np.clip(ct, lo, hi)
    t = np.clip((h - hu_soft) / (hu_bone - hu_soft), 0.0, 1.0)
    w = soft + (bone - soft) * t
    if sigma_mm > 0:
        sig = (0.0,) * (w.ndim - 3) + tuple(sigma_mm / sp)
        # "nearest" keeps the weight of the border tissue instead of pulling it to 0
        w = ndimage.gaussian_filter(w, sig, mode="nearest", truncate=3.0)
    return w.astype(np.float32)
