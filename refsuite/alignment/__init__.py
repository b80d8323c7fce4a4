"""Maximum-likelihood PET detector alignment from list-mode data (Thull et al., "Beyond
mechanics: maximum-likelihood-driven PET detector alignment calibration").

:func:`align` estimates per-block (or per-group) rotations and translations relative to a
blueprint by minimising the Poisson NLL of the measured coincidences under the expected-count
model of Thull et al., sec. 2.3: crystal efficiencies (:func:`fan_sum_efficiencies`, sec. 2.2)
times the attenuation times the TOF-weighted line integral of the known tracer between points
sampled inside the two crystal voxels.

The names are imported on first use (:mod:`refsuite._lazy`), so that ``refsuite align --help`` does
not import torch.
"""

from refsuite._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".efficiency": ("depth_layer_efficiencies", "fan_partners", "fan_sum_efficiencies"),
    ".model": ("BlobModel", "blob_model"),
    ".poses": ("PoseModel",),
    ".solver": ("AlignmentDiverged", "AlignmentResult", "TOFMode", "align", "prepare_events"),
    ".uncertainty": ("PoseUncertainty", "pose_fisher_information"),
})
