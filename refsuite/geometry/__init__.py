"""Scanner blueprints, block poses, crystal lookup tables, misalignment and Procrustes errors,
crystal assignment of points and ray tracing into the blocks.

Conventions (Thull et al., sec. 2.1, Fig. 1): block ``d`` has centre ``positions[d]`` (mm) and
axes ``axes[d]`` whose rows are the unit vectors X (planar), Y (depth of interaction, outward)
and Z (planar, along the scanner axis for rings). A crystal voxel ``(d, cr)`` is at
``positions[d] + crystals.centres[cr] @ axes[d]``. Rotations are angles (rad) about a block's
own axes, order X, Y, Z (:mod:`refsuite.geometry.rotations`); translations are global (mm).
Blocks are boxes that must not interpenetrate: :mod:`refsuite.geometry.clearance` measures
their exact gaps and overlaps, and :func:`perturb` draws only clear misalignments by default.
The ``[scanner]`` table of scenario files and acceptance plans is one pydantic model,
:class:`refsuite.geometry.spec.ScannerSpec` (imported where it is used, so that importing the
geometry does not import pydantic).
"""

from .assign import assign_crystals
from .clearance import block_clearances, check_block_clearance, min_block_clearance, overlapping_blocks
from .lut import CrystalLUT
from .misalignment import GroupMotion, apply_rigid, perturb, procrustes_errors, rigid_fit
from .presets import PRESETS, THULL_BINNINGS, preset, ring_axes
from .rotations import axis_angle_matrix, euler_to_matrix, matrix_to_euler, pose_points
from .scanner import Misalignment, Scanner, TranslationFrame
from .tracing import IdealCylinder, trace_blocks, trace_cylinder, trace_pairs

__all__ = [
    "CrystalLUT", "GroupMotion", "IdealCylinder", "Misalignment", "PRESETS", "Scanner", "THULL_BINNINGS",
    "TranslationFrame", "apply_rigid", "assign_crystals", "axis_angle_matrix", "block_clearances",
    "check_block_clearance", "euler_to_matrix", "matrix_to_euler", "min_block_clearance", "overlapping_blocks",
    "perturb", "pose_points", "preset", "procrustes_errors", "rigid_fit", "ring_axes", "trace_blocks",
    "trace_cylinder", "trace_pairs",
]
