"""Image-quality metrics of reconstructions (Thull et al., sec. 2.8): PSNR, SSIM, COV, peak-to-valley.

Images are numpy arrays of any dimension; ``mask`` selects where a metric is evaluated.
"""

from __future__ import annotations

import numpy as np

__all__ = ["psnr", "ssim", "cov", "peak_to_valley"]


def _pair(reference, image):
    ref = np.asarray(reference, float)
    img = np.asarray(image, float)
    if ref.shape != img.shape:
        raise ValueError(f"reference and image must have the same shape, got {ref.shape} and {img.shape}")
    return ref, img


def psnr(reference, image, *, data_range=None) -> float:
    """Peak signal-to-noise ratio, dB: ``10 log10(R^2 / MSE)`` (Thull et al., sec. 2.8).

    ``data_range`` R defaults to ``max(reference) - min(reference)``.
    """
    from skimage.metrics import peak_signal_noise_ratio

    ref, img = _pair(reference, image)
    rng = float(ref.max() - ref.min()) if data_range is None else float(data_range)
    if rng <= 0:
        raise ValueError(f"data_range must be > 0, got {rng}")
    return float(peak_signal_noise_ratio(ref, img, data_range=rng))


def ssim(reference, image, *, data_range=None) -> float:
    """Structural similarity (Wang et al. 2004; Thull et al., sec. 2.8) via scikit-image, with
    the Gaussian-weighted window (sigma 1.5) of the original paper."""
    from skimage.metrics import structural_similarity

    ref, img = _pair(reference, image)
    rng = float(ref.max() - ref.min()) if data_range is None else float(data_range)
    if rng <= 0:
        raise ValueError(f"data_range must be > 0, got {rng}")
    return float(structural_similarity(ref, img, data_range=rng, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


def cov(image, mask) -> float:
    """Coefficient of variation inside ``mask``, percent: ``100 sigma / mu`` (Thull et al., sec. 2.8)."""
    img = np.asarray(image, float)
    m = np.asarray(mask, bool)
    if m.shape != img.shape or not m.any():
        raise ValueError(f"mask must be a non-empty boolean array of shape {img.shape}")
    v = img[m]
    mu = v.mean()
    if mu == 0:
        raise ValueError("the mean inside the mask is 0: COV undefined")
    return float(100.0 * v.std() / mu)


def peak_to_valley(profile, peaks, valleys) -> float:
    """Mean peak value over mean valley value of a line profile (Thull et al., sec. 2.8, PVR).

    Parameters
    ----------
    profile : (n,) array
        Values along the line.
    peaks, valleys : int arrays
        Indices of the rod centres and of the gaps between them on the profile.
    """
    p = np.asarray(profile, float)
    v = p[np.asarray(valleys, int)].mean()
    if v <= 0:
        return float("inf")
    return float(p[np.asarray(peaks, int)].mean() / v)
