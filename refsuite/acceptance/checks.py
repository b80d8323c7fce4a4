"""The acceptance checks: each returns a :class:`CheckResult` (measured figures, tolerances,
verdict, the offending blocks / crystal voxels / channels) and a ``state`` that the next run
compares against (the baseline).

* :func:`check_efficiency` — fan-sum efficiencies (Thull et al., sec. 2.2) from a shell scan;
  dead or weak crystal voxels by a one-sided Poisson test per voxel;
* :func:`check_geometry` — maximum-likelihood alignment (Thull et al.) from a point-source scan,
  per-block deviation from the blueprint after a global Procrustes fit (sec. 2.8);
* :func:`check_timing` — first-order skew calibration and CTR at the iso-centre from a timing
  scan (:mod:`refsuite.timing.listmode_skew`), per-channel skew changes since the baseline;
* :func:`check_sensitivity` — radial sensitivity of a line-source sweep against the
  blueprint's block-quadrature profile (Lin et al.'s eq. 10 over the actual blocks) times a
  fitted global efficiency, with per-point z-scores;
* :func:`check_image_quality` — hot-rod list-mode OSEM with the accepted geometry,
  peak-to-valley ratio per rod size against the baseline.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

#: a verdict on a per-block or per-channel figure needs its standard uncertainty below this
#: fraction of the tolerance (else the scan is too short to judge and the check fails)
PRECISION_FRACTION = 0.2

__all__ = ["PRECISION_FRACTION", "Criterion", "CheckResult", "check_efficiency", "check_geometry", "check_image_quality", "check_sensitivity",
           "check_timing"]


@dataclass
class Criterion:
    """One pass criterion of a check: ``measured`` (in ``unit``) against ``limit``."""

    name: str
    measured: float
    limit: float
    unit: str
    tolerance: str  #: as written in the plan (or derived, e.g. "0 voxels")
    passed: bool
    detail: str = ""
    at_least: bool = False  #: the limit is a lower bound (else an upper bound)


@dataclass
class CheckResult:
    """Outcome of one acceptance check.

    ``offenders`` lists what failed (dicts naming ``block``, ``crystal``, ``channel`` and the
    figures); ``state`` holds the per-block / per-channel values the next run compares
    against; ``change`` the comparison with the baseline (None without one).
    """

    name: str
    title: str
    criteria: list[Criterion]
    offenders: list[dict] = field(default_factory=list)
    figures: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)
    change: dict | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.criteria) and all(c.passed for c in self.criteria)

    def summary(self) -> str:
        """One line: the verdict and, on failure, what failed where."""
        if self.passed:
            return f"{self.name}: passed"
        bad = [f"{c.name} {c.measured:.4g} {c.unit} {'<' if c.at_least else '>'} {c.tolerance}"
               for c in self.criteria if not c.passed]
        where = ", ".join(_label(o) for o in self.offenders[:10])
        more = f" (+{len(self.offenders) - 10} more)" if len(self.offenders) > 10 else ""
        return f"{self.name}: FAILED: {'; '.join(bad)}" + (f"; offending: {where}{more}" if where else "")

    def as_dict(self) -> dict:
        """Plain, strict-JSON data: a non-finite figure becomes None and ``"nonfinite"`` maps its
        path (e.g. ``"criteria[0].measured"``) to the reason (the criterion's detail)."""
        from refsuite.io.jsonsafe import strict

        replaced: list[str] = []
        d = strict(asdict(self), replaced=replaced)
        d["passed"] = self.passed
        if replaced:
            d["nonfinite"] = {p: "not a finite number" + _reason(self, p) for p in replaced}
        return d


def _reason(result: CheckResult, path: str) -> str:
    m = re.match(r"criteria\[(\d+)\]", path)
    detail = result.criteria[int(m.group(1))].detail if m else ""
    return f" ({detail})" if detail else " (not measured)"


def _num(value) -> float:
    """A baseline figure as float; ``None`` (a NaN in the baseline's strict JSON) is NaN."""
    return math.nan if value is None else float(value)


def _label(o: dict) -> str:
    keys = [k for k in ("block", "crystal", "channel", "offset_mm", "rod_diameter_mm") if k in o]
    return " ".join(f"{k} {o[k]}" for k in keys) or str(o)


# ---------------------------------------------------------------------------------- efficiency
def check_efficiency(shell_events, scanner, spec, *, baseline=None) -> tuple[CheckResult, np.ndarray]:
    """Dead or weak crystal voxels from the fan sums of a cylindrical-shell scan.

    Each voxel's raw fan-sum count ``n`` is compared with ``lambda0 = min_fraction x median``
    of its module (block) and depth layer (the depth profile of the counts is physics, not a
    defect). A voxel is flagged when ``P(N <= n | lambda0) < false_alarm / n_voxels`` (one-sided
    Poisson test, Bonferroni over the scanner), so a healthy scanner fails with probability
    below ``false_alarm``. The check also fails when the scan is too short for a dead voxel
    (``n = 0``) to be detectable in the weakest layer: ``exp(-lambda0) >= false_alarm / n_voxels``.

    Returns the result and the normalised efficiencies (N, M) for the alignment.
    """
    from refsuite.alignment import fan_sum_efficiencies

    t0 = time.perf_counter()
    counts = fan_sum_efficiencies(shell_events, scanner, fan_half_angle_deg=spec.fan_half_angle_deg, normalise=False)
    frac = float(spec.min_fraction.value)
    n_vox = counts.size
    alpha = spec.false_alarm / n_vox
    _, layer = np.unique(np.round(scanner.crystals.centres[:, 1], 6), return_inverse=True)
    layer = layer.reshape(-1)
    n_layers = int(layer.max()) + 1
    median = np.stack([np.median(counts[:, layer == k], axis=1) for k in range(n_layers)], 1)  # (N, L)
    lam0 = frac * median[:, layer]  # (N, M)
    p = stats.poisson.cdf(counts, lam0)
    weak = p < alpha
    weakest = float(median.min())
    detectable = math.exp(-frac * weakest) < alpha
    need = math.ceil(-math.log(alpha) / frac)
    offenders = [{"block": int(b), "crystal": int(c), "layer": int(layer[c]), "counts": int(counts[b, c]),
                  "fraction_of_median": float(counts[b, c] / median[b, layer[c]]) if median[b, layer[c]] > 0 else 0.0,
                  "p_value": float(p[b, c])} for b, c in zip(*np.nonzero(weak))]
    crit = [
        Criterion("dead or weak crystal voxels", float(weak.sum()), 0.0, "voxels", "0 voxels", not weak.any(),
                  f"counts significantly below {frac:g} x the median of their module and depth layer "
                  f"(one-sided Poisson p < {spec.false_alarm:g} / {n_vox} voxels)"),
        Criterion("fan-sum counts in the weakest layer", weakest, float(need), "counts", f">= {need} counts",
                  detectable, f"median counts per voxel in the weakest (module, layer); a dead voxel is detectable "
                  f"only above {need} (exp(-{frac:g} x median) < {alpha:.3g})", at_least=True),
    ]
    state = {"weak": [[o["block"], o["crystal"]] for o in offenders], "median_counts": median.tolist(),
             "total_counts": float(counts.sum())}
    change = None
    if baseline is not None:
        old = {tuple(x) for x in baseline.get("weak", [])}
        new = [o for o in offenders if (o["block"], o["crystal"]) not in old]
        m_old = np.asarray(baseline.get("median_counts", []), float)
        rel = None
        if m_old.shape == median.shape and m_old.sum() > 0:
            # relative change of each module's median, after the common scan-length factor
            r = (median / median.sum()) / (m_old / m_old.sum())
            rel = float(np.nanmax(np.abs(r - 1.0)))
        change = {"newly_weak": [[o["block"], o["crystal"]] for o in new],
                  "recovered": sorted(old - {(o["block"], o["crystal"]) for o in offenders}),
                  "largest_module_median_change": rel}
    eff = counts / counts[counts > 0].mean()
    eff[eff == 0] = eff[eff > 0].min()  # the alignment needs a positive efficiency for every voxel
    res = CheckResult("efficiency", "Detection efficiency (fan sums of the shell scan)", crit, offenders,
                      {"voxels": n_vox, "layers": n_layers, "shell_coincidences": int(len(shell_events["BlockID1"]))},
                      state, change, time.perf_counter() - t0)
    return res, eff


# ---------------------------------------------------------------------------------- geometry
def check_geometry(events, blueprint, phantom, spec, *, efficiencies=None, checkpoint=None, progress=False,
                   device=None, baseline=None):
    """Per-block pose deviations from the blueprint found by ML alignment of a point-source scan.

    :func:`refsuite.alignment.align` starts from the blueprint; the found geometry is mapped
    onto the blueprint by a global rigid Procrustes fit (a misplaced phantom or a global
    motion of the gantry is not a defect), then per block: ``|translation|`` (norm of the
    block-local deviations) and the largest tilt of a block axis. A block fails when either
    exceeds its tolerance, or when its pose is too uncertain to judge: its standard uncertainty
    (from the Fisher information of the scan, :mod:`refsuite.alignment.uncertainty`) above
    ``PRECISION_FRACTION`` of the tolerance. Offenders state, in the sense of ISO 14253-1 with
    ``U = 2 sd``, whether the excess is beyond the expanded uncertainty.

    Returns the result and the aligned :class:`refsuite.geometry.Scanner` (the geometry to
    accept, e.g. as the next blueprint).
    """
    from refsuite.alignment import TOFMode, align
    from refsuite.geometry import procrustes_errors

    t0 = time.perf_counter()
    res = align(events, blueprint, phantom, efficiencies=efficiencies,
                tof=TOFMode.FROM_EVENTS if spec.tof else TOFMode.NONE, n_iter=spec.n_iter,
                batch_size=spec.batch_size, checkpoint=checkpoint, resume=checkpoint is not None,
                progress=progress, device=device, seed=spec.seed)
    err = procrustes_errors(res.scanner, blueprint)
    t_um = 1000.0 * np.linalg.norm(err["translation_mm"], axis=1)
    r_deg = err["rotation_deg"].max(1)
    t_lim = spec.translation.display("um")
    r_lim = spec.rotation.display("deg")
    # standard uncertainties from the Fisher information of the scan (before Procrustes, which
    # only removes common motion: an upper bound); largest principal value = any direction
    unc = res.uncertainty
    t_sd = 1000.0 * unc.translation_sd_mm() if unc is not None else np.full(len(t_um), np.nan)
    r_sd = np.degrees(unc.rotation_sd_rad()) if unc is not None else np.full(len(t_um), np.nan)
    bad = (t_um > t_lim) | (r_deg > r_lim)
    uncertain = ~((t_sd <= t_lim * PRECISION_FRACTION) & (r_sd <= r_lim * PRECISION_FRACTION))
    offenders = [{"block": int(b), "translation_um": float(t_um[b]), "rotation_deg": float(r_deg[b]),
                  "translation_sd_um": float(t_sd[b]), "rotation_sd_deg": float(r_sd[b]),
                  "translation_xyz_um": (1000.0 * err["translation_mm"][b]).round(1).tolist(),
                  "reason": _exceeds(t_um[b], t_sd[b], t_lim, "translation") if t_um[b] > t_lim else
                  _exceeds(r_deg[b], r_sd[b], r_lim, "rotation") if r_deg[b] > r_lim else "pose too uncertain"}
                 for b in np.flatnonzero(bad | uncertain)]
    frac = f"{PRECISION_FRACTION:g} x"
    crit = [
        Criterion("largest block translation", float(t_um.max()), t_lim, "um", spec.translation.text,
                  bool(t_um.max() <= t_lim), f"block {int(t_um.argmax())} ({t_um.max():.0f} +- "
                  f"{t_sd[int(t_um.argmax())]:.0f} um); per block: norm of the block-local deviations from the "
                  "blueprint after the global Procrustes fit"),
        Criterion("largest block rotation", float(r_deg.max()), r_lim, "deg", spec.rotation.text,
                  bool(r_deg.max() <= r_lim), f"block {int(r_deg.argmax())} ({r_deg.max():.3f} +- "
                  f"{r_sd[int(r_deg.argmax())]:.3f} deg); largest angle between a found and a blueprint block axis"),
        Criterion("largest translation uncertainty", float(np.nanmax(t_sd)) if unc is not None else float("nan"),
                  t_lim * PRECISION_FRACTION, "um", f"<= {frac} {spec.translation.text}",
                  bool(np.all(t_sd <= t_lim * PRECISION_FRACTION)),
                  "standard uncertainty of the worst-determined block (Fisher information of the scan, "
                  "refsuite.alignment.uncertainty); above this fraction of the tolerance the scan is too short to judge"),
        Criterion("largest rotation uncertainty", float(np.nanmax(r_sd)) if unc is not None else float("nan"),
                  r_lim * PRECISION_FRACTION, "deg", f"<= {frac} {spec.rotation.text}",
                  bool(np.all(r_sd <= r_lim * PRECISION_FRACTION)),
                  "standard uncertainty of the worst-determined block orientation (any axis)"),
    ]
    state = {"translation_um": t_um.tolist(), "rotation_deg": r_deg.tolist(), "translation_sd_um": t_sd.tolist(),
             "rotation_sd_deg": r_sd.tolist()}
    change = None
    if baseline is not None and len(baseline.get("translation_um", [])) == len(t_um):
        dt = t_um - np.asarray(baseline["translation_um"])
        dr = r_deg - np.asarray(baseline["rotation_deg"])
        change = {"largest_translation_change_um": float(np.abs(dt).max()), "block": int(np.abs(dt).argmax()),
                  "largest_rotation_change_deg": float(np.abs(dr).max())}
    figures = {"nll_first": float(res.nll_history[0]), "nll_last": float(res.nll_history[-1]),
               "iterations": len(res.nll_history), "alignment_s": res.timing["total_s"],
               "events": res.info["n_events"]}
    return CheckResult("geometry", "Geometry (ML alignment of the point-source scan)", crit, offenders, figures,
                       state, change, time.perf_counter() - t0), res.scanner


def _exceeds(value, sd, limit, what):
    """Decision in the sense of ISO 14253-1 with an expanded uncertainty ``U = 2 sd``."""
    if value - 2.0 * sd > limit:
        return f"{what} beyond the tolerance by more than its expanded uncertainty (k = 2)"
    return f"{what} beyond the tolerance, but within its expanded uncertainty (k = 2) of it"


# ---------------------------------------------------------------------------------- timing
def check_timing(events, scanner, sources_mm, spec, *, baseline=None) -> CheckResult:
    """Per-channel skews and CTR at the iso-centre from a point-source timing scan.

    Offsets (zero mean) from :func:`refsuite.timing.listmode_skew_calibration`; with a
    baseline, the change of every channel's offset after removing the common change (the
    median; a global shift of all clocks is not a defect) must stay within ``skew_change``.
    The CTR (FWHM, Poisson-weighted Gaussian fit) at the iso-centre source after the
    calibration must stay within ``ctr``. A channel whose offset is too uncertain to judge
    (standard error above a fifth of the tolerance) fails the check too.
    """
    from refsuite.timing.listmode_skew import listmode_ctr, listmode_skew_calibration

    t0 = time.perf_counter()
    kw = dict(sources_mm=sources_mm, granularity=spec.granularity, max_source_distance_mm=spec.max_source_distance_mm)
    cal = listmode_skew_calibration(events, scanner, **kw)
    ctr = listmode_ctr(events, scanner, offsets_ps=cal.offsets_ps, **kw)
    tol = spec.skew_change.value
    crit = [Criterion("CTR at the iso-centre", float(ctr.fwhm), spec.ctr.value, "ps", spec.ctr.text,
                      bool(ctr.fwhm <= spec.ctr.value), f"FWHM {ctr.fwhm:.1f} +- {ctr.fwhm_err:.1f} ps from "
                      f"{ctr.n_events} coincidences after the skew calibration")]
    uncertain = cal.sigma_ps > tol * PRECISION_FRACTION
    crit.append(Criterion("largest skew uncertainty", float(cal.sigma_ps.max()), tol * PRECISION_FRACTION, "ps",
                          f"<= {PRECISION_FRACTION:g} x {spec.skew_change.text}", not uncertain.any(),
                          "standard error of the worst-determined channel offset; above a fifth of the tolerance "
                          "the scan is too short to judge a change"))
    offenders = [{"channel": int(c), "sigma_ps": float(cal.sigma_ps[c]), "reason": "offset too uncertain"}
                 for c in np.flatnonzero(uncertain)]
    state = {"offsets_ps": cal.offsets_ps.tolist(), "sigma_ps": cal.sigma_ps.tolist(),
             "granularity": cal.granularity.value, "ctr_ps": float(ctr.fwhm)}
    change = None
    if baseline is not None:
        old = np.asarray(baseline.get("offsets_ps", []), float)
        if old.shape != cal.offsets_ps.shape or baseline.get("granularity") != cal.granularity.value:
            raise ValueError(f"baseline timing state has {old.size} {baseline.get('granularity')} channels, this scan "
                             f"{cal.offsets_ps.size} {cal.granularity.value} channels: not comparable")
        d = cal.offsets_ps - old
        d -= np.median(d)
        moved = np.abs(d) > tol
        crit.append(Criterion("largest skew change since the baseline", float(np.abs(d).max()), tol, "ps",
                              spec.skew_change.text, not moved.any(),
                              f"channel {int(np.abs(d).argmax())}; offsets minus the baseline's, common (median) "
                              "change removed"))
        offenders += [{"channel": int(c), "skew_change_ps": float(d[c]), "offset_ps": float(cal.offsets_ps[c]),
                       "baseline_offset_ps": float(old[c])} for c in np.flatnonzero(moved)]
        change = {"skew_change_ps": d.tolist(), "ctr_change_ps": float(ctr.fwhm - _num(baseline.get("ctr_ps")))}
    figures = {"ctr_ps": float(ctr.fwhm), "ctr_err_ps": float(ctr.fwhm_err), "channels": int(cal.offsets_ps.size),
               "offset_rms_ps": float(np.sqrt(np.mean(cal.offsets_ps**2)))}
    return CheckResult("timing", "Timing (skew calibration and CTR of the timing scan)", crit, offenders, figures,
                       state, change, time.perf_counter() - t0)


# ---------------------------------------------------------------------------------- sensitivity
def check_sensitivity(offsets_mm, counts, exposure, scanner, spec, *, source_length_mm, azimuth_rad,
                      baseline=None) -> CheckResult:
    """Line-source sweep against :func:`refsuite.sensitivity.block_profile_reference`.

    ``counts`` (true coincidences per point) are compared with the reference times
    ``exposure`` (relative decays per point) and one fitted efficiency
    (:func:`refsuite.sensitivity.compare_radial_profile`): a point fails when it departs from
    the shape by more than ``max_shape_deviation`` *and* significantly (|z| > ``z_max``). The
    check also fails when the counts are too few for a departure of the tolerance to be
    significant (the sweep could not have failed).
    """
    from refsuite.sensitivity import block_profile_reference, compare_radial_profile

    t0 = time.perf_counter()
    off = np.asarray(offsets_mm, float)
    ref = block_profile_reference(off, scanner, source_length_mm=source_length_mm, azimuth_rad=azimuth_rad)
    cmp = compare_radial_profile(off, np.asarray(counts, float), ref * np.asarray(exposure, float),
                                 max_shape_deviation=spec.max_shape_deviation.value, z_max=spec.z_max)
    tol = spec.max_shape_deviation.value
    sig = np.abs(cmp.z_scores) > spec.z_max
    worst = float(np.abs(np.where(sig, cmp.deviation, 0.0)).max())
    crit = [
        Criterion("largest significant shape deviation", 100.0 * worst, 100.0 * tol, "%",
                  spec.max_shape_deviation.text, bool(cmp.passed),
                  f"|counts / (eps x reference) - 1| over points with |z| > {spec.z_max:g}; chi2 = {cmp.chi2:.1f} "
                  f"for {cmp.dof} dof (p = {cmp.p_value:.3g})"),
        Criterion("smallest detectable deviation", 100.0 * float(cmp.min_detectable_deviation.max()), 100.0 * tol,
                  "%", f"<= {spec.max_shape_deviation.text}", bool(cmp.conclusive),
                  "z_max x the standard error of the shape deviation at the weakest point: above the tolerance "
                  "the sweep is too short to test it"),
    ]
    offenders = [{"offset_mm": float(o), "deviation_percent": float(100 * d), "z": float(z)}
                 for o, d, z in zip(off, cmp.deviation, cmp.z_scores) if o in set(cmp.offending_offsets_mm.tolist())]
    state = {"offsets_mm": off.tolist(), "deviation": cmp.deviation.tolist(), "efficiency": cmp.efficiency}
    change = None
    if baseline is not None and baseline.get("offsets_mm") == off.tolist():
        change = {"efficiency_ratio": cmp.efficiency / _num(baseline["efficiency"]),
                  "largest_deviation_change_percent": float(100 * np.abs(cmp.deviation -
                                                                           np.asarray(baseline["deviation"])).max())}
    figures = {"points": len(off), "fitted_efficiency": cmp.efficiency, "chi2": cmp.chi2, "dof": cmp.dof,
               "p_value": cmp.p_value, "total_counts": float(np.sum(counts))}
    return CheckResult("sensitivity", "Sensitivity (line-source sweep vs block reference)", crit, offenders,
                       figures, state, change, time.perf_counter() - t0)


# ---------------------------------------------------------------------------------- image quality
def check_image_quality(events, scanner, phantom, spec, *, baseline=None, device=None) -> CheckResult:
    """Peak-to-valley ratios per rod size of a hot-rod reconstruction with ``scanner``.

    List-mode OSEM (:func:`refsuite.recon.lm_osem` with its per-subset sensitivity of the
    accepted geometry, LORs between crystal centres, no TOF) on the grid of
    :func:`refsuite.recon.hot_rod_grid` with ``voxel_mm`` voxels; PVR per rod size by
    :func:`refsuite.metrics.hot_rod.hot_rod_peak_to_valley`. With a baseline, every rod size's
    PVR must keep ``min_pvr_fraction`` of the baseline's (offenders: the rod sizes below);
    without, the largest rods must reach ``min_pvr_largest``.
    """
    from refsuite.metrics.hot_rod import hot_rod_peak_to_valley
    from refsuite.recon import hot_rod_grid, lm_osem

    t0 = time.perf_counter()
    h = float(spec.voxel_mm)
    shape, origin = hot_rod_grid(phantom, h)
    img = lm_osem(events, scanner, image_shape=shape, voxel_size=h, origin=origin, n_iter=spec.n_iter,
                  n_subsets=spec.n_subsets, seed=spec.seed,
                  n_sensitivity_lines=spec.n_sensitivity_lines, device=device)
    pvr = hot_rod_peak_to_valley(np.asarray(img.cpu()), phantom, voxel_size=h, origin=origin)
    if not pvr:
        raise ValueError("no rod size of the hot-rod phantom has a lattice triangle to measure a valley in")
    largest = max(pvr)
    state = {"pvr": {str(k): v for k, v in pvr.items()}}
    figures = {f"PVR {d:g} mm": v for d, v in sorted(pvr.items(), reverse=True)}
    figures["events"] = int(len(events["BlockID1"]))
    offenders, change = [], None
    old = {float(k): _num(v) for k, v in (baseline or {}).get("pvr", {}).items()}
    if old:
        ratio = {d: pvr[d] / old[d] for d in pvr if d in old and old[d] > 0}
        worst = min(ratio, key=ratio.get)
        frac = spec.min_pvr_fraction.value
        crit = [Criterion("smallest PVR / baseline PVR", ratio[worst], frac, "", spec.min_pvr_fraction.text,
                          bool(ratio[worst] >= frac), f"rods of {worst:g} mm: PVR {pvr[worst]:.3g} vs {old[worst]:.3g}",
                          at_least=True)]
        offenders = [{"rod_diameter_mm": d, "pvr": pvr[d], "baseline_pvr": old[d], "ratio": r}
                     for d, r in sorted(ratio.items()) if r < frac]
        change = {f"PVR ratio {d:g} mm": r for d, r in sorted(ratio.items(), reverse=True)}
    else:
        crit = [Criterion("PVR of the largest rods", pvr[largest], spec.min_pvr_largest, "", f">= {spec.min_pvr_largest:g}",
                          bool(pvr[largest] >= spec.min_pvr_largest), f"rods of {largest:g} mm (no baseline)",
                          at_least=True)]
    return CheckResult("image_quality", "Image quality (hot-rod reconstruction, accepted geometry)", crit, offenders,
                       figures, state, change, time.perf_counter() - t0)
