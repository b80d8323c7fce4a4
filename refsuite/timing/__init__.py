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

The names are imported on first use (:mod:`refsuite._lazy`), so that ``refsuite timing --help`` does
not import SciPy.
"""

from refsuite._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".calibrate": ("calibrate",),
    ".detector": ("SPEED_OF_LIGHT_MM_PER_PS", "DetectorModel", "expected_time_difference"),
    ".evaluate": ("TimingEvaluation", "ctr_improvement", "evaluate_timing", "linearity_fit", "mae_per_label"),
    ".features": ("CorrectionKind", "cluster_energy", "cluster_times", "energy_mask", "expected_dt",
        "explicit_label", "extract_features", "feature_names", "main_channel", "select", "time_difference"),
    ".io": ("load_events", "save_events"),
    ".listmode_skew": ("ChannelGranularity", "ListmodeSkew", "apply_channel_skews", "channel_map", "listmode_ctr",
        "listmode_skew_calibration"),
    ".models": ("CorrectionModel", "apply_correction", "load_model", "predict_correction", "save_model",
        "train_correction"),
    ".simulate": ("axial_positions", "detector_constants", "in_plane_grid", "simulate_detector_pair"),
    ".skew": ("SkewMethod", "pair_statistics", "skew_calibration", "solve_pair_offsets"),
})
