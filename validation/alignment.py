"""Study ``alignment``: maximum-likelihood detector alignment (Thull et al.) on built-in MC data.

A ``thull_sim`` scanner (24 blocks, 2 x 2 x 2 mm crystal voxels with DOI) is perturbed with
sigma_T = 1 mm, sigma_R = 1 deg (the truth is recorded by :func:`refsuite.geometry.perturb`, whose
clearance rule redraws blocks that would overlap, so the truth is a physically possible scanner);
10 point sources are simulated into the *perturbed* scanner with 250 ps CTR, crystal
efficiencies come from the fan sums of a cylindrical-shell acquisition of the same scanner
(Thull et al., sec. 2.2), and :func:`refsuite.alignment.align` starts from the blueprint.
Errors are per block-local axis after a global Procrustes fit (Thull et al., sec. 2.8).

Quick mode is a smaller run of the same code (fewer coincidences, iterations and bins per
batch): it must still bring a 1 mm misalignment below 150 um (the CI target). Full mode
is the paper's scale (<= 5e6 coincidences, 200 iterations) with the paper's targets
(50 um, 0.25 deg) and, reported alongside, a non-TOF run and a run without DOI (the same events
re-binned into 2 x 2 mm columns, ``planar_2mm``). Measured runs: ``docs/studies/alignment.md``.

Full mode also aligns from a tube phantom (a 250 um tube through the point-source positions, in
order of z) with the same settings, against the tube target (150 um).

Image quality (Thull et al., sec. 2.7): a hot-rod phantom simulated into the perturbed scanner is
reconstructed (LM-OSEM, :func:`refsuite.recon.reconstruct_hot_rod`) with the truth, the blueprint
(misaligned) and the aligned geometry; PSNR, SSIM, COV and PVR per rod size are tabulated and the
aligned geometry must beat the blueprint and match the truth geometry.

Broken input for the red test: ``StudyInputs(source_jitter_mm=3.0)`` hands the solver a phantom
whose sources are each moved by ~3 mm (a wrong phantom definition, not a rigid misplacement):
the alignment cannot reach the truth and the accuracy checks turn red.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from refsuite._threads import limited_threads
from refsuite.report import Comparison, RunContext, Section, Table, Tolerance, figure_from_matplotlib
from validation._seed_records import MARGIN, declare_run_time

NAME = "alignment"
TITLE = "Maximum-likelihood detector alignment (Thull et al.) on built-in MC point-source data"


@dataclass(frozen=True)
class StudyInputs:
    """Sizes of the run; ``None`` picks the quick/full default."""

    binning: str = "2mm"
    n_decays: int | None = None
    n_shell_decays: int | None = None
    n_iter: int | None = None
    batch_size: int | None = None
    sigma_t_mm: float = 1.0
    sigma_r_deg: float = 1.0
    source_jitter_mm: float = 0.0  # != 0: the phantom given to the solver is wrong (broken input)
    fan_sum_efficiencies: bool = True  # False: efficiencies 1 (the MC's true intrinsic efficiency)
    with_no_tof: bool | None = None
    with_no_doi: bool | None = None  # also align with the DOI layers merged (thull_sim "planar_2mm" readout)
    with_image_quality: bool = True  # hot-rod reconstructions with truth / blueprint / aligned geometry
    with_tube: bool | None = None  # also align from a tube phantom through the point-source positions
    hot_rod: dict | None = None  # sizes of the hot-rod runs (:data:`_HOT_ROD_QUICK` keys); None: by mode


# quick: ~1.1e5 coincidences, 50k bins per batch
_QUICK = dict(n_decays=1_000_000, n_shell_decays=10_000_000, n_iter=200, batch_size=50_000, with_no_tof=False,
              with_no_doi=False, with_tube=False)
# full: the paper's scale (~5e6 coincidences, 200 iterations); its measured errors, times and memory are in
# docs/studies/alignment.md ("Full plan")
_FULL = dict(n_decays=45_000_000, n_shell_decays=60_000_000, n_iter=200, batch_size=500_000, with_no_tof=True,
             with_no_doi=True, with_tube=True)
#: readout without DOI for the coarse run (Thull et al., Table 1: planar binnings are worse)
_NO_DOI_BINNING = "planar_2mm"


def _without_doi(events, shell, truth, blueprint):
    """The same acquisitions read out without DOI: crystal ids re-binned into ``_NO_DOI_BINNING``
    (the 5 DOI layers of each 2 x 2 mm column merged), with the matching blueprint, truth and
    fan-sum efficiencies."""
    from refsuite.alignment import fan_sum_efficiencies
    from refsuite.geometry import preset

    coarse = preset("thull_sim", binning=_NO_DOI_BINNING)
    ids = blueprint.crystals.coarsened_ids(coarse.crystals)

    def rebin(ev):
        out = type(ev)(ev, attrs=getattr(ev, "attrs", None))
        for k in ("CrystalID1", "CrystalID2"):
            out[k] = ids[np.asarray(ev[k], np.int64)]
        return out

    eff = fan_sum_efficiencies(rebin(shell), coarse)
    eff[eff == 0] = eff[eff > 0].min()
    return rebin(events), coarse, replace(truth, crystals=coarse.crystals), eff


# hot-rod image quality (Thull et al., sec. 2.7, Tables 3-4), three reconstructions of one acquisition:
# quick ~5e5 coincidences, coarse 1 mm voxels (~15 s per geometry on one thread); full 0.4 mm voxels
_HOT_ROD_QUICK = dict(n_decays=5_000_000, voxel_size_mm=1.0, n_iter=3, n_subsets=6, n_sensitivity_lines=4_000_000)
_HOT_ROD_FULL = dict(n_decays=30_000_000, voxel_size_mm=0.4, n_iter=3, n_subsets=10, n_sensitivity_lines=30_000_000)


def _resolve(ctx, inp):
    base = _QUICK if ctx.quick else _FULL
    return replace(inp, **{k: (getattr(inp, k) if getattr(inp, k) is not None else v) for k, v in base.items()})


def _simulate(ctx, inp):
    from refsuite.alignment import fan_sum_efficiencies
    from refsuite.geometry import perturb, preset
    from refsuite.mc import simulate
    from refsuite.phantoms import CylindricalShell, PointSources

    rng = ctx.rng(7)
    blueprint = preset("thull_sim", binning=inp.binning)
    truth = perturb(blueprint, sigma_t_mm=inp.sigma_t_mm, sigma_r_deg=inp.sigma_r_deg, rng=rng)
    src = PointSources.random(10, fov_radius_mm=40.0, fov_half_length_mm=50.0, rng=rng)
    events = simulate(truth, src, n_decays=inp.n_decays, seed=ctx.seed)
    shell = simulate(truth, CylindricalShell(), n_decays=inp.n_shell_decays, seed=ctx.seed + 1)
    eff = fan_sum_efficiencies(shell, blueprint)
    n_dead = int((eff == 0).sum())
    # crystals without a fan count in a short shell run: the smallest measured efficiency (a
    # crystal with no counts is not dead in this simulation, just unlucky)
    eff[eff == 0] = eff[eff > 0].min()
    if not inp.fan_sum_efficiencies:
        eff = None
    solver_src = src
    if inp.source_jitter_mm:
        solver_src = replace(src, centres_mm=src.centres_mm + rng.normal(0, inp.source_jitter_mm, src.centres_mm.shape))
    return blueprint, truth, src, solver_src, events, eff, shell, n_dead


def run(ctx: RunContext, *, inputs: StudyInputs = StudyInputs()) -> Section:
    import matplotlib.pyplot as plt

    from refsuite.alignment import TOFMode, align
    from refsuite.geometry import procrustes_errors

    inp = _resolve(ctx, inputs)
    section = Section(study=NAME, title=TITLE, summary=__doc__.split("\n\n")[1])
    t_lim = 50.0 if not ctx.quick else 150.0
    section.declare("translation error after alignment (worst axis mean)", Tolerance(
        t_lim, Comparison.AT_MOST, unit="um",
        justification="full: the target for 10 point sources, 2 mm voxels with DOI, 250 ps TOF (Thull et al., "
                      "Table 1: 40-50 um); quick: the CI target (a 1 mm misalignment brought below 150 um)",
        false_alarm=MARGIN))
    section.declare("translation error reduction factor", Tolerance(
        0.25 if ctx.quick else 0.08, Comparison.AT_MOST,
        justification="after/before mean translation error; sigma_T = 1 mm gives ~0.7 mm per axis before, so the "
                      "targets above imply a factor <= ~0.2 (quick) / ~0.07 (full)", false_alarm=MARGIN))
    if not ctx.quick:
        section.declare("rotation error after alignment (worst axis mean)", Tolerance(
            0.25, Comparison.AT_MOST, unit="deg", justification="target (Thull et al., Table 1: 0.11-0.23 deg)",
            false_alarm=MARGIN))
    section.declare("NLL decrease over the run", Tolerance(
        0.0, Comparison.AT_LEAST, unit="per event",
        justification="Adam must lower the Poisson NLL: mean of the last 10 batch NLLs below the first, per event",
        false_alarm=MARGIN))
    run_time = Tolerance(
        600.0 if ctx.quick else 1800.0, Comparison.AT_MOST, unit="s",
        justification="budget on 2 CPU cores: quick <= 10 min, full (5e6 coincidences, 200 iterations) "
                      "<= 30 min", false_alarm="depends on machine load, not on the seed (wall time)")
    declare_run_time(section, run_time, quick=ctx.quick)

    blueprint, truth, src, solver_src, events, eff, shell, n_dead = _simulate(ctx, inp)
    n_shell = shell.n_events
    before = procrustes_errors(blueprint, truth)
    data = {"DOI": (events, blueprint, truth, eff)}
    runs = [("TOF 250 ps", TOFMode.FROM_EVENTS, "DOI")] + ([("no TOF", TOFMode.NONE, "DOI")] if inp.with_no_tof else [])
    if inp.with_no_doi:
        data["no DOI"] = _without_doi(events, shell, truth, blueprint)
        if not inp.fan_sum_efficiencies:
            data["no DOI"] = data["no DOI"][:3] + (None,)
        runs.append((f"TOF 250 ps, no DOI ({_NO_DOI_BINNING})", TOFMode.FROM_EVENTS, "no DOI"))
    rows, results = [], {}
    for label, tof, readout in runs:
        ev, bp, tr, ef = data[readout]
        t0 = time.perf_counter()
        res = align(ev, bp, solver_src, efficiencies=ef, tof=tof, n_iter=inp.n_iter,
                    batch_size=inp.batch_size, seed=ctx.seed, device=ctx.device, progress=False)
        wall = time.perf_counter() - t0
        err = procrustes_errors(res.scanner, tr)
        results[label] = (res, err, wall)
        rows.append([label, *np.round(1000 * err["translation_mm_mean"], 1), *np.round(err["rotation_deg_mean"], 3),
                     round(wall, 1), round(res.timing["per_iteration_s"], 2)])
    res, err, wall = results["TOF 250 ps"]
    t_after = 1000 * err["translation_mm_mean"]
    section.check("translation error after alignment (worst axis mean)", float(t_after.max()),
                  detail=f"per axis x, y (DOI), z: {np.round(t_after, 1).tolist()} um; before: "
                         f"{np.round(1000 * before['translation_mm_mean'], 1).tolist()} um")
    section.check("translation error reduction factor",
                  float(err["translation_mm_mean"].mean() / before["translation_mm_mean"].mean()))
    if not ctx.quick:
        section.check("rotation error after alignment (worst axis mean)", float(err["rotation_deg_mean"].max()),
                      detail=f"per axis: {np.round(err['rotation_deg_mean'], 3).tolist()} deg")
    h = res.nll_history
    section.check("NLL decrease over the run", float((h[0] - h[-10:].mean()) / res.info["n_events"]),
                  detail=f"first {h[0]:.6g}, mean of last 10 {h[-10:].mean():.6g}")
    section.check("run time", wall, detail=f"{res.timing['per_iteration_s']:.2f} s/iteration, setup "
                                           f"{res.timing['setup_s']:.1f} s; shared machine: a lower bound of speed")
    if inp.with_tube:
        rows.append(_tube_run(section, ctx, inp, blueprint, truth, src, solver_src, eff))
    rows.insert(0, ["blueprint (before)", *np.round(1000 * before["translation_mm_mean"], 1),
                    *np.round(before["rotation_deg_mean"], 3), "", ""])
    section.tables.append(Table(
        "Mean absolute errors per block-local axis after Procrustes (Thull et al., sec. 2.8)",
        ["run", "T_x (um)", "T_y DOI (um)", "T_z (um)", "R_x (deg)", "R_y (deg)", "R_z (deg)", "wall (s)", "s/it"], rows,
        caption=f"{res.info['n_events']} point-source coincidences, {inp.n_iter} Adam iterations, "
                f"{res.timing['batch_events']} events + {res.timing['batch_support']} support bins per batch; "
                + (f"efficiencies from {n_shell} shell coincidences ({n_dead} crystal voxels without counts set to "
                   "the smallest measured efficiency)." if inp.fan_sum_efficiencies else
                   "efficiencies 1 (the MC has no intrinsic crystal efficiency variation).")))
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    for label, (r, _, _) in results.items():
        ax[0].plot(np.arange(1, len(r.nll_history) + 1), r.nll_history / r.info["n_events"], label=label)
    ax[0].set_xlabel("iteration")
    ax[0].set_ylabel("NLL per event (batch estimate)")
    ax[0].legend()
    ax[1].bar(np.arange(truth.n_blocks), 1000 * np.linalg.norm(before["translation_mm"], axis=1), label="blueprint")
    ax[1].bar(np.arange(truth.n_blocks), 1000 * np.linalg.norm(err["translation_mm"], axis=1), label="aligned")
    ax[1].set_xlabel("block")
    ax[1].set_ylabel("|translation error| (um)")
    ax[1].legend()
    section.figures.append(figure_from_matplotlib(fig, "Convergence and per-block errors",
                                                  "Left: Thull et al., Fig. 4 analogue. Right: TOF run."))
    section.notes.append(
        "Model refinements (measured on this study's quick data, 1.1e5 coincidences, TOF): the paper's model "
        "(uniform points in the voxels, mean line integral) with a 1 mm blob left every block ~250 um outwards along "
        "DOI (errors x/y/z 113/247/207 um). The radial bias grows with the blob smoothing (+0.95 mm at 2 mm, +0.24 mm "
        "at 1 mm): the model uses 0.25 mm. Depth sampling from exp(-mu t) inside the voxel moves it by ~+30 um "
        "(uniform sampling sits 29 um too deep in a 2 mm voxel); the 1/L^2 pair-sensitivity weight is physically "
        "required but changes the result by < 5 um here (near-constant LOR lengths in a small ring).")
    if inp.with_image_quality:
        _image_quality(section, ctx, truth, blueprint, res.scanner, inp.hot_rod or (_HOT_ROD_QUICK if ctx.quick else _HOT_ROD_FULL))
    section.notes.append(f"Timing: setup {res.timing['setup_s']:.1f} s (support enumeration, candidates), "
                         f"{res.timing['per_iteration_s']:.2f} s per iteration at {inp.batch_size} bins per batch; "
                         "the cost per iteration is linear in the batch size (5 sampled lines per bin).")
    return section


def _tube_run(section: Section, ctx: RunContext, inp, blueprint, truth, src, solver_src, eff) -> list:
    """Alignment from a tube phantom (Thull et al., sec. 2.5: a 250 um tube whose centre line runs
    through the 10 point-source positions, here in order of z): the same scanner, efficiencies and
    solver settings as the point-source run, the tube's analytic blob chain as the tracer model.
    The solver's tube runs through ``solver_src`` (the wrong positions of the broken input).
    The tube needs data: at 4 mm voxels and 2.9e4 coincidences (40 iterations) it left
    199 / 549 / 170 um, so it is a full-mode run. Returns the table row."""
    from refsuite.alignment import align
    from refsuite.geometry import procrustes_errors
    from refsuite.mc import simulate
    from refsuite.phantoms import Tube

    section.declare("tube: translation error after alignment (worst axis mean)", Tolerance(
        150.0, Comparison.AT_MOST, unit="um", justification=(
            "the tube target (Thull et al., Table 1: 52-193 um for the tube); measured before this check "
            "existed, with a 508 mm tube through the demo's helical calibration points at quick size (9.8e4 "
            "coincidences, seed 12345): 41 / 98 / 30 um"), false_alarm=MARGIN))
    order = np.argsort(src.centres_mm[:, 2])
    events = simulate(truth, Tube(src.centres_mm[order]), n_decays=inp.n_decays, seed=ctx.seed + 21)
    t0 = time.perf_counter()
    res = align(events, blueprint, Tube(solver_src.centres_mm[order]), efficiencies=eff, n_iter=inp.n_iter, batch_size=inp.batch_size,
                seed=ctx.seed, device=ctx.device, progress=False)
    wall = time.perf_counter() - t0
    err = procrustes_errors(res.scanner, truth)
    t_after = 1000 * err["translation_mm_mean"]
    section.check("tube: translation error after alignment (worst axis mean)", float(t_after.max()),
                  detail=f"per axis x, y (DOI), z: {np.round(t_after, 1).tolist()} um; {res.info['n_events']} "
                         f"coincidences; tube modelled by {res.info['n_blobs']} blobs; {wall:.0f} s")
    return ["tube, TOF 250 ps", *np.round(t_after, 1), *np.round(err["rotation_deg_mean"], 3), round(wall, 1),
            round(res.timing["per_iteration_s"], 2)]


def _image_quality(section: Section, ctx: RunContext, truth, blueprint, aligned, sizes: dict) -> None:
    """Hot-rod acquisition on the *true* (perturbed) scanner reconstructed with the truth, the blueprint
    (misaligned: the truth differs from the geometry used) and the aligned geometry (Thull et al.,
    sec. 2.7); PSNR, SSIM, COV and PVR per rod size of each, and checks that alignment restores the
    image quality of the truth geometry."""
    from refsuite.mc import simulate
    from refsuite.phantoms import HotRod
    from refsuite.recon import reconstruct_hot_rod

    # rods resolved by 2 mm crystals (the projectors study: below 1.5 mm PVR is at the resolution
    # limit and only reported); a geometric mean over them, because a misalignment's effect on one
    # rod size depends on its realisation (see the first justification)
    resolved_mm = (2.0, 1.5)
    gm = lambda r: float(np.exp(np.mean([np.log(r.pvr[d]) for d in resolved_mm])))  # noqa: E731
    section.declare("hot-rod PVR of the resolved rods (2, 1.5 mm), aligned / blueprint", Tolerance(
        1.10, Comparison.AT_LEAST, justification=(
            "sigma_T = 1 mm, sigma_R = 1 deg per block moves each LOR by ~0.7 mm rms at the centre, a blur comparable "
            "to the gaps between the 2 and 1.5 mm rods, while the aligned geometry (errors <= 150 um) adds almost "
            "none; Thull et al., Table 3: 2.15 (blueprint = truth) vs 1.87 for sigma 1 mm/1 deg (ratio 1.15). "
            "History: this check was first the 1.5 mm rods alone; it passed at seed 12345 (1.39) but failed at seeds "
            "1 and 2 (1.07, 0.94) while the 2 mm rods dropped 2.6-fold there: which rod size a given misalignment "
            "blurs is realisation-dependent. The geometric mean over both resolved sizes replaced it after those "
            "three seeds (1.24 / 1.66 / 1.59), so only seeds measured afterwards count as its validation"),
        false_alarm=MARGIN))
    section.declare("hot-rod PSNR, aligned - blueprint", Tolerance(
        0.1, Comparison.AT_LEAST, unit="dB", justification=(
            "Thull et al., Table 4: 14.60 dB with the right geometry vs 14.32 dB at sigma 1 mm/1 deg (+0.28 dB); "
            "the same events are reconstructed, so the difference is systematic, not noise"), false_alarm=MARGIN))
    section.declare("hot-rod PVR of the resolved rods (2, 1.5 mm), aligned vs truth geometry", Tolerance(
        0.10, Comparison.REL_DIFF, justification=(
            "residual alignment errors <= 150 um (quick) blur LORs by << the ~1.2 mm system FWHM; same events and "
            "sensitivity lines in both, so only the geometry differs (first on the 1.5 mm rods alone: +1.5 / +0.8 / "
            "-1.9 % at seeds 12345 / 1 / 2; moved to the geometric mean together with the check above)"),
        false_alarm=MARGIN))
    section.declare("hot-rod PSNR, aligned vs truth geometry", Tolerance(
        0.3, Comparison.ABS_DIFF, unit="dB", justification=(
            "as above; 0.3 dB is the whole blueprint-to-truth gap of Thull et al.'s sigma 1 mm case, which the "
            "aligned geometry must close"), false_alarm=MARGIN))
    phantom = HotRod()
    with limited_threads(1):
        t0 = time.perf_counter()
        events = simulate(truth, phantom, n_decays=int(sizes["n_decays"]), seed=ctx.seed + 11)
        t_sim = time.perf_counter() - t0
        kw = {k: v for k, v in sizes.items() if k != "n_decays"}
        recs = {label: reconstruct_hot_rod(events, geom, phantom, seed=ctx.seed + 12, device="cpu", **kw)
                for label, geom in (("truth geometry", truth), ("blueprint (misaligned)", blueprint),
                                    ("aligned", aligned))}
    tr, bp, al = recs["truth geometry"], recs["blueprint (misaligned)"], recs["aligned"]
    section.check("hot-rod PVR of the resolved rods (2, 1.5 mm), aligned / blueprint", gm(al) / gm(bp),
                  detail=f"geometric mean aligned {gm(al):.3f}, blueprint {gm(bp):.3f}; per size "
                         + ", ".join(f"{d:g} mm {al.pvr[d]:.3f} / {bp.pvr[d]:.3f}" for d in resolved_mm))
    section.check("hot-rod PSNR, aligned - blueprint", al.psnr_db - bp.psnr_db,
                  detail=f"aligned {al.psnr_db:.2f} dB, blueprint {bp.psnr_db:.2f} dB")
    section.check("hot-rod PVR of the resolved rods (2, 1.5 mm), aligned vs truth geometry", gm(al), gm(tr))
    section.check("hot-rod PSNR, aligned vs truth geometry", al.psnr_db, tr.psnr_db)
    sizes_mm = sorted(tr.pvr, reverse=True)
    rows = [[label, f"{r.psnr_db:.2f}", f"{r.ssim:.3f}", f"{100 * r.cov:.1f}", *(f"{r.pvr[d]:.3f}" for d in sizes_mm),
             round(r.timing["reconstruct_s"], 1)] for label, r in recs.items()]
    section.tables.append(Table(
        "Hot-rod image quality by reconstruction geometry (Thull et al., Tables 3-4 analogue)",
        ["geometry", "PSNR (dB)", "SSIM", "COV (%)", *(f"PVR {d:g} mm" for d in sizes_mm), "recon (s)"], rows,
        caption=(f"{tr.n_events} coincidences of the hot-rod phantom (rods 2-0.8 mm) simulated into the perturbed "
                 f"(true) scanner in {t_sim:.0f} s, LM-OSEM {sizes['n_iter']} iterations x {sizes['n_subsets']} subsets, "
                 f"{sizes['voxel_size_mm']:g} mm voxels, attenuation-corrected, no TOF, sensitivity from "
                 f"{sizes['n_sensitivity_lines']:.2g} MC lines with each geometry; metrics against the voxelised phantom "
                 "after sum normalisation, no registration (COV in the 2 mm rods' cores: the phantom has no "
                 "uniform region)")))
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 4, figsize=(13, 3.3))
    h = tr.voxel_size_mm
    for a, (label, r) in zip(ax[:3], recs.items()):
        z = r.origin_mm[2] + h * np.arange(r.image.shape[2])
        plane = r.image[:, :, np.abs(z) <= phantom.length_mm / 2 - 2.0].mean(axis=2)
        o = r.origin_mm
        ext = (o[0] - h / 2, o[0] + (plane.shape[0] - 0.5) * h, o[1] - h / 2, o[1] + (plane.shape[1] - 0.5) * h)
        im = a.imshow(plane.T, origin="lower", extent=ext, cmap="gray_r")
        a.set_title(label, fontsize=9)
        a.set_xlabel("x (mm)", fontsize=8)
        a.set_ylabel("y (mm)", fontsize=8)
        fig.colorbar(im, ax=a, fraction=0.046, label="activity (a.u.)")
    for label, r in recs.items():
        t, prof, _ = r.profiles[resolved_mm[-1]]
        ax[3].plot(t, prof, label=label)
    ax[3].set_xlabel(f"along a row of {resolved_mm[-1]:g} mm rods (mm)")
    ax[3].legend(fontsize=7)
    section.figures.append(figure_from_matplotlib(fig, "Hot-rod reconstructions by geometry",
                                                  "Thull et al., Figs. 5-6 analogue: mean of the rods' central slices."))

