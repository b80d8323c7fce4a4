"""Iterative Yang partial-volume correction and the matched-filter resolution estimate.

Iterative Yang (Erlandsson et al., Phys Med Biol 2012, sec. 4.2.3; PETPVC "IY", Thomas et
al., Phys Med Biol 2016): with the observed image g, region masks R_i and the system PSF h,

    f_0 = g;  mu_i^k = mean of f_k over R_i (clipped at 0);  P_k = sum_i mu_i^k R_i;
    f_{k+1} = g * P_k / (h (x) P_k).

Resolution: the matched-filter analysis of Tran-Gia & Lassmann (J Nucl Med 2019) finds the
Gaussian FWHM for which the blurred ground truth best matches the reconstruction (least
squares); Leube et al. used it to obtain 8.75 mm (RR) and 21.35 mm (noRR) for IY-PVC.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, optimize

from .._checks import check_finite, check_positive
from ..constants import SIGMA_PER_FWHM

__all__ = ["gaussian_blur", "iterative_yang", "matched_filter_fwhm"]



def _voxel3(voxel_size_mm) -> np.ndarray:
    v = check_positive("voxel_size_mm", voxel_size_mm, unit="mm")
    v = np.broadcast_to(v, (3,)) if v.ndim == 0 else v
    if v.shape != (3,):
        raise ValueError(f"voxel_size_mm must be a float or (3,) (z, y, x) mm, got shape {v.shape}")
    return v


def gaussian_blur(image, *, fwhm_mm, voxel_size_mm) -> np.ndarray:
    """Isotropic 3-D Gaussian blur of FWHM ``fwhm_mm`` (mm); zero outside the image.

    ``image`` (nz, ny, nx) or (B, nz, ny, nx); ``voxel_size_mm`` float or (3,) for (z, y, x).
    """
    img = check_finite("image", image)
    fwhm = float(np.asarray(check_finite("fwhm_mm", fwhm_mm)))
    if fwhm < 0:
        raise ValueError(f"fwhm_mm must be >= 0 mm, got {fwhm!r} mm")
    sigma = fwhm * SIGMA_PER_FWHM / _voxel3(voxel_size_mm)
    if img.ndim == 4:
        sigma = np.concatenate([[0.0], sigma])
    elif img.ndim != 3:
        raise ValueError(f"image must be 3-D (nz, ny, nx) or 4-D, got shape {img.shape}")
    if fwhm == 0:
        return img.copy()
    return ndimage.gaussian_filter(img, sigma, mode="constant", truncate=4.0)


def _as_regions(labels, shape) -> np.ndarray:
    """Label image (int, same shape) or mask stack (n, *shape) -> label image 0..n-1."""
    lab = np.asarray(labels)
    if lab.shape == shape:
        if not np.issubdtype(lab.dtype, np.integer) and lab.dtype != bool:
            if not np.all(np.mod(lab, 1) == 0):
                raise TypeError(f"labels must be an integer label image, got dtype {lab.dtype}")
        _, inverse = np.unique(lab.astype(np.int64), return_inverse=True)
        return inverse.reshape(shape)
    if lab.ndim == len(shape) + 1 and lab.shape[1:] == shape:
        masks = lab.astype(bool)
        if np.any(masks.sum(0) > 1):
            raise ValueError("labels: the region masks overlap; each voxel may belong to one mask only")
        if not masks.reshape(len(masks), -1).any(1).all():
            empty = int(np.flatnonzero(~masks.reshape(len(masks), -1).any(1))[0])
            raise ValueError(f"labels: region mask {empty} is empty")
        out = np.full(shape, len(masks), dtype=np.int64)  # voxels in no mask form one more region
        for i, m in enumerate(masks):
            out[m] = i
        _, inverse = np.unique(out, return_inverse=True)
        return inverse.reshape(shape)
    raise ValueError(f"labels must have the image shape {shape} or be a mask stack (n, *{shape}), got {lab.shape}")


def iterative_yang(image, labels, *, fwhm_mm, voxel_size_mm, n_iter: int = 10) -> np.ndarray:
    """Iterative Yang PVC (Erlandsson et al. 2012; PETPVC ``IY``).

    Parameters
    ----------
    image : (nz, ny, nx) array
        Observed activity concentration g (any unit; kept). Must be finite.
    labels : int array (nz, ny, nx) or bool stack (n_regions, nz, ny, nx)
        Regions R_i; label 0 is a region like any other. In a mask stack, voxels in no mask
        form one extra region.
    fwhm_mm : float
        FWHM of the isotropic Gaussian PSF h (mm), >= 0.
    voxel_size_mm : float or (3,)
        Voxel edge (mm), (z, y, x).
    n_iter : int
        Iterations (10 in Leube et al. and PETPVC's default).

    Returns
    -------
    (nz, ny, nx) ndarray: corrected image, same unit as ``image``.
    """
    g = check_finite("image", image)
    if g.ndim != 3:
        raise ValueError(f"image must be 3-D (nz, ny, nx), got shape {g.shape}")
    if int(n_iter) < 0:
        raise ValueError(f"n_iter must be >= 0, got {n_iter!r}")
    fwhm = float(np.asarray(check_finite("fwhm_mm", fwhm_mm)))
    if fwhm < 0:
        raise ValueError(f"fwhm_mm must be >= 0 mm, got {fwhm!r} mm")
    voxel = _voxel3(voxel_size_mm)
    regions = _as_regions(labels, g.shape)
    n_regions = int(regions.max()) + 1
    counts = np.bincount(regions.ravel(), minlength=n_regions)
    f = g.copy()
    for _ in range(int(n_iter)):
        means = np.clip(np.bincount(regions.ravel(), weights=f.ravel(), minlength=n_regions) / counts, 0.0, None)
        p = means[regions]
        hp = gaussian_blur(p, fwhm_mm=fwhm, voxel_size_mm=voxel)
        # Where the blurred template vanishes the ratio P / hP is undefined: keep g there.
        ratio = np.divide(p, hp, out=np.ones_like(p), where=hp > 1e-12 * max(float(p.max()), 1e-300))
        f = g * ratio
    return f


def matched_filter_fwhm(recon, truth, *, voxel_size_mm, bounds_mm=(0.0, 60.0)) -> float:
    """Gaussian FWHM (mm) minimising sum ||recon - G_FWHM (x) truth||^2 over all cases.

    ``recon`` and ``truth`` are (nz, ny, nx) or stacks (B, nz, ny, nx) in the same unit
    (Tran-Gia & Lassmann 2019's matched-filter resolution analysis).
    """
    r = check_finite("recon", recon)
    t = check_finite("truth", truth)
    if r.shape != t.shape:
        raise ValueError(f"recon shape {r.shape} must equal truth shape {t.shape}")
    voxel = _voxel3(voxel_size_mm)

    def cost(w):
        return float(np.sum((r - gaussian_blur(t, fwhm_mm=w, voxel_size_mm=voxel)) ** 2))

    res = optimize.minimize_scalar(cost, bounds=bounds_mm, method="bounded", options={"xatol": 0.01})
    return float(res.x)
