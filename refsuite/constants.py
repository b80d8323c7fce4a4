"""Physical and statistical constants used across refsuite (one definition each).

Units follow the project's conventions: lengths mm, times ns (GATE event columns) or ps
(timing), so the speed of light is given in both.
"""

from __future__ import annotations

import math

__all__ = ["SPEED_OF_LIGHT_MM_PER_NS", "SPEED_OF_LIGHT_MM_PER_PS", "FWHM_PER_SIGMA", "SIGMA_PER_FWHM"]

#: Speed of light in vacuum, mm/ns (exact: 299 792 458 m/s).
SPEED_OF_LIGHT_MM_PER_NS = 299.792458
#: Speed of light in vacuum, mm/ps.
SPEED_OF_LIGHT_MM_PER_PS = 0.299792458
#: FWHM of a Gaussian in units of its standard deviation, ``2 sqrt(2 ln 2)`` (~2.3548).
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
#: ``1 / FWHM_PER_SIGMA``: multiply a FWHM by it to get sigma.
SIGMA_PER_FWHM = 1.0 / FWHM_PER_SIGMA
