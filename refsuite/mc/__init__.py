"""Built-in vectorised photon-pair Monte Carlo: a fast surrogate for GATE with the same
coincidence columns (GATE 10 names and units), not a replacement for it.

Physics kept: phantom emission and attenuation, back-to-back 511 keV photons with optional
acollinearity, exact transport into rectangular blocks with exponential first-interaction
depth (LYSO mu = 0.087 /mm at 511 keV), crystal-voxel binning, energy and time blur,
energy and coincidence windows, TOF. Neglected: Compton scatter in crystals and inter-crystal
scatter (every interaction is a full 511 keV deposit), phantom scatter, positron range,
randoms, dead time.
"""

from refsuite.constants import SPEED_OF_LIGHT_MM_PER_NS
from refsuite.events import COLUMNS, Events, column_names, tof_offsets_mm
from refsuite.geometry.tracing import IdealCylinder, trace_blocks, trace_cylinder, trace_pairs

from .montecarlo import DEFAULT_CHUNK_SIZE, SEED_BLOCK, iter_simulate, simulate

# COLUMNS, Events, column_names, tof_offsets_mm (refsuite.events), SPEED_OF_LIGHT_MM_PER_NS
# (refsuite.constants) and the tracing functions (refsuite.geometry) are re-exported under
# their former names here.
__all__ = ["COLUMNS", "DEFAULT_CHUNK_SIZE", "Events", "IdealCylinder", "SEED_BLOCK", "SPEED_OF_LIGHT_MM_PER_NS",
           "column_names", "iter_simulate", "simulate", "tof_offsets_mm", "trace_blocks", "trace_cylinder", "trace_pairs"]
