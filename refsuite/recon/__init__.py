"""List-mode OSEM reconstruction with sensitivity image, attenuation and detection efficiencies.

:func:`lm_osem_lors` works on LOR end points (the projector interface); :func:`lm_osem` adapts
a scanner (``refsuite.geometry.Scanner`` attributes) and list-mode events to it.

The names are imported on first use (:mod:`refsuite._lazy`), so that ``refsuite recon --help`` does
not import torch.
"""

from refsuite._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".hot_rod": ("HotRodResult", "hot_rod_grid", "hot_rod_metrics", "hot_rod_reconstruction", "reconstruct_hot_rod"),
    ".osem": ("angle_subsets", "attenuation_factors", "lm_osem_lors", "sensitivity_image"),
    ".scanner": ("LORPlacement", "detected_line_sensitivity", "events_to_lors", "lm_osem"),
    ".simulate": ("cylinder_intersections", "ideal_cylinder_events", "ideal_cylinder_lors"),
})
