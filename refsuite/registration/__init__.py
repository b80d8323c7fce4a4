"""CT-guided spatially-varying regularisation for deformable whole-body PET registration.

Wu et al., "CT-Guided Spatially-varying Regularization for Voxel-Wise Deformable Whole-Body
PET Registration": the paired CT gives a voxel-wise weight of the DDF regulariser (strong in
bone, weak in soft tissue) instead of one global weight. Built on MONAI (``Warp``,
``DVF2DDF``, LNCC / MI losses, ``UNet``); ours are the CT map, the weighted regularisers,
the synthetic whole-body PET/CT data with known deformation, and the study.

DDF convention (MONAI): ``(B, 3, D, H, W)`` in voxel units, channel ``i`` along array axis
``i``; fixed voxel ``x`` <-> moving position ``x + ddf(x)``; ``spacing`` (3,) mm in array-axis
order. Volumes read from NIfTI keep the file's voxel order (:mod:`refsuite.io.nifti`, which also
writes a DDF in voxels or, for ITK tools, in world mm).
"""

from refsuite._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".anatomy": ("BONE_LABELS", "LABELS", "SOFT_ORGAN_LABELS", "Tracer"),
    ".evaluation": ("evaluate_registration",),
    ".network": ("NetworkConfig", "RegistrationUNet", "load_network", "predict_ddf", "train_network",
                 "training_loss"),
    ".optimize": ("Regularizer", "Similarity", "optimise_ddf", "register"),
    ".regularizers": ("weighted_bending_energy", "weighted_diffusion"),
    ".synthetic": ("SyntheticPair", "save_pair", "simulate_pet_ct_pair"),
    ".transforms": ("integrate_velocity", "limited_threads", "map_points", "resize_ddf", "warp", "warp_labels"),
    ".weights": ("check_ct_hu", "ct_regularization_map"),
})
