"""CT-guided spatially-varying regularisation for deformable whole-body PET registration.

Wu et al., "CT-Guided Spatially-varying Regularization for Voxel-Wise Deformable Whole-Body
PET Registration": the paired CT gives a voxel-wise weight of the DDF regulariser (strong in
bone, weak in soft tissue) instead of one global weight. Built on MONAI (``Warp``,
``DVF2DDF``, LNCC / MI losses, ``UNet``); ours are the CT map, the weighted regularisers,
the synthetic whole-body PET/CT data with known deformation, and the study.

DDF convention (MONAI): ``(B, 3, D, H, W)`` in voxel units, channel ``i`` along array axis
``i``; fixed voxel ``x`` <-> moving position ``x + ddf(x)``; ``spacing`` (3,) mm in array-axis
order.
"""

from .anatomy import BONE_LABELS, LABELS, SOFT_ORGAN_LABELS, Tracer
from .evaluation import evaluate_registration
from .network import NetworkConfig, RegistrationUNet, load_network, predict_ddf, train_network, training_loss
from .optimize import Regularizer, Similarity, optimise_ddf, register
from .regularizers import weighted_bending_energy, weighted_diffusion
from .synthetic import SyntheticPair, simulate_pet_ct_pair
from .transforms import integrate_velocity, limited_threads, map_points, resize_ddf, warp, warp_labels
from .weights import check_ct_hu, ct_regularization_map

__all__ = [
    "BONE_LABELS", "LABELS", "SOFT_ORGAN_LABELS", "Tracer",
    "evaluate_registration",
    "NetworkConfig", "RegistrationUNet", "load_network", "predict_ddf", "train_network", "training_loss",
    "Regularizer", "Similarity", "optimise_ddf", "register",
    "weighted_bending_energy", "weighted_diffusion",
    "SyntheticPair", "simulate_pet_ct_pair",
    "integrate_velocity", "limited_threads", "map_points", "resize_ddf", "warp", "warp_labels",
    "check_ct_hu", "ct_regularization_map",
]
