"""Partial-volume correction for quantitative 177Lu SPECT (Leube et al., J Nucl Med 2024).

Simulation (:mod:`.phantoms`, :mod:`.spect` - PyTomography's SPECT model, batched - and
:mod:`.dataset`), the iterative Yang baseline (:mod:`.yang`) and DL-PVC (:mod:`.networks`,
:mod:`.training`). Volumes are ``(nz, ny, nx)`` arrays, lengths mm, concentrations kBq/mL.
"""

from refsuite._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".dataset": ("DatasetConfig", "IncompleteDatasetError", "acquire_and_reconstruct", "image_key", "load_dataset",
                 "simulate_cases", "simulate_dataset"),
    ".networks": ("Architecture", "Output", "R2UNet", "ResidualPVC", "build_network"),
    ".phantoms": ("BodyRegion", "activity_distribution", "attenuation_map", "cube_phantom", "random_shape"),
    ".spect": ("MELP_208KEV", "Collimator", "Reconstruction", "SpectGeometry", "back_project", "contour_orbit",
               "forward_project", "osem", "pytomography_osem", "pytomography_system_matrix"),
    ".training": ("Loss", "Schedule", "TrainConfig", "TrainResult", "correct", "load_model", "save_model", "train"),
    ".yang": ("gaussian_blur", "iterative_yang", "matched_filter_fwhm"),
})
