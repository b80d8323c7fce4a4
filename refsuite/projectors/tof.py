"""Time-of-flight kernel: Gaussian truncated at n sigma, renormalised, integrated over a bin.

Convention (:class:`TOFSign`): the signed TOF coordinate ``s`` (mm) is measured along the LOR
from its midpoint ``(xstart + xend) / 2``. With the default ``TOFSign.TOWARDS_XEND`` (the
parallelproj convention), ``s > 0`` — hence a positive TOF bin — lies on the ``xend`` side, and
a positive time difference ``dt = t_start - t_end`` (the photon seen at ``xstart`` arrived
later) means the annihilation happened closer to ``xend``: ``s = c * dt / 2``.

TOF bin ``k`` (a signed index, bins counted from the LOR midpoint) is centred at
``s_k = k * bin_width_mm + offset`` where ``offset`` (mm) is an optional per-LOR centre offset.
The effective kernel of bin ``k`` at position ``s`` on the LOR is

    w_k(s) = [G(s_k + w/2 - s) - G(s_k - w/2 - s)] / erf(n / sqrt(2)),
    G(x) = erf(clip(x, -n sigma, n sigma) / (sqrt(2) sigma)) / 2,

i.e. the integral over the bin of a Gaussian of standard deviation ``sigma`` (mm along the LOR)
truncated at ``n`` sigma and renormalised to unit area — the "effective TOF kernel" of
parallelproj (Schramm et al., parallelproj, Front. Nucl. Med. 2023, sec. 2.2), here with the
renormalisation made explicit. Summed over a set of bins that covers the LOR, the weights are 1.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import torch

from refsuite._checks import check_positive
from refsuite.constants import SIGMA_PER_FWHM, SPEED_OF_LIGHT_MM_PER_PS

__all__ = ["TOFParameters", "TOFSign", "SPEED_OF_LIGHT_MM_PER_PS", "tof_weight", "tof_shift_from_time_difference"]


class TOFSign(enum.Enum):
    """Which end point a positive TOF coordinate (bin, time difference) points towards.

    TOWARDS_XEND
        ``s > 0`` on the ``xend`` side of the LOR midpoint; ``dt = t_start - t_end`` (parallelproj).
    TOWARDS_XSTART
        ``s > 0`` on the ``xstart`` side; ``dt = t_end - t_start``.
    """

    TOWARDS_XEND = 1
    TOWARDS_XSTART = -1


@dataclass(frozen=True)
class TOFParameters:
    """TOF binning and resolution of a list-mode or binned TOF projection.

    Parameters
    ----------
    num_bins : int
        Number of TOF bins; bin indices run over ``k = -(num_bins - 1)/2 ... (num_bins - 1)/2``
        (integers for odd ``num_bins``).
    bin_width_mm : float
        Bin width along the LOR (mm). A bin of ``dt`` ps is ``c dt / 2`` mm.
    sigma_mm : float
        Standard deviation of the TOF Gaussian along the LOR (mm):
        ``sigma = c * CTR_FWHM / (2 * 2.3548)``; 250 ps FWHM gives 15.9 mm.
    n_sigmas : float
        Truncation of the Gaussian (in sigmas); the kernel is renormalised to unit area.
    sign : TOFSign
        Direction of positive TOF coordinates (default ``TOWARDS_XEND``).
    """

    num_bins: int
    bin_width_mm: float
    sigma_mm: float
    n_sigmas: float = 3.0
    sign: TOFSign = TOFSign.TOWARDS_XEND

    def __post_init__(self) -> None:
        if not isinstance(self.num_bins, int) or isinstance(self.num_bins, bool) or self.num_bins < 1:
            raise ValueError(f"num_bins must be an integer >= 1, got {self.num_bins!r}")
        check_positive("bin_width_mm", self.bin_width_mm, unit="mm")
        check_positive("sigma_mm", self.sigma_mm, unit="mm")
        check_positive("n_sigmas", self.n_sigmas)
        if not isinstance(self.sign, TOFSign):
            raise TypeError(f"sign must be a TOFSign, got {self.sign!r}")

    @classmethod
    def from_ctr(cls, *, num_bins: int, bin_width_ps: float, ctr_fwhm_ps: float, n_sigmas: float = 3.0,
                 sign: TOFSign = TOFSign.TOWARDS_XEND) -> "TOFParameters":
        """Build from a coincidence time resolution (FWHM, ps) and a bin width in ps."""
        check_positive("bin_width_ps", bin_width_ps, unit="ps")
        check_positive("ctr_fwhm_ps", ctr_fwhm_ps, unit="ps")
        return cls(
            num_bins=num_bins,
            bin_width_mm=SPEED_OF_LIGHT_MM_PER_PS * bin_width_ps / 2.0,
            sigma_mm=SPEED_OF_LIGHT_MM_PER_PS * ctr_fwhm_ps / 2.0 * SIGMA_PER_FWHM,
            n_sigmas=n_sigmas,
            sign=sign,
        )

    @property
    def bin_indices(self) -> torch.Tensor:
        """Signed bin indices ``k`` (float64, shape (num_bins,)), centred on the LOR midpoint."""
        return torch.arange(self.num_bins, dtype=torch.float64) - (self.num_bins - 1) / 2.0

    @property
    def half_window_mm(self) -> float:
        """Half width (mm) of the support of one bin's kernel: ``n sigma + w / 2``."""
        return self.n_sigmas * self.sigma_mm + self.bin_width_mm / 2.0


def tof_weight(s: torch.Tensor, centre: torch.Tensor, tof: TOFParameters) -> torch.Tensor:
    """Effective TOF kernel ``w_k(s)`` of the bin centred at ``centre`` (see module docstring).

    Parameters
    ----------
    s : torch.Tensor
        Position along the LOR (mm), same signed axis as ``centre``.
    centre : torch.Tensor
        Bin centre (mm), broadcastable with ``s``.
    tof : TOFParameters

    Returns
    -------
    torch.Tensor
        Dimensionless weight in [0, 1]; zero beyond ``n sigma + w/2`` from the centre.
    """
    lim = tof.n_sigmas * tof.sigma_mm
    scale = 1.0 / (math.sqrt(2.0) * tof.sigma_mm)
    norm = 0.5 / math.erf(tof.n_sigmas / math.sqrt(2.0))
    x = centre - s
    hi = torch.clamp(x + 0.5 * tof.bin_width_mm, -lim, lim)
    lo = torch.clamp(x - 0.5 * tof.bin_width_mm, -lim, lim)
    return (torch.erf(hi * scale) - torch.erf(lo * scale)) * norm


def tof_shift_from_time_difference(dt_ps, *, sign: TOFSign = TOFSign.TOWARDS_XEND):
    """Signed TOF coordinate ``s = c dt / 2`` (mm) of a time difference ``dt`` (ps).

    ``dt`` must follow ``sign``'s definition: ``t_start - t_end`` for ``TOWARDS_XEND``.
    Divide by ``bin_width_mm`` for a (fractional) bin index.
    """
    if not isinstance(sign, TOFSign):
        raise TypeError(f"sign must be a TOFSign, got {sign!r}")
    return SPEED_OF_LIGHT_MM_PER_PS * dt_ps / 2.0
