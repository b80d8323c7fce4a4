"""Residual-physics TOF timing calibration of a light-sharing detector pair.

Naunheim et al., "Rethinking timing residuals: advancing PET detectors with explicit TOF
corrections", Front. Phys. 13:1570925 (2025). The pieces:

- :func:`simulate_detector_pair`: list-mode coincidences with recorded timing truth;
- :func:`skew_calibration`: analytic first-order per-channel offsets (least squares / L1);
- :func:`listmode_skew_calibration`, :func:`listmode_ctr`: the same first-order step and the CTR
  over all channels of a ring scanner, from a point-source scan in list mode;
- :func:`extract_features`, :func:`train_correction`, :func:`apply_correction`: explicit and
  implicit XGBoost corrections of the higher-order skews;
- :func:`evaluate_timing`: the three-fold evaluation (MAE, linearity, CTR);
- :func:`calibrate`: the analytic and machine-learning steps end to end;
- :func:`save_model` / :func:`load_model`, :func:`save_events` / :func:`load_events`.

Frame: ``z`` connects detector A (z < 0) and B (z > 0); ``dt = t_A - t_B = 2 z / c``.
XGBoost is needed only for the corrections; it is imported when a model is trained or loaded.
"""

from .calibrate import calibrate
from .detector import SPEED_OF_LIGHT_MM_PER_PS, DetectorModel, expected_time_difference
from .evaluate import TimingEvaluation, ctr_improvement, evaluate_timing, linearity_fit, mae_per_label
from .features import (
    CorrectionKind,
    cluster_energy,
    cluster_times,
    energy_mask,
    expected_dt,
    explicit_label,
    extract_features,
    feature_names,
    main_channel,
    select,
    time_difference,
)
from .io import load_events, save_events
from .listmode_skew import (ChannelGranularity, ListmodeSkew, apply_channel_skews, channel_map, listmode_ctr,
                            listmode_skew_calibration)
from .models import CorrectionModel, apply_correction, load_model, predict_correction, save_model, train_correction
from .simulate import axial_positions, detector_constants, in_plane_grid, simulate_detector_pair
from .skew import SkewMethod, pair_statistics, skew_calibration, solve_pair_offsets

__all__ = [
    "ChannelGranularity", "ListmodeSkew", "apply_channel_skews", "channel_map", "listmode_ctr",
    "listmode_skew_calibration", "solve_pair_offsets",
    "SPEED_OF_LIGHT_MM_PER_PS",
    "CorrectionKind",
    "CorrectionModel",
    "DetectorModel",
    "SkewMethod",
    "TimingEvaluation",
    "apply_correction",
    "axial_positions",
    "calibrate",
    "cluster_energy",
    "cluster_times",
    "ctr_improvement",
    "detector_constants",
    "energy_mask",
    "evaluate_timing",
    "expected_dt",
    "expected_time_difference",
    "explicit_label",
    "extract_features",
    "feature_names",
    "in_plane_grid",
    "linearity_fit",
    "load_events",
    "load_model",
    "mae_per_label",
    "main_channel",
    "pair_statistics",
    "predict_correction",
    "save_events",
    "save_model",
    "select",
    "simulate_detector_pair",
    "skew_calibration",
    "time_difference",
    "train_correction",
]
