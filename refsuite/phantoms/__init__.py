"""Analytic calibration phantoms: each samples emission points, voxelises itself and, where a
closed form exists, gives its (TOF-weighted) activity line integral. Lengths mm, activity Bq.

``PointSources``, ``Tube`` (Thull et al., sec. 2.5), ``LineSource`` (NEMA NU 2 / Lin et al.),
``CylindricalShell`` (fan-sum efficiencies, Thull et al., sec. 2.2), ``HotRod`` (Thull et al.,
sec. 2.6), ``UniformCylinder``. Phantoms are data: ``save``/``load_phantom`` (JSON).
"""

from .base import MU_PMMA_511, MU_WATER_511, Phantom, load_phantom, phantom_from_dict
from .cylinders import HOT_ROD_DIAMETERS_MM, CylindricalShell, HotRod, LineSource, UniformCylinder
from .sources import PointSources, Tube

__all__ = [
    "CylindricalShell", "HOT_ROD_DIAMETERS_MM", "HotRod", "LineSource", "MU_PMMA_511", "MU_WATER_511",
    "Phantom", "PointSources", "Tube", "UniformCylinder", "load_phantom", "phantom_from_dict",
]
