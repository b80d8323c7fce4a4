"""Three-fold evaluation of a timing correction (Naunheim et al. 2025, sec. 3.2).

1. Data-scientific: MAE per label value and its label-frequency weighted mean (eqs. 9-10),
   next to a dummy model predicting 0 (and, for implicit models, next to the measured time
   difference itself, the "no ML" prediction).
2. Physics: linearity. The Gaussian-fit mean of the corrected time difference per source
   position is fitted with ``a + b z`` (eq. 11); the slope must equal ``2 / c`` within
   ``n_sigma_max`` standard errors and the reduced chi-square be compatible with 1 (upper-tail
   p-value >= ``chi2_p_min``); photopeak window 430-590 keV (sec. 3.2.2).
3. PET: CTR (FWHM of a Poisson-weighted Gaussian fit) at the iso-centre for the 430-590 keV
   and 300-700 keV windows and per position along the axis (sec. 3.2.3).

A model only advances to the next level when it passed the previous one (``gate=True``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from refsuite.metrics.timing import gaussian_histogram_fit

from .detector import SPEED_OF_LIGHT_MM_PER_PS
from .features import CorrectionKind, energy_mask, expected_dt, explicit_label, time_difference, validate_events
from .models import CorrectionModel, predict_correction

__all__ = ["TimingEvaluation", "evaluate_timing", "linearity_fit", "mae_per_label", "ctr_improvement"]

PHOTOPEAK_KEV = (430.0, 590.0)
WIDE_KEV = (300.0, 700.0)


@dataclass
class TimingEvaluation:
    """Results of :func:`evaluate_timing` (times ps, positions mm).

    ``mae``: ``label_ps``, ``mae_ps``, ``counts``, ``dummy_mae_ps`` (and ``no_ml_mae_ps`` for
    implicit models) per label value, ``weighted_mae_ps``, ``mean_mae_ps`` and the same for the
    dummy. ``linearity``: ``positions_mm``, ``mean_ps``, ``mean_err_ps``, ``slope``,
    ``slope_err`` (ps/mm), ``offset_ps``, ``offset_err_ps``, ``chi2``, ``ndof``, ``chi2_red``,
    ``p_value``, ``n_sigma`` (slope deviation from 2/c). ``ctr``: ``iso_<window>`` CTR fits and
    ``axis_positions_mm``, ``axis_ctr_ps``, ``axis_ctr_err_ps``, ``axis_mean_ctr_ps``.
    ``corrected_ps``: the corrected time differences (n,) (ps). ``passed``: level -> bool, or None where the level was not evaluated (gated); the PET
    level has no pass criterion of its own and is True once measured. :meth:`figure` draws
    the three levels.
    """

    label: str
    kind: str
    mae: dict = field(default_factory=dict)
    linearity: dict = field(default_factory=dict)
    ctr: dict = field(default_factory=dict)
    passed: dict = field(default_factory=dict)
    corrected_ps: np.ndarray | None = field(default=None, repr=False)

    @property
    def accepted(self) -> bool:
        """True when all three levels passed."""
        return all(self.passed.get(k) is True for k in ("data", "physics", "pet"))

    def figure(self):
        """The three levels as one matplotlib figure (three panels; a gated level is left blank).

        Left: MAE per label value next to the dummy model (Naunheim et al. 2025, Fig. 4);
        middle: mean corrected time difference minus the fitted line per source position, with
        its errors (linearity); right: CTR (FWHM, 430-590 keV) along the axis. Times ps,
        positions mm.
        """
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
        name = self.label or self.kind
        if self.mae:
            ax[0].plot(self.mae["label_ps"], self.mae["mae_ps"], ".-", label=name)
            ax[0].plot(self.mae["label_ps"], self.mae["dummy_mae_ps"], "--", label="dummy (0)")
            ax[0].legend()
        ax[0].set_xlabel("label (ps)")
        ax[0].set_ylabel("MAE (ps)")
        ax[0].set_title("1 data-scientific")
        lin = self.linearity
        if lin:
            z = np.asarray(lin["positions_mm"])
            resid = np.asarray(lin["mean_ps"]) - (lin["offset_ps"] + lin["slope"] * z)
            ax[1].errorbar(z, resid, yerr=lin["mean_err_ps"], fmt="o", ms=3)
            ax[1].axhline(0, color="k", lw=0.8)
            ax[1].set_title(f"2 physics: slope {lin['slope']:.5f} +- {lin['slope_err']:.5f} ps/mm, "
                            f"chi2/ndof {lin['chi2_red']:.2f}", fontsize=9)
        else:
            ax[1].set_title("2 physics (not evaluated)")
        ax[1].set_xlabel("source position z (mm)")
        ax[1].set_ylabel("mean dt - fit (ps)")
        if "axis_ctr_ps" in self.ctr:
            ax[2].errorbar(self.ctr["axis_positions_mm"], self.ctr["axis_ctr_ps"], yerr=self.ctr["axis_ctr_err_ps"],
                           fmt="o", ms=3)
            ax[2].set_title(f"3 PET: CTR at iso-centre {self.ctr['iso_photopeak'].fwhm:.1f} ps", fontsize=9)
        else:
            ax[2].set_title("3 PET (not evaluated)")
        ax[2].set_xlabel("source position z (mm)")
        ax[2].set_ylabel("CTR FWHM (ps)")
        fig.tight_layout()
        return fig


def mae_per_label(label, prediction, *, bin_width=None):
    """MAE (ps) per distinct label value (or per label bin of ``bin_width`` ps).

    Returns ``(label_values, mae, counts)``; eq. 9-10 of Naunheim et al. 2025 weight the
    per-label MAE with ``counts``.
    """
    label = np.asarray(label, dtype=np.float64)
    err = np.abs(np.asarray(prediction, dtype=np.float64) - label)
    if label.size == 0:
        raise ValueError("label is empty")
    key = np.round(label, 6) if bin_width is None else np.round(label / bin_width) * bin_width
    values, inv, counts = np.unique(key, return_inverse=True, return_counts=True)
    mae = np.bincount(inv, weights=err) / counts
    return values, mae, counts


def linearity_fit(positions_mm, mean_ps, mean_err_ps, *, n_sigma_max: float = 3.0, chi2_p_min: float = 1e-3) -> dict:
    """Weighted linear fit ``mean = offset + slope * z`` and the paper's linearity test.

    Returns the slope and offset with standard errors, chi-square, reduced chi-square, its
    upper-tail p-value, ``n_sigma = |slope - 2/c| / slope_err`` and ``passed``.
    """
    z = np.asarray(positions_mm, dtype=np.float64)
    y = np.asarray(mean_ps, dtype=np.float64)
    s = np.asarray(mean_err_ps, dtype=np.float64)
    if z.size < 3:
        raise ValueError(f"positions_mm: the linearity test needs >= 3 source positions, got {z.size}")
    if np.any(~np.isfinite(s)) or np.any(s <= 0):
        raise ValueError("mean_err_ps must be finite and > 0")
    a = np.stack([np.ones_like(z), z], axis=1) / s[:, None]
    cov = np.linalg.inv(a.T @ a)
    coef = cov @ a.T @ (y / s)
    chi2 = float(np.sum(((y - coef[0] - coef[1] * z) / s) ** 2))
    ndof = z.size - 2
    expected = 2.0 / SPEED_OF_LIGHT_MM_PER_PS
    slope_err = float(np.sqrt(cov[1, 1]))
    n_sigma = abs(coef[1] - expected) / slope_err
    p = float(stats.chi2.sf(chi2, ndof))
    return {"positions_mm": z, "mean_ps": y, "mean_err_ps": s, "slope": float(coef[1]), "slope_err": slope_err,
            "offset_ps": float(coef[0]), "offset_err_ps": float(np.sqrt(cov[0, 0])), "chi2": chi2, "ndof": ndof,
            "chi2_red": chi2 / ndof, "p_value": p, "n_sigma": float(n_sigma), "expected_slope": expected,
            "passed": bool(n_sigma <= n_sigma_max and p >= chi2_p_min)}


def evaluate_timing(
    model,
    events,
    *,
    label: str = "",
    central_range_mm=None,
    label_bin_ps: float = 20.0,
    n_sigma_max: float = 3.0,
    chi2_p_min: float = 1e-3,
    gate: bool = True,
    device: str | None = None,
) -> TimingEvaluation:
    """Three-fold evaluation of a correction on test coincidences at several axial positions.

    Parameters
    ----------
    model : CorrectionModel or array_like (2, C)
        A trained correction, or per-channel offsets (ps) to evaluate the analytic
        calibration alone ("no ML"; its data-scientific level is the dummy itself and passes).
    events : dict
        Test coincidences (``time_ps``, ``energy_au``, ``source_mm``) at >= 3 axial positions.
    label : str
        Name shown in tables.
    central_range_mm : (float, float), optional
        Restrict the linearity fit to this axial range (the paper uses -100 ... 100 mm for
        implicit models, whose edge positions are biased).
    label_bin_ps : float
        Bin width (ps) of the continuous explicit labels for the MAE curve.
    n_sigma_max, chi2_p_min : float
        Linearity pass criteria (slope within ``n_sigma_max`` sigma of 2/c, chi-square p-value).
    gate : bool
        Skip a level when the previous one failed (``passed`` then holds None for it).
    device : str, optional
        XGBoost prediction device.

    Returns
    -------
    TimingEvaluation
    """
    validate_events(events)
    if isinstance(model, CorrectionModel):
        kind = model.kind
        offsets = model.offsets_ps
        raw = predict_correction(model, events, device=device)
        dt = time_difference(events, offsets)
        corrected = dt - 2.0 * raw if kind is CorrectionKind.EXPLICIT else raw
    else:
        kind = None
        offsets = np.asarray(model, dtype=np.float64)
        if offsets.shape != np.shape(events["time_ps"])[1:]:
            raise ValueError(f"model must be a CorrectionModel or offsets of shape {np.shape(events['time_ps'])[1:]}, "
                             f"got {type(model).__name__} of shape {offsets.shape}")
        corrected = time_difference(events, offsets)
    out = TimingEvaluation(label=label, kind="analytic" if kind is None else kind.value, corrected_ps=corrected)

    # level 1: data-scientific (no energy restriction, sec. 3.2.1)
    if kind is CorrectionKind.EXPLICIT:
        y = explicit_label(events, offsets)
        values, mae, counts = mae_per_label(y, raw, bin_width=label_bin_ps)
        _, dummy, _ = mae_per_label(y, np.zeros_like(y), bin_width=label_bin_ps)
        baselines = {"dummy_mae_ps": dummy}
    else:
        y = expected_dt(events)
        pred = corrected
        values, mae, counts = mae_per_label(y, pred)
        _, dummy, _ = mae_per_label(y, np.zeros_like(y))
        _, no_ml, _ = mae_per_label(y, time_difference(events, offsets))
        baselines = {"dummy_mae_ps": dummy, "no_ml_mae_ps": no_ml}
    w = counts / counts.sum()
    out.mae = {"label_ps": values, "mae_ps": mae, "counts": counts, **baselines,
               "weighted_mae_ps": float(np.sum(w * mae)), "mean_mae_ps": float(mae.mean())}
    for k, v in baselines.items():
        out.mae[f"weighted_{k}"] = float(np.sum(w * v))
    if kind is None:
        out.passed["data"] = True
    else:
        limits = [out.mae[f"weighted_{k}"] for k in baselines]
        out.passed["data"] = bool(out.mae["weighted_mae_ps"] < min(limits))

    # level 2: physics (linearity, 430-590 keV)
    z_all = np.asarray(events["source_mm"], dtype=np.float64)[:, 2]
    photo = energy_mask(events, PHOTOPEAK_KEV)
    if gate and not out.passed["data"]:
        out.passed["physics"] = None
    else:
        zs = np.unique(z_all)
        if central_range_mm is not None:
            zs = zs[(zs >= central_range_mm[0]) & (zs <= central_range_mm[1])]
        fits = [_fit(corrected[photo & (z_all == q)], f"source position z = {q:g} mm") for q in zs]
        out.linearity = linearity_fit(zs, [f.mean for f in fits], [f.mean_err for f in fits],
                                      n_sigma_max=n_sigma_max, chi2_p_min=chi2_p_min)
        out.passed["physics"] = out.linearity["passed"]

    # level 3: PET (CTR)
    if gate and not out.passed.get("physics"):
        out.passed["pet"] = None
        return out
    iso = np.unique(z_all)[np.argmin(np.abs(np.unique(z_all)))]
    at_iso = z_all == iso
    for name, window in (("photopeak", PHOTOPEAK_KEV), ("wide", WIDE_KEV)):
        out.ctr[f"iso_{name}"] = _fit(corrected[at_iso & energy_mask(events, window)], f"iso-centre, {window} keV")
    zs = np.unique(z_all)
    axis = [_fit(corrected[photo & (z_all == q)], f"z = {q:g} mm") for q in zs]
    out.ctr.update({"iso_position_mm": float(iso), "axis_positions_mm": zs,
                    "axis_ctr_ps": np.array([f.fwhm for f in axis]),
                    "axis_ctr_err_ps": np.array([f.fwhm_err for f in axis]),
                    "axis_mean_ctr_ps": float(np.mean([f.fwhm for f in axis]))})
    out.passed["pet"] = True
    return out


def _fit(values, where: str):
    if values.size < 30:
        raise ValueError(f"events: only {values.size} coincidences at {where} in the energy window; "
                         "need >= 30 for a Gaussian fit")
    return gaussian_histogram_fit(values)


def ctr_improvement(analytic_ctr_ps: float, corrected_ctr_ps: float) -> float:
    """Relative CTR improvement ``1 - corrected / analytic``."""
    return 1.0 - corrected_ctr_ps / analytic_ctr_ps

