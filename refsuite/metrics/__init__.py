"""Image and detector metrics. Each metric lives in its own self-contained module."""

from .timing import CTRFit, ctr_fwhm, gaussian_histogram_fit

__all__ = ["CTRFit", "ctr_fwhm", "gaussian_histogram_fit"]
