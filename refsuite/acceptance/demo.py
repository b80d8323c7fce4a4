"""The acceptance demonstration: built-in MC scans of ``thull_sim`` before and after a module swap.

Three acquisitions of the same calibration scans (point sources, cylindrical shell, timing
sources, line-source sweep), each written as ``.npz`` list-mode files (or, with
``scan_format="petsird"``, as PETSIRD files holding the blueprint and the readout's crystal ids)
with an acceptance plan next to them:

* ``baseline/`` — the scanner as accepted (the blueprint, its own per-channel clock skews);
  its results.json is the baseline of the other two (no line-source sweep: that check has an
  analytic reference);
* ``a/`` — the same scanner scanned again (new random seeds): every check must pass;
* ``b/`` — one module replaced and re-mounted ``remount_mm`` / ``remount_deg`` off, one crystal
  voxel dead, one channel's skew changed by ``skew_change_ps``: the geometry check must fail on
  that block, the efficiency check on that voxel, the timing check on that channel, nothing else.

The truth of every scenario (the detector as simulated, the defects) is written to
``truth.json`` beside its scans.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from refsuite._checks import check_choice, check_positive
from refsuite.execution import Executor, check_execution, current_executor

__all__ = ["DemoSizes", "QUICK", "FULL", "write_demo", "DEMO_TOLERANCES", "calibration_points"]


@dataclass(frozen=True)
class DemoSizes:
    """Scan sizes (decays) and solver settings of the demonstration."""

    binning: str
    point_decays: int
    shell_decays: int
    timing_decays: int
    sweep_decays: int  #: per line-source position
    n_iter: int
    batch_size: int


#: quick (CI): 2 mm voxels with DOI as in Thull et al.; the shell scan gives a fan-sum median of
#: ~38 counts in the deepest layer, where 32 make a dead voxel detectable (2.5e7 decays: 32).
#: 4.5e6 point decays (4.5e5 coincidences with :func:`calibration_points`) make the worst
#: block's standard uncertainty (Fisher information) 19 um / 0.053 deg, well below a fifth of the
#: geometry tolerances (measured; 1.5e6 decays of randomly placed sources gave 48 um / 0.14 deg)
QUICK = DemoSizes("2mm", point_decays=4_500_000, shell_decays=30_000_000, timing_decays=400_000,
                  sweep_decays=1_000_000, n_iter=120, batch_size=60_000)
#: full: the alignment paper's scale (~5e6 point-source coincidences, 200 iterations, 1e6 bins per batch)
FULL = DemoSizes("2mm", point_decays=45_000_000, shell_decays=60_000_000, timing_decays=2_000_000,
                 sweep_decays=4_000_000, n_iter=200, batch_size=1_000_000)

#: line-source sweep: a 150 mm source (the axial FOV) at 0 ... 60 mm towards the block at phi = 0
SWEEP_OFFSETS_MM = tuple(range(0, 65, 5))
SWEEP_SOURCE_LENGTH_MM = 150.0

#: the tolerances of the demo plans (TOML values). geometry: quick-mode alignment of the
#: unchanged scanner (4.5e5 coincidences, 120 iterations of 6e4 bins and two Fisher-scoring steps)
#: leaves per-block deviations up to 69-75 um / 0.21-0.25 deg (measured, two seeds; 2-3 times the
#: Fisher-information floor), so 200 um / 0.5 deg; the re-mounted block fails on its 0.4 mm (its
#: 0.3 deg alone is below this precision). timing: 250 ps CTR simulated, +10 %.
#: sensitivity: 2 % shape (measured nominal sweeps: <= 0.64 %; refsuite.sensitivity.profile).
DEMO_TOLERANCES = {
    "efficiency": {"min_fraction": 0.5, "false_alarm": 0.01},
    "timing": {"skew_change": "50 ps", "ctr": "275 ps"},
    "geometry": {"translation": "200 um", "rotation": "0.5 deg"},
    "sensitivity": {"max_shape_deviation": "2 %", "z_max": 4.0},
}

def calibration_points(n_sources: int = 10, *, radii_mm=(15.0, 35.0), half_length_mm: float = 50.0):
    """The demo's point-source calibration phantom (22Na sources in PMMA cubes, as Thull et al.).

    A fixed arrangement rather than random placement: every block's pose is judged, so every block
    must see sources from several directions. Source ``k`` sits at the golden angle ``k x 137.5 deg``,
    alternately at the inner and outer radius, at ``z`` evenly spaced over +-``half_length_mm``: a
    helix that spreads the lines of response over all blocks and depths.

    Returns
    -------
    refsuite.phantoms.PointSources
    """
    from refsuite.phantoms import PointSources

    k = np.arange(n_sources)
    phi = k * np.pi * (3.0 - np.sqrt(5.0))
    r = np.where(k % 2 == 0, radii_mm[0], radii_mm[1])
    z = np.linspace(-half_length_mm, half_length_mm, n_sources)
    return PointSources(np.stack([r * np.cos(phi), r * np.sin(phi), z], 1))


#: timing-scan sources: one at the iso-centre (CTR), four off-centre ones connecting the channels, mm
TIMING_SOURCES_MM = [[0, 0, 0], [20, 0, 10], [0, 20, -10], [-20, 0, 25], [0, -20, -25]]


@dataclass(frozen=True)
class Defects:
    """What the swap of scenario (b) changed (the truth the demo checks against)."""

    remounted_block: int = 5
    remount_mm: float = 0.4
    remount_deg: float = 0.3
    dead_block: int = 17
    dead_crystal: int = 150
    skew_channel: int = 11
    skew_change_ps: float = 150.0


def _toml_value(v):
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


#: file suffix of the demo's scans per ``scan_format``
SCAN_SUFFIXES = {"npz": ".npz", "petsird": ".petsird"}


def _plan_text(name, description, checks: dict, sweep: bool, ext: str = ".npz") -> str:
    lines = [f"name = {_toml_value(name)}", f"description = {_toml_value(description)}", "",
             "[scanner]", 'file = "../blueprint.json"', "", "[data]",
             f'point_sources = "points{ext}"', 'point_phantom = "../points_phantom.json"', f'shell = "shell{ext}"',
             f'timing = "timing{ext}"', 'timing_phantom = "../timing_phantom.json"']
    if sweep:
        lines += ["", "[data.line_sweep]", f"source_length_mm = {SWEEP_SOURCE_LENGTH_MM!r}", "azimuth_deg = 0.0",
                  "points = ["] + [f'  {{ offset_mm = {r:.1f}, file = "line_r{r}{ext}" }},' for r in SWEEP_OFFSETS_MM] + ["]"]
    for check, opts in checks.items():
        lines += ["", f"[checks.{check}]"] + [f"{k} = {_toml_value(v)}" for k, v in opts.items()]
    return "\n".join(lines) + "\n"


def _drop_voxel(events, block, crystal):
    from refsuite.events import crystal_ids

    ids = crystal_ids(events)
    dead = ((ids[:, 0] == block) & (ids[:, 1] == crystal)) | ((ids[:, 2] == block) & (ids[:, 3] == crystal))
    return events.take(~dead)


#: the columns kept: the list-mode format's (refsuite.events.REQUIRED_COLUMNS) and the readout ids;
#: positions (the simulation's truth) and energies in float32 keep the files small
def _slim(ev):
    from refsuite.events import CRYSTAL_ID_COLUMNS, REQUIRED_COLUMNS, Events

    keep = list(REQUIRED_COLUMNS) + list(CRYSTAL_ID_COLUMNS)
    out = {}
    for k in keep:
        v = np.asarray(ev[k])
        out[k] = v.astype(np.float32) if k.startswith(("PostPosition", "TotalEnergy")) else v
    return Events(out, attrs=ev.attrs)


def _scan_jobs(folder: Path, sizes, seed, sweep, ext=".npz"):
    """(file name, phantom key, decays, seed) of every scan of one scenario."""
    jobs = [(f"points{ext}", "points", sizes.point_decays, seed), (f"shell{ext}", "shell", sizes.shell_decays, seed + 1),
            (f"timing{ext}", "timing", sizes.timing_decays, seed + 2)]
    if sweep:
        jobs += [(f"line_r{r}{ext}", f"line{r}", sizes.sweep_decays, seed + 3 + k) for k, r in enumerate(SWEEP_OFFSETS_MM)]
    return [(folder / f, key, n, sd) for f, key, n, sd in jobs]


def _simulate_scan(job):
    """Simulate one scan and write its readout (a task of the executor)."""
    from refsuite.geometry import Scanner
    from refsuite.io import save_listmode
    from refsuite.mc import simulate
    from refsuite.phantoms import CylindricalShell, LineSource, load_phantom
    from refsuite.timing.listmode_skew import apply_channel_skews

    path, key, n, seed, scanner_file, phantoms, skews, dead, blueprint_file = job
    scanner = Scanner.load(scanner_file)
    if key == "shell":
        phantom = CylindricalShell()
    elif key.startswith("line"):
        phantom = LineSource(position_mm=(float(key[4:]), 0.0), length_mm=SWEEP_SOURCE_LENGTH_MM)
    else:
        phantom = load_phantom(phantoms[key])
    ev = simulate(scanner, phantom, n_decays=n, seed=seed)
    ev = _slim(ev)
    # every scan runs on the same electronics: the channel skews apply to all of them
    ev = apply_channel_skews(ev, scanner, np.asarray(skews))
    if dead is not None:
        ev = _drop_voxel(ev, *dead)
    if Path(path).suffix == SCAN_SUFFIXES["petsird"]:
        from refsuite.io import write_petsird

        # the readout's file: the blueprint and the crystal ids; 25 ps TOF bins (the alignment's)
        # over the coincidence window widened by the skews of both channels
        reach_ps = float(ev.attrs.get("coincidence_window_ps", 5000.0)) + 2.0 * float(np.abs(skews).max())
        write_petsird(path, Scanner.load(blueprint_file), ev, n_tof_bins=2 * int(np.ceil(reach_ps / 25.0)) + 1)
    else:
        save_listmode(path, ev)
    return str(path)


def write_demo(out_dir, *, sizes: DemoSizes = QUICK, seed: int = 2026, defects: Defects = Defects(),
               executor=None, workers: int | None = None, progress: bool = False, scan_format: str = "npz") -> dict:
    """Write the demonstration scans, plans and truths into ``out_dir``.

    Each scan is one task of ``executor`` (a :class:`refsuite.execution.Executor`; default
    in-process, or the cluster this code runs on as a Dask task) with its own seed, so the scans
    do not depend on the number of workers. ``workers`` (without ``executor``, outside a cluster):
    simulate the scans on a local cluster of that many processes, started only when there are
    scans to simulate (needs the ``cluster`` extra). On a cluster, ``out_dir`` must be on a file system the
    workers share. A folder already holding a complete demo of the same sizes, seed, defects and
    format (``demo.json``) is reused as it is. ``scan_format`` ``"npz"`` (refsuite list-mode) or
    ``"petsird"`` (PETSIRD files: the blueprint in the header, the crystal ids, 25 ps TOF bins;
    PETSIRD encodes each coincidence in Python, so writing takes tens of microseconds per coincidence).

    Returns ``{"baseline": plan path, "a": ..., "b": ...}``.
    """
    from refsuite.geometry import preset
    from refsuite.io import atomic_write_text
    from refsuite.phantoms import PointSources
    from refsuite.timing.listmode_skew import channel_map

    check_positive("remount_mm", defects.remount_mm, unit="mm")
    check_choice("scan_format", scan_format, tuple(SCAN_SUFFIXES))
    ext = SCAN_SUFFIXES[scan_format]
    check_execution(workers, None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    blueprint = preset("thull_sim", binning=sizes.binning)
    if not 0 <= defects.dead_crystal < blueprint.n_crystals:
        raise ValueError(f"dead_crystal must be in [0, {blueprint.n_crystals - 1}], got {defects.dead_crystal}")
    n_ch = int(channel_map(blueprint).max()) + 1
    skews = rng.normal(0.0, 100.0, n_ch)  # the accepted electronics' own skews, ps

    # (b): the re-mounted module, rotated about its planar z axis and shifted in its x-z plane
    d = defects
    rot = np.zeros((blueprint.n_blocks, 3))
    rot[d.remounted_block, 2] = np.deg2rad(d.remount_deg)
    shift = np.zeros((blueprint.n_blocks, 3))
    direction = blueprint.axes[d.remounted_block, 0] + blueprint.axes[d.remounted_block, 2]
    shift[d.remounted_block] = d.remount_mm * direction / np.linalg.norm(direction)
    swapped = blueprint.transform(rot, shift)
    skews_b = skews.copy()
    skews_b[d.skew_channel] += d.skew_change_ps

    desc = {"baseline": "thull_sim as accepted: the last accepted calibration scans",
            "a": "thull_sim unchanged, scanned again: every check must pass",
            "b": f"module {d.remounted_block} replaced and re-mounted {d.remount_mm} mm / {d.remount_deg} deg off, "
                 f"crystal voxel {d.dead_crystal} of block {d.dead_block} dead, channel {d.skew_channel} skewed by "
                 f"{d.skew_change_ps:g} ps"}
    checks = dict(DEMO_TOLERANCES, geometry={**DEMO_TOLERANCES["geometry"], "n_iter": sizes.n_iter,
                                             "batch_size": sizes.batch_size})
    manifest = {"sizes": asdict(sizes), "seed": seed, "defects": asdict(d), "format": 2}
    if scan_format != "npz":  # (npz demos written before the option stay valid)
        manifest["scan_format"] = scan_format
    plans = {name: out / name / "plan.toml" for name in ("baseline", "a", "b")}
    done = out / "demo.json"
    if done.is_file() and json.loads(done.read_text()) == manifest and all(p.is_file() for p in plans.values()):
        return plans  # written before with the same parameters (every file is renamed into place when complete)
    blueprint.save(out / "blueprint.json")
    calibration_points().save(out / "points_phantom.json")
    PointSources(np.asarray(TIMING_SOURCES_MM, float)).save(out / "timing_phantom.json")
    jobs, plan_texts = [], {}
    for k, (name, scanner, sk, dead) in enumerate([("baseline", blueprint, skews, None), ("a", blueprint, skews, None),
                                                   ("b", swapped, skews_b, (d.dead_block, d.dead_crystal))]):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        scanner_file = scanner.save(folder / "truth_scanner.json")
        # the baseline holds the checks the others compare against; the sweep has an analytic reference
        sweep = name != "baseline"
        phantoms = {"points": str(out / "points_phantom.json"), "timing": str(out / "timing_phantom.json")}
        jobs += [(path, key, n, sd, str(scanner_file), phantoms, sk.tolist(), dead, str(out / "blueprint.json"))
                 for path, key, n, sd in _scan_jobs(folder, sizes, seed + 100 * (k + 1), sweep, ext)]
        plan_checks = {c: v for c, v in checks.items() if sweep or c != "sensitivity"}
        truth = {"scenario": name, "description": desc[name], "sizes": asdict(sizes), "seed": seed + 100 * (k + 1),
                 "scanner": scanner_file.name, "channel_skews_ps": sk.tolist(),
                 "defects": asdict(d) if name == "b" else None,
                 "block_rotations_rad": rot.tolist() if name == "b" else None,
                 "block_translations_mm": shift.tolist() if name == "b" else None}
        atomic_write_text(folder / "truth.json", json.dumps(truth, indent=1))
        plan_texts[name] = _plan_text(f"thull_sim-{name}", desc[name], plan_checks, sweep, ext)
    # largest scans first, so that the workers finish together
    jobs.sort(key=lambda j: -j[2])
    ex = executor or current_executor()
    if ex.kind == "in-process" and workers is not None and workers > 1:
        ex = Executor(workers=min(workers, len(jobs)))
    try:
        ex.map(_simulate_scan, jobs, key=lambda j: f"demo-{j[0].parent.name}-{j[0].stem}", progress=progress,
               desc="refsuite acceptance demo", unit="scan")
    finally:
        if ex is not executor:
            ex.close()  # a cluster started here; nothing for the in-process or surrounding one
    for name, text in plan_texts.items():  # plans last: a killed run leaves no plan of missing scans
        atomic_write_text(plans[name], text)
    atomic_write_text(done, json.dumps(manifest))
    return plans
