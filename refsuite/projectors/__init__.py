"""Differentiable PET projectors: voxel Joseph (+TOF) list-mode projector and its exact adjoint,
analytic line integrals of Gaussian blobs and uniform spheres (the oracle), as torch functions.

Geometry reaches the projectors only as LOR end points ``(xstart, xend)`` (mm), as in
parallelproj: scanner -> LOR end points -> projector. Image layout ``(nx, ny, nz)`` along world
x, y, z; ``origin`` = world position of the centre of voxel ``(0, 0, 0)``.
"""

from ._box import chord_length, clip_segment_to_box
from .analytic import blob_line_integrals, sphere_line_integrals, voxelise_blobs, voxelise_spheres
from ._cpu_kernel import numba_available
from .joseph import BACKENDS, joseph_back, joseph_forward
from .operator import JosephOperator, joseph_forward_all_bins
from .tof import SPEED_OF_LIGHT_MM_PER_PS, TOFParameters, TOFSign, tof_shift_from_time_difference, tof_weight

__all__ = [
    "BACKENDS",
    "JosephOperator",
    "blob_line_integrals",
    "joseph_forward_all_bins",
    "sphere_line_integrals",
    "voxelise_blobs",
    "voxelise_spheres",
    "SPEED_OF_LIGHT_MM_PER_PS",
    "TOFParameters",
    "TOFSign",
    "chord_length",
    "clip_segment_to_box",
    "joseph_back",
    "joseph_forward",
    "numba_available",
    "tof_shift_from_time_difference",
    "tof_weight",
]
