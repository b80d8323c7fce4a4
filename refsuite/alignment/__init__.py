"""Maximum-likelihood PET detector alignment from list-mode data (Thull et al., "Beyond
mechanics: maximum-likelihood-driven PET detector alignment calibration").

:func:`align` estimates per-block (or per-group) rotations and translations relative to a
blueprint by minimising the Poisson NLL of the measured coincidences under the expected-count
model of Thull et al., sec. 2.3: crystal efficiencies (:func:`fan_sum_efficiencies`, sec. 2.2)
times the attenuation times the TOF-weighted line integral of the known tracer between points
sampled inside the two crystal voxels.
"""

from .efficiency import depth_layer_efficiencies, fan_partners, fan_sum_efficiencies
from .model import BlobModel, blob_model
from .poses import PoseModel
from .solver import AlignmentDiverged, AlignmentResult, TOFMode, align, prepare_events
from .uncertainty import PoseUncertainty, pose_fisher_information

__all__ = ["AlignmentDiverged", "AlignmentResult", "BlobModel", "PoseModel", "PoseUncertainty", "TOFMode", "align", "blob_model",
           "depth_layer_efficiencies", "fan_partners", "fan_sum_efficiencies", "pose_fisher_information", "prepare_events"]
