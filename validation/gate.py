"""Study ``gate``: the GATE 10 (opengate) driver builds exactly the shipped scenarios, GATE's
coincidence sorter agrees with the built-in MC's pairing, and where Geant4 data exists the two
engines agree.

* scenario inventory: every shipped scenario (Thull et al. point sources, tube, shell,
  hot-rod; Lin et al. line-source sweep), its geometry drawn from the poses GATE places;
* poses: block corners and crystal centres of the built ``opengate.Simulation`` against the
  :class:`refsuite.geometry.Scanner`, to 1e-9 mm;
* digitiser and sources: the Thull et al. chain (centroid readout, 12 %, 250 ps CTR,
  450-650 keV, 5 ns) and the source activities/positions, setting by setting;
* GATE's offline coincidence sorter on singles of the built-in MC: the same pairs back;
* GATE vs built-in (counts per block, photopeak): only where the Geant4 data sets exist;
  otherwise a row "not run: Geant4 data missing" and no check.

Broken inputs for the red test: ``run(ctx, inputs=StudyInputs(transpose_rotations=True))``
places blocks with ``A`` instead of ``A.T`` (the classic convention slip), and
``StudyInputs(sorter_window_ns=0.2)`` sorts with a window other than the scenario's 5 ns (narrower than the
spread of t1 - t2, so pairs are lost).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refsuite.capabilities import capability
from refsuite.report import Comparison, RunContext, Section, Table, Tolerance, figure_from_matplotlib

NAME = "gate"
TITLE = "GATE 10 driver: scenarios, exact poses, digitiser, coincidence sorting, engine agreement"

POSE_TOL_MM = 1e-9


@dataclass(frozen=True)
class StudyInputs:
    """What the study builds; the defaults are the honest run."""

    transpose_rotations: bool = False  # place blocks with A instead of A.T (a driver bug)
    sorter_window_ns: float | None = None  # None: the scenario's 5 ns


def _corners(t, r, size):
    s = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1], indexing="ij")).reshape(3, 8).T * np.asarray(size) / 2
    return np.einsum("bij,kj->bki", r, s) + t[:, None, :]


def _nd(x):
    if isinstance(x, dict) and "__ndarray__" in x:
        return np.asarray(x["__ndarray__"], float)
    if isinstance(x, list):
        return np.asarray([_nd(v) for v in x], float)
    return np.asarray(x, float)


def _settings_mismatches(run, sim, d, u) -> list[str]:
    """Digitiser and source settings of a built simulation that differ from the scenario."""
    dig, bad = run.scenario.digitizer, []
    a = {k: v["user_info"] for k, v in d["actor_manager"]["actors"].items()}

    def same(name, got, want, rel=1e-12):
        ok = got == want if isinstance(want, str) else abs(got - want) <= rel * abs(want)
        if not ok:
            bad.append(f"{name}: {got!r} != {want!r}")

    same("readout policy", a["readout"]["policy"], dig.readout.value)
    same("readout group", a["readout"]["group_volume"], f"{run.scanner.name}_block")
    same("energy blur law", a["energy_blur"]["blur_method"], "InverseSquare")
    same("energy FWHM", a["energy_blur"]["blur_resolution"], dig.energy_resolution)
    same("energy reference", a["energy_blur"]["blur_reference_value"], 511.0 * u.keV)
    same("time blur FWHM x sqrt2", a["time_blur"]["blur_fwhm"] * np.sqrt(2.0), dig.ctr_ps * u.ps)
    (ch,) = a["energy_window"]["channels"]
    same("window low", ch["min"], dig.energy_window_kev[0] * u.keV)
    same("window high", ch["max"], dig.energy_window_kev[1] * u.keV)
    same("sorter input", a["coincidences"]["input_digi_collection"], ch["name"])
    same("coincidence window", a["coincidences"]["window"], dig.coincidence_window_ns * u.ns)
    chain = [a[k]["input_digi_collection"] for k in ("readout", "energy_blur", "time_blur", "energy_window")]
    same("chain order", ",".join(chain), "hits,readout,energy_blur,time_blur")
    src = [v["user_info"] for v in d["source_manager"]["sources"].values()]
    total = sum(s["activity"] for s in src) / u.Bq
    same("total activity", total, run.phantom.total_activity)
    (t0, t1), = sim.run_timing_intervals
    same("decays", (t1 - t0) / u.s * total, run.n_decays, rel=1e-9)
    return bad


def _scenarios(section, ctx, inp, runs_by_name, n_runs):
    from simulations.gate import build_simulation, gate_crystal_centres, import_opengate, polyline_distance, tube_segments

    gate = import_opengate()
    u = gate.g4_units
    rows, drawings, mismatches = [], [], []
    with tempfile.TemporaryDirectory(prefix="refsuite-gate-study-") as tmp:
        for name, runs in runs_by_name.items():
            dev = 0.0
            for k, run in enumerate(runs):
                sim = build_simulation(run, output_dir=Path(tmp) / f"{name}{k}")
                blk = sim.volume_manager.get_volume(f"{run.scanner.name}_block")
                if inp.transpose_rotations:
                    blk.rotation = [np.asarray(m).T for m in blk.rotation_list]
                d = json.loads(sim.to_json_string())
                ui = d["volume_manager"]["volumes"][blk.name]["user_info"]
                t, r = _nd(ui["translation"]), _nd(ui["rotation"])
                corners = _corners(t, r, _nd(ui["size"]))
                dev = max(dev, float(np.abs(corners - run.scanner.block_corners()).max()),
                          float(np.abs(gate_crystal_centres(sim, run.scanner) - run.scanner.crystal_centres()).max()))
                mismatches += [f"{name}{run.label}: {m}" for m in _settings_mismatches(run, sim, d, u)]
                if k == 0:
                    drawings.append((name, run, corners))
            section.check(f"poses {name}: block corners and crystal centres vs Scanner (max)", dev,
                          detail=f"{len(runs)} run(s) built; {runs[0].scanner.n_blocks} blocks x "
                                 f"{runs[0].scanner.n_crystals} crystals")
            r0 = runs[0]
            rows.append([name, r0.scanner.name, r0.scanner.n_blocks, r0.scanner.n_crystals,
                         "none" if r0.scanner.misalignment is None else
                         f"{r0.scanner.misalignment.sigma_t_mm:g} mm / {r0.scanner.misalignment.sigma_r_deg:g} deg",
                         type(r0.phantom).__name__, f"{n_runs[name]} ({len(runs)} built)", f"{r0.n_decays:.3g}", f"{r0.duration_s:g}",
                         r0.scenario.source.particle.value])
    section.check("digitiser and source settings differing from the scenarios", len(mismatches),
                  detail="; ".join(mismatches[:6]) or "readout, blurs, window, sorter, activity, decays all equal")
    tube = next(runs[0].phantom for runs in runs_by_name.values() if type(runs[0].phantom).__name__ == "Tube")
    mids, dirs, lengths, _ = tube_segments(tube)
    err = float(polyline_distance(tube.centre_line(8001), mids, dirs, lengths).max())
    section.check("tube polyline: max distance from the B-spline centre line", err,
                  detail=f"{len(lengths)} cylinder sources, tube length {lengths.sum():.1f} mm")
    section.tables.append(Table(
        "Shipped scenarios (simulations/scenarios/*.toml)",
        ["scenario", "scanner", "blocks", "crystals/block", "misalignment sigma_T / sigma_R", "phantom", "runs",
         "decays per run", "time per run (s)", "particle"], rows,
        "Every run is built into an opengate.Simulation (never run without Geant4 data)."))
    _draw(section, drawings)


def _draw(section, drawings):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    fig, axes = plt.subplots(2, len(drawings), figsize=(3.2 * len(drawings), 6.4))
    for col, (name, run, corners) in enumerate(drawings):
        top, side = axes[0, col], axes[1, col]
        bp = None
        if run.scanner.misalignment is not None:
            from refsuite.geometry import preset

            meta = dict(run.scanner.metadata)
            opts = {"binning": tuple(meta["binning"])} if meta.get("preset") == "thull_sim" else {}
            bp = preset(meta["preset"], **opts).block_corners()
        for b in range(len(corners)):
            for ax, (i, j), face in ((top, (0, 1), [0, 2, 6, 4, 0]), (side, (0, 2), [0, 1, 3, 2, 0])):
                if bp is not None:
                    ax.plot(bp[b, face, i], bp[b, face, j], color="0.55", lw=0.6, ls="--")
                ax.plot(corners[b, face, i], corners[b, face, j], color="tab:orange", lw=0.7)
        pts = run.phantom.sample(3000, rng)
        top.scatter(pts[:, 0], pts[:, 1], s=0.3, color="tab:red")
        side.scatter(pts[:, 0], pts[:, 2], s=0.3, color="tab:red")
        top.set(aspect="equal", title=f"{name}\n(x, y mm)")
        side.set(aspect="equal", title="(x, z mm)")
        for ax in (top, side):
            ax.tick_params(labelsize=6)
    section.figures.append(figure_from_matplotlib(
        fig, "Scenario geometries as GATE places them",
        "Orange: block outlines from the poses of each built opengate.Simulation (first run of a sweep); grey "
        "dashed: the blueprint where the scenario is misaligned; red: emission points sampled from the phantom."))


def _sorter(section, ctx, inp, run, n_decays):
    from refsuite.io import read_coincidences
    from refsuite.mc import simulate
    from simulations.builtin import builtin_options
    from simulations.gate import singles_from_events, sort_coincidences, write_singles

    kw = builtin_options(run, n_decays=n_decays)
    kw["activity_bq"] = 1e3  # decays ~1 ms apart, so the sorter's result is exactly the MC's pairs
    ev = simulate(run.scanner, run.phantom, **kw)
    window = run.scenario.digitizer.coincidence_window_ns
    used = window if inp.sorter_window_ns is None else inp.sorter_window_ns
    with tempfile.TemporaryDirectory(prefix="refsuite-gate-sorter-") as tmp:
        write_singles(Path(tmp) / "singles.root", singles_from_events(ev))
        back = read_coincidences(sort_coincidences(Path(tmp) / "singles.root", Path(tmp) / "c.root", window_ns=used),
                                 scanner=run.scanner)
    keep = np.abs(ev["GlobalTime1"] - ev["GlobalTime2"]) <= window
    want, got = set(ev["EventID1"][keep].tolist()), set(back["EventID1"].tolist())
    idx = np.searchsorted(ev["EventID1"], back["EventID1"])
    ok = np.isin(back["EventID1"], ev["EventID1"])
    diff_vals = sum(int(np.sum(back[k][ok] != ev[k][idx[ok]])) for k in ("GlobalTime1", "GlobalTime2",
                                                                           "TotalEnergyDeposit1", "PostPosition_X2"))
    section.check("offline GATE sorter on built-in singles: pairs or values differing", len(want ^ got) + diff_vals,
                  detail=f"{ev.n_events} MC coincidences, {len(got)} sorted by GATE ({used:g} ns window); "
                         f"{len(want ^ got)} pairs differ, {diff_vals} values differ")


def _sweep(section, ctx, runs, n_decays):
    """Built-in sensitivity along the Lin et al. line-source sweep next to the closed form."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from refsuite.mc import simulate
    from refsuite.sensitivity import line_source_sensitivity
    from simulations.builtin import builtin_options

    scan = runs[0].scanner
    # front-face radius and axial half-length of the ring (Lin et al.: R = 403.8 mm, L = 153 mm)
    radius = float(np.min(np.linalg.norm(scan.positions[:, :2], axis=1)) - scan.block_size[1] / 2)
    half = float(np.abs(scan.block_corners()[..., 2]).max())
    rows, r_mm, s_mc, s_cf = [], [], [], []
    for k, run in enumerate(runs):
        kw = builtin_options(run, n_decays=n_decays)
        kw["seed"] = ctx.seed + k
        ev = simulate(run.scanner, run.phantom, **kw)
        r = run.parameters["radial_offset_mm"]
        sg = float(line_source_sensitivity(r, radius=radius, half_length=half, source_length=run.phantom.length_mm))
        p = ev.n_events / n_decays
        rows.append([r, p, np.sqrt(p * (1 - p) / n_decays), sg, p / sg])
        r_mm.append(r), s_mc.append(p), s_cf.append(sg)
    section.tables.append(Table(
        "Line-source sweep (lin_line_sweep): built-in MC vs Lin et al.'s geometric sensitivity",
        ["r (mm)", "built-in coincidences / decay", "std. error", "closed form S_g (line mean)", "ratio"], rows,
        f"{n_decays} decays per offset. The ratio is the detection efficiency of the 20 mm LYSO modules with their "
        "gaps and the energy window; it grows with r as oblique photons cross more crystal. No check: the "
        "closed form is the ideal-cylinder geometry only. The GATE column appears where Geant4 data exists."))
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.plot(r_mm, s_cf, "k-", label="closed form S_g (Lin et al.)")
    ax.errorbar(r_mm, s_mc, yerr=[row[2] for row in rows], fmt="o", ms=3, label="built-in MC (lin_clinical)")
    ax.set(xlabel="radial offset r (mm)", ylabel="coincidences per decay")
    ax.legend(fontsize=7)
    section.figures.append(figure_from_matplotlib(
        fig, "Line-source sweep sensitivity", "Lin et al., Fig. 7 geometry: 700 mm line source, 0 ... 375 mm."))


