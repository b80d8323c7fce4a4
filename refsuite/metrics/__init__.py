"""Image, registration and detector metrics. Each family lives in its own module."""

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
