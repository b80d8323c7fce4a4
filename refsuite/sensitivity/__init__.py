"""Radial sensitivity of a cylindrical PET scanner (Lin et al.) and its cross-checks.

- :func:`geometric_sensitivity` — closed form, Lin et al. eqs. 10-16 (fast, vectorised);
- :func:`geometric_sensitivity_reference` — the paper's contour integrals by adaptive quadrature (oracle);
- :func:`geometric_sensitivity_mc` — isotropic back-to-back pairs traced to the cylinder;
- :func:`line_source_sensitivity` — mean over a centred axial line source (NEMA NU 2: 700 mm);
- :func:`detection_sensitivity` — a wall of finite depth and attenuation (beyond the paper),
  and :func:`detection_sensitivity_mc`, its Monte Carlo estimate;
- :func:`equivalent_cylinder`, :func:`radial_profile_reference`, :func:`block_profile_reference`
  and :func:`compare_radial_profile` — a line-source sweep against a reference shape times a
  fitted efficiency (:mod:`refsuite.sensitivity.profile`).

Lengths in mm; sensitivities are fractions of decays (dimensionless).
"""

from .closed_form import geometric_sensitivity
from .extended import detection_sensitivity, line_source_sensitivity
from .monte_carlo import detection_sensitivity_mc, geometric_sensitivity_mc
from .profile import (
    CylinderChoice,
    EquivalentCylinder,
    ProfileComparison,
    ReferenceModel,
    block_profile_reference,
    compare_radial_profile,
    equivalent_cylinder,
    radial_profile_reference,
)
from .reference import geometric_sensitivity_reference

__all__ = [
    "geometric_sensitivity",
    "geometric_sensitivity_reference",
    "geometric_sensitivity_mc",
    "line_source_sensitivity",
    "detection_sensitivity",
    "detection_sensitivity_mc",
    "CylinderChoice",
    "EquivalentCylinder",
    "ReferenceModel",
    "ProfileComparison",
    "equivalent_cylinder",
    "radial_profile_reference",
    "block_profile_reference",
    "compare_radial_profile",
]
