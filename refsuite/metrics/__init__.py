"""Image, registration and detector metrics. Each family lives in its own module."""

from .pvc import (
    activity_deviation,
    activity_volume_histogram,
    cov,
    nrmse,
    peak_to_valley,
    psnr,
    recovery_coefficient,
    ssim,
    vaa,
    wilcoxon_paired,
)
from .registration import (
    dice,
    dice_per_label,
    folding_fraction,
    jacobian_determinant,
    jacobian_matrix,
    normalized_cross_correlation,
    rigidity_error,
    target_registration_error,
)
from .timing import CTRFit, ctr_fwhm, gaussian_histogram_fit

__all__ = [
    "CTRFit",
    "activity_deviation",
    "activity_volume_histogram",
    "cov",
    "nrmse",
    "peak_to_valley",
    "psnr",
    "recovery_coefficient",
    "ssim",
    "vaa",
    "wilcoxon_paired",
    "ctr_fwhm",
    "dice",
    "dice_per_label",
    "folding_fraction",
    "gaussian_histogram_fit",
    "jacobian_determinant",
    "jacobian_matrix",
    "normalized_cross_correlation",
    "rigidity_error",
    "target_registration_error",
]