def _engines(section, ctx, run, duration_s):
    """GATE vs built-in on a short thull_points acquisition, only with Geant4 data."""
    from refsuite.io import read_coincidences
    from simulations.builtin import run_builtin
    from simulations.gate import run_gate
    from simulations.scenario import scenario_from_dict

    d = run.scenario.model_dump(mode="json")
    d["acquisition"] = {"duration_s": duration_s, "seed": ctx.seed}
    short = scenario_from_dict(d).runs()[0]
    with tempfile.TemporaryDirectory(prefix="refsuite-gate-engines-") as tmp:
        g = run_gate(short, Path(tmp) / "g.root")
        run_builtin(short, Path(tmp) / "b.root")
        b = read_coincidences(Path(tmp) / "b.root", scanner=short.scanner)
    n = short.scanner.n_blocks
    cg = np.bincount(np.concatenate([g["BlockID1"], g["BlockID2"]]), minlength=n).astype(float)
    cb = np.bincount(np.concatenate([b["BlockID1"], b["BlockID2"]]), minlength=n).astype(float)
    fg, fb = cg / cg.sum(), cb / cb.sum()
    z = (fg - fb) / np.sqrt(fg * (1 - fg) / cg.sum() + fb * (1 - fb) / cb.sum() + 1e-300)
    section.check("GATE vs built-in: share of singles per block, max |z|", float(np.abs(z).max()),
                  detail=f"{g.n_events} GATE and {b.n_events} built-in coincidences")
    eg = 1000 * np.concatenate([g["TotalEnergyDeposit1"], g["TotalEnergyDeposit2"]])
    eb = 1000 * np.concatenate([b["TotalEnergyDeposit1"], b["TotalEnergyDeposit2"]])
    section.check("GATE vs built-in: mean energy in the window", float(eg.mean()), float(eb.mean()),
                  detail="keV; GATE adds Compton-scattered deposits inside 450-650 keV")
    return [["counts per block", "run", f"max |z| = {np.abs(z).max():.2f}"],
            ["energy spectra", "run", f"mean {eg.mean():.1f} vs {eb.mean():.1f} keV"],
            ["line-source sweep sensitivity", "not run", "too long for the report; run lin_line_sweep with both engines"]]


