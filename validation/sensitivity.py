"""Study ``sensitivity``: Lin et al.'s closed-form radial sensitivity against Monte Carlo,
its reference quadrature and the paper's qualitative claim; line-source and finite-depth curves.

(a) Closed form vs Monte Carlo at 16 radial offsets (0 ... 375 mm, 25 mm steps) x 4 axial
    slices (0, 25, 50, 75 mm) for the paper's scanner (R = 403.8 mm, 2L = 306 mm, Sec. III)
    and for the eq.-16 plot (R = 405 mm, L = 153 mm, Fig. 4): per-point z-scores and a
    chi-square goodness-of-fit p-value.
(b) The centre-slice radial profile: S_g first decreases, then increases to its maximum near
    the edge of the FOV (Lin et al., Sec. IV); S(0) = L / sqrt(L^2 + R^2); agreement with the
    adaptive quadrature of the paper's contour integrals.
(c) A 700 mm line source (NEMA NU 2) and a 20 mm LYSO wall (mu = 0.087 /mm) next to the
    ideal curve, each against its own Monte Carlo.
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
from scipy import stats
from scipy.integrate import IntegrationWarning

from refsuite.report import Comparison, RunContext, Section, Table, Tolerance, figure_from_matplotlib
from refsuite.sensitivity import (
    detection_sensitivity,
    detection_sensitivity_mc,
    geometric_sensitivity,
    geometric_sensitivity_mc,
    geometric_sensitivity_reference,
    line_source_sensitivity,
)
from refsuite.sensitivity.monte_carlo import isotropic_directions, pair_hits_wall

NAME = "sensitivity"
TITLE = "Radial sensitivity of a cylindrical PET scanner (Lin et al.)"

SCANNERS = {  # name -> (R, L) in mm
    "Lin et al. scanner (R 403.8, 2L 306 mm)": (403.8, 153.0),
    "eq. 16 plot (R 405, L 153 mm)": (405.0, 153.0),
}
RADII_MM = np.arange(16) * 25.0  # 0 ... 375 mm (Lin et al., Sec. III)
SLICES_MM = np.array([0.0, 25.0, 50.0, 75.0])
FAMILY_ALPHA = 1e-3  # family-wise false-alarm rate of each statistical check
LYSO_MU_PER_MM = 0.087  # LYSO at 511 keV
CRYSTAL_DEPTH_MM = 20.0  # lin_clinical crystal length
LINE_SOURCE_MM = 700.0  # NEMA NU 2 sensitivity phantom


def _z_limit(n_points: int, alpha: float = FAMILY_ALPHA) -> float:
    """|z| bound with family-wise false-alarm rate ``alpha`` over n independent points (Sidak)."""
    per_point = 1.0 - (1.0 - alpha) ** (1.0 / n_points)
    return float(stats.norm.isf(per_point / 2.0))


def run(ctx: RunContext, *, closed_form: Callable = geometric_sensitivity) -> Section:
    """Run the study. ``closed_form`` can be replaced to show that the checks can fail."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_pairs = 200_000 if ctx.quick else 10_000_000
    n_line = 400_000 if ctx.quick else 20_000_000
    section = Section(
        study=NAME,
        title=TITLE,
        summary=(
            f"Closed form (Lin et al., eqs. 10-16) against Monte Carlo with {n_pairs:,} isotropic pairs "
            f"per point ({ctx.mode.value} mode), against the paper's contour integrals by adaptive "
            "quadrature, and the paper's claim on the shape of the radial profile."
        ),
    )
    n_grid = RADII_MM.size * SLICES_MM.size
    z_lim = _z_limit(n_grid)
    for label in SCANNERS:
        section.declare(
            f"MC max |z|, {label}",
            Tolerance(z_lim, Comparison.AT_MOST, justification=(
                f"Sidak bound for {n_grid} independent Gaussian z-scores at family-wise false-alarm rate {FAMILY_ALPHA:g}"),
                false_alarm=f"{FAMILY_ALPHA:g} (Sidak bound over {n_grid} z-scores of binomial counts in the Gaussian limit)"),
        )
        section.declare(
            f"MC chi-square p-value, {label}",
            Tolerance(FAMILY_ALPHA, Comparison.AT_LEAST, justification=(
                f"chi-square goodness of fit with {n_grid} degrees of freedom; false-alarm rate {FAMILY_ALPHA:g}"),
                false_alarm=f"{FAMILY_ALPHA:g} (p-value of a correct model is uniform)"),
        )
    section.declare("closed form vs reference quadrature, max abs error", Tolerance(
        1e-12, Comparison.AT_MOST, justification="accuracy target: the closed form equals the paper's contour "
        "integrals to about 1e3 double-precision ulps of values ~0.1-1",
        false_alarm="0: deterministic (no random input; the same value for every seed)"))
    section.declare("S(0, 0) vs L / sqrt(L^2 + R^2)", Tolerance(
        1e-14, Comparison.ABS_DIFF, justification="exact value on the axis; double-precision round-off",
        false_alarm="0: deterministic (no random input)"))
    section.declare("profile dips below S(0) before rising (S(0) - min S)", Tolerance(
        1e-4, Comparison.AT_LEAST, justification="Lin et al., Sec. IV: sensitivity first decreases (a dip well above round-off)",
        false_alarm="0: deterministic (closed form, no random input)"))
    section.declare("profile maximum at the FOV edge (r_max / 0.99 R)", Tolerance(
        1.0, Comparison.AT_LEAST, justification="Lin et al., Sec. IV: maximum near the periphery of the FOV",
        false_alarm="0: deterministic (closed form, no random input)"))
    line_radii = np.array([0.0, 100.0, 200.0, 300.0])
    wall_radii = np.array([0.0, 150.0, 300.0, 375.0])
    z_lim_small = _z_limit(line_radii.size)
    section.declare("line source vs MC, max |z|", Tolerance(
        z_lim_small, Comparison.AT_MOST, justification=f"Sidak bound, {line_radii.size} points, false-alarm rate {FAMILY_ALPHA:g}",
        false_alarm=f"{FAMILY_ALPHA:g} (Sidak bound)"))
    section.declare("finite-depth wall vs MC, max |z|", Tolerance(
        z_lim_small, Comparison.AT_MOST, justification=f"Sidak bound, {wall_radii.size} points, false-alarm rate {FAMILY_ALPHA:g}",
        false_alarm=f"{FAMILY_ALPHA:g} (Sidak bound)"))

    # (a) closed form vs Monte Carlo -------------------------------------------------------
    rr, zz = np.meshgrid(RADII_MM, SLICES_MM, indexing="ij")
    fig, axes = plt.subplots(1, len(SCANNERS), figsize=(12, 4.2), sharey=True)
    for k, (label, (radius, half)) in enumerate(SCANNERS.items()):
        rng = ctx.rng(k)
        est, se = geometric_sensitivity_mc(rr, zz, radius=radius, half_length=half, n_pairs=n_pairs, rng=rng)
        model = closed_form(rr, zz, radius=radius, half_length=half)
        zs = (est - model) / se
        chi2 = float(np.sum(zs**2))
        section.check(f"MC max |z|, {label}", float(np.max(np.abs(zs))),
                      detail=f"worst at r = {rr.flat[np.argmax(np.abs(zs))]:g} mm, z = {zz.flat[np.argmax(np.abs(zs))]:g} mm")
        section.check(f"MC chi-square p-value, {label}", float(stats.chi2.sf(chi2, n_grid)),
                      detail=f"chi2 = {chi2:.1f} for {n_grid} dof")
        section.tables.append(Table(
            title=f"Closed form vs Monte Carlo, {label}",
            columns=["r (mm)", "z (mm)", "closed form", "MC", "MC s.e.", "z-score"],
            rows=[[float(a), float(b), float(c), float(d), float(e), float(f)]
                  for a, b, c, d, e, f in zip(rr.ravel(), zz.ravel(), model.ravel(), est.ravel(), se.ravel(), zs.ravel())],
        ))
        ax = axes[k]
        r_dense = np.linspace(0.0, 0.999 * radius, 400)
        for j, z in enumerate(SLICES_MM):
            line, = ax.plot(r_dense, closed_form(r_dense, z, radius=radius, half_length=half), lw=1.2,
                            label=f"z = {z:g} mm")
            ax.errorbar(RADII_MM, est[:, j], yerr=2 * se[:, j], fmt="o", ms=3, color=line.get_color())
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("radial offset r (mm)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("geometric sensitivity S_g")
    axes[0].legend(fontsize=8)
    section.figures.append(figure_from_matplotlib(
        fig, "Closed form (lines) and Monte Carlo (points, 2 s.e. bars)",
        "Radial profiles at four axial slices; Monte Carlo with isotropic back-to-back pairs traced to the wall."))

    # (b) the radial profile and the paper's claim -----------------------------------------
    radius, half = SCANNERS["eq. 16 plot (R 405, L 153 mm)"]
    r_prof = np.linspace(0.0, 0.99 * radius, 991)
    s_prof = closed_form(r_prof, 0.0, radius=radius, half_length=half)
    i_min, i_max = int(np.argmin(s_prof)), int(np.argmax(s_prof))
    section.check("profile dips below S(0) before rising (S(0) - min S)", float(s_prof[0] - s_prof[i_min]),
                  detail=f"minimum at r = {r_prof[i_min]:.1f} mm ({r_prof[i_min] / radius:.3f} R)")
    section.check("profile maximum at the FOV edge (r_max / 0.99 R)", float(r_prof[i_max] / r_prof[-1]),
                  detail=f"S(0) = {s_prof[0]:.6f}, S(0.99 R) = {s_prof[-1]:.6f}")
    section.check("S(0, 0) vs L / sqrt(L^2 + R^2)", float(s_prof[0]), float(half / np.hypot(half, radius)))
    r_ref = np.linspace(0.0, 0.999 * radius, 60)
    z_ref = np.linspace(-0.999 * half, 0.999 * half, 60)[np.random.default_rng(ctx.seed).permutation(60)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntegrationWarning)
        oracle = geometric_sensitivity_reference(r_ref, z_ref, radius=radius, half_length=half)
    err = np.abs(closed_form(r_ref, z_ref, radius=radius, half_length=half) - oracle)
    section.check("closed form vs reference quadrature, max abs error", float(err.max()),
                  detail="60 points spanning 0 <= r <= 0.999 R, |z| <= 0.999 L")
    section.tables.append(Table(
        title="Centre-slice profile (R = 405 mm, L = 153 mm)",
        columns=["quantity", "value"],
        rows=[["S(0)", float(s_prof[0])], ["location of the minimum (mm)", float(r_prof[i_min])],
              ["S at the minimum", float(s_prof[i_min])], ["S(0.99 R)", float(s_prof[-1])],
              ["S(0.99 R) / S(0)", float(s_prof[-1] / s_prof[0])]],
    ))

    # (c) line source and finite-depth wall --------------------------------------------------
    radius, half = SCANNERS["Lin et al. scanner (R 403.8, 2L 306 mm)"]
    line_model = line_source_sensitivity(line_radii, radius=radius, half_length=half, source_length=LINE_SOURCE_MM)
    line_mc, line_se = _line_source_mc(line_radii, radius, half, LINE_SOURCE_MM, n_line, ctx.rng(10))
    section.check("line source vs MC, max |z|", float(np.max(np.abs((line_mc - line_model) / line_se))))
    wall_model = detection_sensitivity(wall_radii, 0.0, radius=radius, half_length=half,
                                       depth=CRYSTAL_DEPTH_MM, mu=LYSO_MU_PER_MM)
    wall_mc, wall_se = detection_sensitivity_mc(wall_radii, 0.0, radius=radius, half_length=half,
                                                depth=CRYSTAL_DEPTH_MM, mu=LYSO_MU_PER_MM, n_pairs=n_pairs, rng=ctx.rng(11))
    section.check("finite-depth wall vs MC, max |z|", float(np.max(np.abs((wall_mc - wall_model) / wall_se))))

    r_curve = np.linspace(0.0, 0.99 * radius, 100)
    ideal = geometric_sensitivity(r_curve, 0.0, radius=radius, half_length=half)
    line_curve = line_source_sensitivity(r_curve, radius=radius, half_length=half, source_length=LINE_SOURCE_MM)
    wall_curve = detection_sensitivity(r_curve[::4], 0.0, radius=radius, half_length=half,
                                       depth=CRYSTAL_DEPTH_MM, mu=LYSO_MU_PER_MM)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(r_curve, ideal, label="point source, ideal wall (centre slice)")
    ax.plot(r_curve[::4], wall_curve, "-", label=f"point source, {CRYSTAL_DEPTH_MM:g} mm LYSO wall (mu {LYSO_MU_PER_MM} /mm)")
    ax.plot(r_curve, line_curve, label=f"{LINE_SOURCE_MM:g} mm line source, ideal wall (per decay)")
    ax.errorbar(line_radii, line_mc, yerr=2 * line_se, fmt="o", ms=3, color="C2", label="line source MC")
    ax.errorbar(wall_radii, wall_mc, yerr=2 * wall_se, fmt="s", ms=3, color="C1", label="finite wall MC")
    ax.set_xlabel("radial offset r (mm)")
    ax.set_ylabel("sensitivity (fraction of decays)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    section.figures.append(figure_from_matplotlib(
        fig, "Line source and finite-depth wall next to the ideal curve",
        f"R = {radius} mm, L = {half} mm. The line source counts every decay along {LINE_SOURCE_MM:g} mm, "
        "most of them outside the scanner; the finite wall loses photons crossing short chords."))
    section.tables.append(Table(
        title="Line source and finite wall vs Monte Carlo",
        columns=["r (mm)", "line source", "line MC", "line s.e.", "wall (r, z=0)", "wall MC", "wall s.e."],
        rows=[[float(line_radii[i]), float(line_model[i]), float(line_mc[i]), float(line_se[i]),
               float(wall_model[i]), float(wall_mc[i]), float(wall_se[i])] for i in range(line_radii.size)],
        caption=f"Wall rows are at r = {', '.join(f'{v:g}' for v in wall_radii)} mm.",
    ))
    return section


def _line_source_mc(radii, radius, half, length, n, rng):
    """Fraction of decays uniform along a centred axial line of ``length`` mm giving an accepted pair."""
    est, se = np.empty(radii.size), np.empty(radii.size)
    for i, r in enumerate(radii):
        z = rng.uniform(-0.5 * length, 0.5 * length, n)
        u = isotropic_directions(n, rng)
        est[i] = np.count_nonzero(pair_hits_wall(r, z, u, radius=radius, half_length=half)) / n
        se[i] = np.sqrt(est[i] * (1.0 - est[i]) / n)
    return est, se
