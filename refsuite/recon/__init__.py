"""List-mode OSEM reconstruction with sensitivity image, attenuation and detection efficiencies.

:func:`lm_osem_lors` works on LOR end points (the projector interface); :func:`lm_osem` adapts
a scanner (``refsuite.geometry.Scanner`` attributes) and list-mode events to it.
"""

from .hot_rod import HotRodResult, hot_rod_grid, hot_rod_metrics, hot_rod_reconstruction, reconstruct_hot_rod
from .osem import angle_subsets, attenuation_factors, lm_osem_lors, sensitivity_image
from .scanner import LORPlacement, detected_line_sensitivity, events_to_lors, lm_osem
from .simulate import cylinder_intersections, ideal_cylinder_events, ideal_cylinder_lors

__all__ = [
    "LORPlacement",
    "HotRodResult",
    "hot_rod_grid",
    "hot_rod_metrics",
    "hot_rod_reconstruction",
    "reconstruct_hot_rod",
    "angle_subsets",
    "attenuation_factors",
    "cylinder_intersections",
    "detected_line_sensitivity",
    "events_to_lors",
    "ideal_cylinder_events",
    "ideal_cylinder_lors",
    "lm_osem",
    "lm_osem_lors",
    "sensitivity_image",
]
