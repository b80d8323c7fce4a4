"""Voxel-level metrics for partial-volume correction (Leube et al., J Nucl Med 2024).

All metrics compare an image with the ground truth inside a mask (the paper: the voxels
with ground-truth activity). Images are activity concentrations in any common unit.
"""

from __future__ import annotations

import numpy as np

from .._checks import check_finite, check_positive

__all__ = ["ssim", "nrmse", "vaa", "activity_deviation", "recovery_coefficient", "psnr", "cov",
           "peak_to_valley", "wilcoxon_paired", "activity_volume_histogram"]


def _pair(image, truth, mask=None):
    img = check_finite("image", image)
    ref = check_finite("truth", truth)
    if img.shape != ref.shape:
        raise ValueError(f"image shape {img.shape} must equal truth shape {ref.shape}")
    if mask is None:
        m = ref > 0
    else:
        m = np.asarray(mask)
        if m.shape != img.shape:
            raise ValueError(f"mask shape {m.shape} must equal image shape {img.shape}")
        m = m.astype(bool)
    if not m.any():
        raise ValueError("mask is empty: the metric is undefined without voxels")
    return img, ref, m


def ssim(image, truth, mask=None, *, data_range: float | None = None) -> float:
    """Mean SSIM (Wang et al. 2004) inside ``mask``, via scikit-image.

    Gaussian-weighted windows (sigma 1.5 voxels), ``use_sample_covariance=False``, and an
    explicit ``data_range`` (default: the truth's range max - min over the whole image),
    as in Wang et al.; the SSIM map is averaged over the mask voxels.
    """
    from skimage.metrics import structural_similarity

    img, ref, m = _pair(image, truth, mask)
    dr = float(ref.max() - ref.min()) if data_range is None else float(check_positive("data_range", data_range))
    if dr <= 0:
        raise ValueError("data_range: the truth is constant, give data_range explicitly")
    _, smap = structural_similarity(ref, img, data_range=dr, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, full=True)
    return float(smap[m].mean())


def nrmse(image, truth, mask=None) -> float:
    """RMSE inside the mask divided by the truth's maximum in the mask (fraction; x100 for %)."""
    img, ref, m = _pair(image, truth, mask)
    return float(np.sqrt(np.mean((img[m] - ref[m]) ** 2)) / ref[m].max())


def vaa(image, truth, mask=None, *, alpha: float = 0.05) -> float:
    """Volume (voxel) activity accuracy: fraction of mask voxels with |image/truth - 1| < alpha."""
    img, ref, m = _pair(image, truth, mask)
    a = float(check_positive("alpha", alpha))
    r = ref[m]
    if np.any(r == 0):
        raise ValueError("vaa: the truth is 0 in some mask voxels; relative deviation undefined")
    return float(np.mean(np.abs(img[m] - r) < a * np.abs(r)))


def activity_deviation(image, truth) -> float:
    """Total-activity deviation (sum(image) - sum(truth)) / sum(truth), whole image (fraction)."""
    img, ref, _ = _pair(image, truth, np.ones(np.shape(image), dtype=bool))
    total = ref.sum()
    if total == 0:
        raise ValueError("activity_deviation: the truth has zero total activity")
    return float((img.sum() - total) / total)


def recovery_coefficient(image, truth, mask=None) -> float:
    """Activity recovered in the mask: sum(image in mask) / sum(truth in mask)."""
    img, ref, m = _pair(image, truth, mask)
    return float(img[m].sum() / ref[m].sum())


def psnr(image, truth, mask=None) -> float:
    """Peak SNR (dB) inside the mask: 20 log10(max truth / RMSE)."""
    img, ref, m = _pair(image, truth, mask)
    rmse = np.sqrt(np.mean((img[m] - ref[m]) ** 2))
    return float(np.inf if rmse == 0 else 20 * np.log10(ref[m].max() / rmse))


def cov(image, mask) -> float:
    """Coefficient of variation (SD / mean) of ``image`` inside ``mask`` (a uniform region)."""
    img = check_finite("image", image)
    m = np.asarray(mask, dtype=bool)
    if m.shape != img.shape or not m.any():
        raise ValueError("mask must have the image shape and be non-empty")
    return float(img[m].std() / img[m].mean())


def peak_to_valley(image, peak_mask, valley_mask) -> float:
    """Mean in ``peak_mask`` divided by mean in ``valley_mask``."""
    img = check_finite("image", image)
    p, v = np.asarray(peak_mask, bool), np.asarray(valley_mask, bool)
    if not p.any() or not v.any():
        raise ValueError("peak_mask and valley_mask must be non-empty")
    return float(img[p].mean() / img[v].mean())


def wilcoxon_paired(a, b, *, alternative: str = "two-sided") -> float:
    """p-value of the paired Wilcoxon signed-rank test (exact for n <= 50, as scipy)."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ValueError(f"a and b must be 1-D of equal length >= 2, got {a.shape}, {b.shape}")
    if np.all(a == b):
        return 1.0
    return float(stats.wilcoxon(a, b, alternative=alternative).pvalue)


def activity_volume_histogram(image, truth, mask=None, *, bins=50) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of mask voxels per relative concentration bin (image / max truth in [0, 1.5]).

    Returns ``(bin_edges, fractions)`` (Leube et al., Fig. 6).
    """
    img, ref, m = _pair(image, truth, mask)
    rel = img[m] / ref[m].max()
    counts, edges = np.histogram(np.clip(rel, 0, 1.5), bins=bins, range=(0.0, 1.5))
    return edges, counts / m.sum()
