"""Partial-volume correction for quantitative 177Lu SPECT (Leube et al., J Nucl Med 2024).

Simulation (:mod:`.phantoms`, :mod:`.spect` - PyTomography's SPECT model, batched - and
:mod:`.dataset`), the iterative Yang baseline (:mod:`.yang`) and DL-PVC (:mod:`.networks`,
:mod:`.training`). Volumes are ``(nz, ny, nx)`` arrays, lengths mm, concentrations kBq/mL.
"""

from .dataset import (
    DatasetConfig, IncompleteDatasetError, acquire_and_reconstruct, image_key, load_dataset, simulate_cases,
    simulate_dataset,
)
from .networks import Architecture, R2UNet, ResidualPVC, build_network
from .phantoms import BodyRegion, activity_distribution, attenuation_map, cube_phantom, random_shape
from .spect import (
    MELP_208KEV,
    Collimator,
    Reconstruction,
    SpectGeometry,
    back_project,
    contour_orbit,
    forward_project,
    osem,
    pytomography_osem,
    pytomography_system_matrix,
)
from .training import Loss, Schedule, TrainConfig, TrainResult, correct, load_model, save_model, train
from .yang import gaussian_blur, iterative_yang, matched_filter_fwhm

__all__ = [
    "Architecture", "BodyRegion", "acquire_and_reconstruct", "Collimator", "DatasetConfig", "IncompleteDatasetError", "Loss", "MELP_208KEV", "R2UNet", "Schedule",
    "Reconstruction", "ResidualPVC", "SpectGeometry", "TrainConfig", "TrainResult", "activity_distribution",
    "attenuation_map", "back_project", "build_network", "contour_orbit", "correct", "cube_phantom",
    "forward_project", "gaussian_blur", "image_key", "iterative_yang", "load_dataset", "load_model",
    "matched_filter_fwhm", "osem", "pytomography_osem", "pytomography_system_matrix", "random_shape",
    "save_model", "simulate_cases", "simulate_dataset", "train",
]