def run(ctx: RunContext, *, inputs: StudyInputs | None = None) -> Section:
    from simulations.scenario import load_scenario, shipped_scenarios

    inp = inputs or StudyInputs()
    s = Section(study=NAME, title=TITLE, summary=__doc__.split("\n\n")[0])
    if not capability("opengate").available:
        s.notes.append(f"not run: {capability('opengate').detail}")
        s.declare("opengate available", Tolerance(1.0, Comparison.AT_LEAST, justification="the study needs opengate"))
        s.check("opengate available", 0.0, detail=capability("opengate").detail)
        return s
    runs_by_name, n_runs = {}, {}
    for name, path in shipped_scenarios().items():
        runs = load_scenario(path).runs()
        n_runs[name] = len(runs)
        runs_by_name[name] = runs if not ctx.quick or len(runs) == 1 else [runs[0], runs[-1]]
    for name in runs_by_name:
        s.declare(f"poses {name}: block corners and crystal centres vs Scanner (max)", Tolerance(
            POSE_TOL_MM, Comparison.AT_MOST, unit="mm",
            justification="the same numbers handed to Geant4; 1e-9 mm allows double rounding only"))
    s.declare("digitiser and source settings differing from the scenarios", Tolerance(
        0.0, Comparison.AT_MOST, justification="Thull et al. sec. 2.5 chain and the scenario's activity, exactly"))
    s.declare("tube polyline: max distance from the B-spline centre line", Tolerance(
        0.005, Comparison.AT_MOST, unit="mm",
        justification="2 % of the 250 um tube diameter (8001 centre-line points vs the cylinder axes)"))
    s.declare("offline GATE sorter on built-in singles: pairs or values differing", Tolerance(
        0.0, Comparison.AT_MOST, justification="well-separated decays: the sorter must return the MC's pairs exactly"))
    _scenarios(s, ctx, inp, runs_by_name, n_runs)
    _sweep(s, ctx, load_scenario(shipped_scenarios()["lin_line_sweep"]).runs(), 2**15 if ctx.quick else 2**18)
    s.notes.append("Scenarios are validated before any work: pydantic models, no overlapping blocks (Geant4 rejects "
                   "them), no phantom emitting inside a block (simulations.scenario).")
    points = runs_by_name["thull_points"][0]
    _sorter(s, ctx, inp, points, 2 * 4096 if ctx.quick else 16 * 4096)

    g4 = capability("geant4_data")
    if g4.available:
        s.declare("GATE vs built-in: share of singles per block, max |z|", Tolerance(
            5.0, Comparison.AT_MOST, justification="5 sigma over 24 blocks; the engines share geometry and source"))
        s.declare("GATE vs built-in: mean energy in the window", Tolerance(
            10.0, Comparison.ABS_DIFF, unit="keV",
            justification="built-in has photopeak deposits only; GATE's in-window Compton tail shifts the mean"))
        rows = _engines(s, ctx, points, 0.02 if ctx.quick else 0.5)
    else:
        reason = f"not run: Geant4 data missing ({g4.detail})"
        rows = [[what, "not run", reason] for what in
                ("counts per block", "energy spectra", "line-source sweep sensitivity vs refsuite.sensitivity")]
        s.notes.append("GATE vs built-in agreement: " + reason + ". No check is recorded for it (never a fake pass).")
    s.tables.append(Table("GATE vs built-in agreement", ["comparison", "status", "result"], rows))
    s.notes.append("Block pose convention: Geant4 places a local point l at R l + t; refsuite at P + l @ A; "
                   "so t = P and R = A.T (checked against opengate.geometry.utility.get_transform_world_to_local "
                   "in tests/test_gate.py).")
    return s
