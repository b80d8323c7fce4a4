"""GATE 10 (opengate) driver: a scenario :class:`~simulations.scenario.Run` built into an exact
``opengate.Simulation``.

Geometry. Every detector block of the :class:`refsuite.geometry.Scanner` is one repetition of
a repeated ``Box`` volume. Geant4 places a daughter point ``l`` (local frame) at
``R l + t`` in its mother (``opengate.geometry.utility.get_transform_world_to_local``
composes ``ctr = R_mother @ ctr + t_mother``), while refsuite puts the local point at
``P + l @ A`` with the rows of ``A`` the local axes X, Y, Z (Thull et al., sec. 2.1); hence
``t = P`` and ``R = A.T`` (columns = local axes). Crystal voxels are repeated boxes inside
the block's logical volume, one volume per distinct voxel size, at the LUT centres
(rotation identity). The block box is the crystal material when the voxels fill it, else a
BaSO4 reflector. Both poses are compared with the Scanner to 1e-9 mm in the tests.

Digitiser (Thull et al., sec. 2.5): hits in the crystals -> readout per block with the
energy-weighted centroid (``DigitizerAdderActor``) -> energy blur, Gaussian, 12 % FWHM at
511 keV, ``InverseSquare`` law -> time blur, Gaussian with per-single FWHM = CTR / sqrt(2)
(so that ``t1 - t2`` has FWHM = CTR = 250 ps) -> energy window 450-650 keV
(``DigitizerEnergyWindowsActor``) -> coincidence sorting in a 5 ns window
(``CoincidenceSorterActor``), everything in one ROOT file.

Sources: ``back_to_back`` 511 keV pairs (Thull et al.'s choice) or 18F / 22Na ions with
radioactive decay. Units: refsuite mm, ps, keV, Bq, s; converted to Geant4 units here.

opengate is imported lazily (``GATEONRTD=1`` is set first, so the import never tries to
download Geant4 data); :func:`run_gate` refuses to start without the Geant4 data.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from refsuite.capabilities import require

from .scenario import Particle, Run

__all__ = [
    "import_opengate", "block_poses", "build_simulation", "run_gate", "sort_coincidences", "singles_from_events",
    "write_singles", "gate_crystal_centres", "lyso_mass_fractions", "tube_segments", "polyline_distance", "BLOCK", "CRYSTAL",
]

#: Volume names (``<scanner>_block``, ``<scanner>_crystal<k>``).
BLOCK, CRYSTAL = "block", "crystal"
_LYSO_DENSITY_G_CM3 = 7.1
_LYSO_FORMULA = {"Lu": 1.8, "Y": 0.2, "Si": 1.0, "O": 5.0}  # Lu1.8 Y0.2 SiO5
_ATOMIC_MASS = {"Lu": 174.967, "Y": 88.906, "Si": 28.086, "O": 15.999}


def import_opengate():
    """Import opengate without network access (``GATEONRTD=1``); clear error when absent."""
    require("opengate", "the GATE driver")
    os.environ.setdefault("GATEONRTD", "1")
    import opengate

    return opengate


def lyso_mass_fractions() -> dict[str, float]:
    """Mass fractions of Lu1.8Y0.2SiO5 (LYSO), from standard atomic masses."""
    m = {e: n * _ATOMIC_MASS[e] for e, n in _LYSO_FORMULA.items()}
    tot = sum(m.values())
    return {e: v / tot for e, v in m.items()}


def block_poses(scanner):
    """Geant4 placements of the scanner's blocks.

    Returns
    -------
    translations : ndarray (N, 3)
        Block centres ``P``, mm.
    rotations : ndarray (N, 3, 3)
        ``A.T``: local -> mother rotation whose columns are the block's local X, Y, Z.
    """
    return np.array(scanner.positions, float), np.swapaxes(np.array(scanner.axes, float), 1, 2)


def _crystal_groups(scanner):
    """Crystal voxels grouped by size: list of (half_size (3,), indices (k,))."""
    hs = np.asarray(scanner.crystals.half_sizes, float)
    uniq, inv = np.unique(hs, axis=0, return_inverse=True)
    return [(uniq[k], np.flatnonzero(inv.ravel() == k)) for k in range(len(uniq))]


def _fills_block(scanner) -> bool:
    vol = np.prod(2 * np.asarray(scanner.crystals.half_sizes), axis=1).sum()
    return bool(np.isclose(vol, np.prod(scanner.block_size), rtol=1e-9))


def tube_segments(tube, *, tolerance_mm: float | None = None):
    """Straight cylinder pieces approximating a :class:`refsuite.phantoms.Tube` centre line.

    The centre line is sampled every ~10 um and split greedily into the longest chords
    whose distance from the sampled curve stays within ``tolerance_mm`` (default 2 % of
    the tube diameter, 5 um for Thull et al.'s 250 um tube).

    Returns
    -------
    midpoints : (n, 3) mm
    directions : (n, 3) unit vectors
    lengths : (n,) mm
    max_chord_error_mm : float
        Largest distance of a sampled centre-line point from its chord (the approximation error).
    """
    tol = 0.02 * tube.diameter_mm if tolerance_mm is None else float(tolerance_mm)
    if not tol > 0:
        raise ValueError(f"tolerance_mm must be > 0, got {tolerance_mm}")
    pts = tube.centre_line(int(np.clip(tube.length_mm / 0.01, 1001, 400_001)))
    n = len(pts)

    def err(i, j):
        u = pts[j] - pts[i]
        u = u / np.linalg.norm(u)
        rel = pts[i:j + 1] - pts[i]
        return np.linalg.norm(rel - (rel @ u)[:, None] * u, axis=1).max()

    breaks, i = [0], 0
    while i < n - 1:
        lo, step = i + 1, 1
        while lo + step < n and err(i, lo + step) <= tol:  # exponential then binary search
            lo += step
            step *= 2
        hi = min(lo + step, n - 1)
        if err(i, hi) <= tol:
            lo = hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if err(i, mid) <= tol else (lo, mid)
        breaks.append(lo)
        i = lo
    worst = max(err(a, b) for a, b in zip(breaks[:-1], breaks[1:]))
    ends = pts[breaks]
    d = np.diff(ends, axis=0)
    lengths = np.linalg.norm(d, axis=1)
    return ends[:-1] + d / 2, d / lengths[:, None], lengths, float(worst)


def polyline_distance(points, midpoints, directions, lengths, *, chunk: int = 512) -> np.ndarray:
    """Distance (mm) of each point (n, 3) from the nearest of the segments (from :func:`tube_segments`)."""
    p = np.asarray(points, float)
    a = midpoints - directions * lengths[:, None] / 2
    out = np.empty(len(p))
    for s0 in range(0, len(p), chunk):
        q = p[s0:s0 + chunk, None, :] - a[None]
        t = np.clip(np.einsum("nki,ki->nk", q, directions), 0.0, lengths)
        out[s0:s0 + chunk] = np.linalg.norm(q - t[..., None] * directions[None], axis=-1).min(1)
    return out


def _z_to(direction):
    """Rotation matrix taking +z to ``direction`` (Rodrigues)."""
    z = np.array([0.0, 0.0, 1.0])
    v = np.cross(z, direction)
    c = float(np.dot(z, direction))
    if np.linalg.norm(v) < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k / (1 + c)


def _world_half_size(scanner, phantom) -> float:
    from refsuite import phantoms as ph

    ext = np.abs(scanner.block_corners()).max()
    if isinstance(phantom, ph.LineSource):
        ext = max(ext, abs(phantom.centre_z_mm) + phantom.length_mm / 2, np.hypot(*phantom.position_mm))
    elif isinstance(phantom, (ph.PointSources,)):
        ext = max(ext, np.abs(phantom.centres_mm).max() + phantom.cube_mm)
    elif isinstance(phantom, ph.Tube):
        ext = max(ext, np.abs(phantom.centre_line(200)).max() + phantom.diameter_mm)
    else:
        c = np.abs(np.asarray(getattr(phantom, "centre_mm", (0, 0, 0)), float))
        r = max(getattr(phantom, k, 0.0) for k in ("outer_radius_mm", "radius_mm", "body_radius_mm"))
        ext = max(ext, c[:2].max() + r, c[2] + phantom.length_mm / 2)
    return float(ext) * 1.1 + 10.0


def build_simulation(run: Run, *, output_dir, output_name: str = "gate_output.root", threads: int = 1):
    """Build the ``opengate.Simulation`` of one scenario run (nothing is run).

    Parameters
    ----------
    run : simulations.scenario.Run
        Scanner (with its misalignment already applied), phantom, acquisition, digitiser.
    output_dir : str or Path
        Folder of GATE's ROOT output.
    output_name : str
        ROOT file holding the singles (``singles``, ``windowed``) and ``coincidences`` trees.
    threads : int
        Geant4 worker threads (activity is split between them).

    Returns
    -------
    opengate.Simulation
    """
    gate = import_opengate()
    u = gate.g4_units
    sc, dig, scanner, phantom = run.scenario, run.scenario.digitizer, run.scanner, run.phantom
    threads = int(threads)
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")

    sim = gate.Simulation()
    sim.random_seed = int(sc.acquisition.seed)
    sim.number_of_threads = threads
    sim.output_dir = str(output_dir)
    sim.verbose_level = gate.logger.NONE
    sim.progress_bar = False
    sim.physics_manager.physics_list_name = "G4EmStandardPhysics_option3"
    sim.physics_manager.enable_decay = sc.source.particle is not Particle.BACK_TO_BACK
    sim.physics_manager.set_production_cut("world", "all", 1 * u.mm)
    sim.run_timing_intervals = [[0.0, run.duration_s * u.s]]

    half = sc.world_size_mm / 2 if sc.world_size_mm else _world_half_size(scanner, phantom)
    sim.world.size = [2 * half * u.mm] * 3
    sim.world.material = "G4_AIR"

    db = sim.volume_manager.material_database
    frac = lyso_mass_fractions()
    if scanner.material.upper() == "LYSO":
        db.add_material_weights("LYSO", list(frac), list(frac.values()), _LYSO_DENSITY_G_CM3 * u.g / u.cm3)
    crystal_material = "LYSO" if scanner.material.upper() == "LYSO" else scanner.material

    # ---- detector blocks and crystals
    prefix = scanner.name
    block = sim.add_volume("Box", f"{prefix}_{BLOCK}")
    block.size = [float(s) * u.mm for s in scanner.block_size]
    block.material = crystal_material if _fills_block(scanner) else "G4_BARIUM_SULFATE"
    t, r = block_poses(scanner)
    block.translation = [list(map(float, p * u.mm)) for p in t]
    block.rotation = [np.array(m) for m in r]
    block.color = [0.2, 0.4, 1.0, 0.5]
    crystals = []
    for k, (hs, idx) in enumerate(_crystal_groups(scanner)):
        c = sim.add_volume("Box", f"{prefix}_{CRYSTAL}{k}")
        c.mother = block.name
        c.size = [float(2 * h) * u.mm for h in hs]
        c.material = crystal_material
        c.translation = [list(map(float, p * u.mm)) for p in scanner.crystals.centres[idx]]
        c.rotation = [np.eye(3)] * len(idx)
        crystals.append(c)

    # ---- phantom volumes and sources
    _add_phantom(sim, gate, run, threads)

    # ---- digitiser chain (Thull et al., sec. 2.5)
    out = str(output_name)
    hits = sim.add_actor("DigitizerHitsCollectionActor", "hits")
    hits.attached_to = [c.name for c in crystals]
    hits.authorize_repeated_volumes = True
    hits.attributes = ["EventID", "PostPosition", "TotalEnergyDeposit", "PreStepUniqueVolumeID", "GlobalTime",
                       "TrackVertexPosition"]
    hits.output_filename = out
    hits.write_to_disk = False

    readout = sim.add_actor("DigitizerAdderActor", "readout")
    readout.attached_to = hits.attached_to
    readout.authorize_repeated_volumes = True
    readout.input_digi_collection = hits.name
    readout.policy = dig.readout.value
    readout.group_volume = block.name
    readout.output_filename = out
    readout.write_to_disk = False

    eblur = sim.add_actor("DigitizerBlurringActor", "energy_blur")
    eblur.attached_to = hits.attached_to
    eblur.authorize_repeated_volumes = True
    eblur.input_digi_collection = readout.name
    eblur.blur_attribute = "TotalEnergyDeposit"
    eblur.blur_method = "InverseSquare"
    eblur.blur_resolution = float(dig.energy_resolution)
    eblur.blur_reference_value = 511.0 * u.keV
    eblur.output_filename = out
    eblur.write_to_disk = False

    tblur = sim.add_actor("DigitizerBlurringActor", "time_blur")
    tblur.attached_to = hits.attached_to
    tblur.authorize_repeated_volumes = True
    tblur.input_digi_collection = eblur.name
    tblur.blur_attribute = "GlobalTime"
    tblur.blur_method = "Gaussian"
    tblur.blur_fwhm = float(dig.ctr_ps / np.sqrt(2.0)) * u.ps
    tblur.output_filename = out
    tblur.write_to_disk = False

    window = sim.add_actor("DigitizerEnergyWindowsActor", "energy_window")
    window.attached_to = hits.attached_to
    window.authorize_repeated_volumes = True
    window.input_digi_collection = tblur.name
    lo, hi = dig.energy_window_kev
    window.channels = [{"name": "singles", "min": float(lo) * u.keV, "max": float(hi) * u.keV}]
    window.output_filename = out

    cc = sim.add_actor("CoincidenceSorterActor", "coincidences")
    cc.input_digi_collection = "singles"
    cc.window = float(dig.coincidence_window_ns) * u.ns
    cc.multiples_policy = "TakeAllGoods"
    cc.output_filename = out

    stats = sim.add_actor("SimulationStatisticsActor", "stats")
    stats.output_filename = "stats.txt"
    return sim


def _add_phantom(sim, gate, run: Run, threads: int) -> None:
    from refsuite import phantoms as ph

    u = gate.g4_units
    p = run.phantom
    src = run.scenario.source

    def source(name, activity_bq, **position):
        s = sim.add_source("GenericSource", name)
        if src.particle is Particle.BACK_TO_BACK:
            s.particle = "back_to_back"
            s.energy.type = "mono"
            s.energy.mono = 511.0 * u.keV
            if src.acollinearity_fwhm_deg > 0:
                s.direction.accolinearity_flag = True
                s.direction.accolinearity_fwhm = src.acollinearity_fwhm_deg * u.deg
        else:
            z, a = {Particle.F18: (9, 18), Particle.NA22: (11, 22)}[src.particle]
            s.particle = f"ion {z} {a}"
            s.energy.type = "mono"
            s.energy.mono = 0.0
        s.direction.type = "iso"
        s.activity = float(activity_bq) * u.Bq / threads
        for k, v in position.items():
            setattr(s.position, k, v)
        return s

    # GenericSource "cylinder": ``dz`` is the HALF length (GateGenericSource calls SetHalfZ(dz)),
    # like G4Tubs' dz; ``rotation`` turns the local z axis of the position distribution
    mm = u.mm
    if isinstance(p, ph.PointSources):
        if p.cube_mm > 0:
            cube = sim.add_volume("Box", "pmma_cubes")
            cube.size = [p.cube_mm * mm] * 3
            cube.material = "G4_PLEXIGLASS"
            cube.translation = [list(map(float, c * mm)) for c in p.centres_mm]
            cube.rotation = [np.eye(3)] * len(p.centres_mm)
        for k, (c, a) in enumerate(zip(p.centres_mm, p.activities_bq)):
            source(f"point{k}", a, type="sphere", radius=p.radius_mm * mm, translation=list(map(float, c * mm)))
    elif isinstance(p, ph.Tube):
        mids, dirs, lengths, _ = tube_segments(p)
        for k, (m, d, ln) in enumerate(zip(mids, dirs, lengths)):
            source(f"tube{k}", p.activity_bq * ln / lengths.sum(), type="cylinder", radius=p.diameter_mm / 2 * mm,
                   dz=ln / 2 * mm, translation=list(map(float, m * mm)), rotation=_z_to(d))
    elif isinstance(p, ph.LineSource):
        source("line", p.activity_bq, type="cylinder", radius=p.radius_mm * mm, dz=p.length_mm / 2 * mm,
               translation=[p.position_mm[0] * mm, p.position_mm[1] * mm, p.centre_z_mm * mm])
    elif isinstance(p, (ph.CylindricalShell, ph.UniformCylinder)):
        shell = isinstance(p, ph.CylindricalShell)
        vol = sim.add_volume("Tubs", "phantom")
        vol.rmin = p.inner_radius_mm * mm if shell else 0.0
        vol.rmax = (p.outer_radius_mm if shell else p.radius_mm) * mm
        vol.dz = p.length_mm / 2 * mm
        vol.material = "G4_WATER"
        vol.translation = [c * mm for c in p.centre_mm]
        source("phantom", p.activity_bq, type="cylinder", radius=vol.rmax, dz=vol.dz,
               translation=list(vol.translation), confine=vol.name if shell else None)
    elif isinstance(p, ph.HotRod):
        body = sim.add_volume("Tubs", "hotrod_body")
        body.rmax = p.body_radius_mm * mm
        body.dz = p.length_mm / 2 * mm
        body.material = "G4_PLEXIGLASS"
        body.translation = [c * mm for c in p.centre_mm]
        centres, radii = p.rods()
        weights = radii**2 / np.sum(radii**2)
        for k, rad in enumerate(np.unique(radii)):
            sel = radii == rad
            rods = sim.add_volume("Tubs", f"hotrod_rods{k}")
            rods.mother = body.name
            rods.rmax = rad * mm
            rods.dz = body.dz
            rods.material = "G4_WATER"
            rods.translation = [[float(x - p.centre_mm[0]) * mm, float(y - p.centre_mm[1]) * mm, 0.0]
                                for x, y in centres[sel]]
            rods.rotation = [np.eye(3)] * int(sel.sum())
        for k, ((x, y), rad, w) in enumerate(zip(centres, radii, weights)):
            source(f"rod{k}", p.activity_bq * w, type="cylinder", radius=rad * mm, dz=p.length_mm / 2 * mm,
                   translation=[x * mm, y * mm, p.centre_mm[2] * mm])
    else:
        raise TypeError(f"no GATE model for phantom {type(p).__name__}")


def gate_crystal_centres(sim, scanner) -> np.ndarray:
    """World centres (N, M, 3) mm of the crystal volumes of a built simulation, in LUT order.

    Composes each crystal placement with each block placement exactly as Geant4 does
    (``world = R_block (R_crystal c + t_crystal) + t_block``), reading the poses back from
    the volumes' ``translation_list``/``rotation_list``.
    """
    blk = sim.volume_manager.get_volume(f"{scanner.name}_{BLOCK}")
    tb, rb = np.asarray(blk.translation_list, float), np.asarray(blk.rotation_list, float)
    out = np.empty((scanner.n_blocks, scanner.n_crystals, 3))
    for k, (_, idx) in enumerate(_crystal_groups(scanner)):
        c = sim.volume_manager.get_volume(f"{scanner.name}_{CRYSTAL}{k}")
        # a crystal's own centre is its local origin, so only its translation enters
        tc = np.asarray(c.translation_list, float)
        out[:, idx] = np.einsum("bij,kj->bki", rb, tc) + tb[:, None, :]
    return out


def run_gate(run: Run, out, *, threads: int = 1, keep_raw: bool = False):
    """Run GATE for one scenario run and write the coincidences in refsuite's ROOT schema.

    Stops with :class:`RuntimeError` (saying how to install them) when the Geant4 data sets
    are missing: without them ``Simulation.run`` aborts the process. The simulation runs in
    a child process (``start_new_process=True``) so that a Geant4 failure cannot take the
    caller down. The output is written atomically.

    Returns
    -------
    refsuite.events.Events
        The coincidences (as read back by :func:`refsuite.io.read_coincidences`, block and
        crystal indices from the interaction positions).
    """
    from refsuite.io import read_coincidences, write_coincidences

    from .builtin import blueprint_path, save_truth, truth_paths

    if not run.scenario.attenuation:
        raise ValueError(f"scenario {run.scenario.name}: attenuation = false is a built-in MC option; GATE always "
                         "attenuates in the phantom")
    require("geant4_data", "running a GATE simulation")
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="refsuite-gate-") as tmp:
        sim = build_simulation(run, output_dir=tmp, threads=threads)
        sim.run(start_new_process=True)
        raw = Path(tmp) / "gate_output.root"
        events = read_coincidences(raw, run.scanner, tree="coincidences")
        scanner_file, phantom_file = truth_paths(out)
        events.attrs.update(_attrs(run, engine="gate"), scanner_file=scanner_file.name, phantom_file=phantom_file.name,
                            blueprint_file=blueprint_path(out).name)
        write_coincidences(out, events)
        save_truth(run, out)
        if keep_raw:
            import shutil

            shutil.copy(raw, out.with_name(out.stem + ".gate_raw.root"))
    return events


def _attrs(run: Run, *, engine: str) -> dict:
    sc = run.scenario
    return {"engine": engine, "scenario": sc.model_dump(mode="json"), "run_label": run.label,
            "parameters": run.parameters, "n_decays": run.n_decays, "duration_s": run.duration_s}


# ---------------------------------------------------------------- offline coincidence sorting
def singles_from_events(events) -> dict[str, np.ndarray]:
    """Split coincidence columns ``X1``/``X2`` into one time-sorted singles table (GATE names).

    Adds ``PreStepUniqueVolumeID`` (``"0_<block>_<crystal>"``) when block/crystal IDs exist.
    """
    bases = sorted({k[:-1] for k in events if k.endswith("1") and f"{k[:-1]}2" in events})
    singles = {b: np.concatenate([np.asarray(events[f"{b}1"]), np.asarray(events[f"{b}2"])]) for b in bases}
    if "BlockID" in singles and "CrystalID" in singles and "PreStepUniqueVolumeID" not in singles:
        singles["PreStepUniqueVolumeID"] = np.char.add(np.char.add("0_", singles["BlockID"].astype(str)),
                                                       np.char.add("_", singles["CrystalID"].astype(str)))
    order = np.argsort(singles["GlobalTime"], kind="stable")
    return {k: v[order] for k, v in singles.items()}


def write_singles(path, singles, *, tree: str = "Singles") -> Path:
    """Write a singles table as a ROOT TTree (``mktree``; not RNTuple), atomically."""
    import awkward as ak
    import uproot

    from refsuite.io.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp, uproot.recreate(tmp) as f:
        t = f.mktree(tree, {k: ("string" if v.dtype.kind in "US" else v.dtype) for k, v in singles.items()})
        t.extend({k: (ak.from_numpy(v.astype(str)) if v.dtype.kind in "US" else v) for k, v in singles.items()})
    return path


def sort_coincidences(singles_path, out, *, window_ns: float = 5.0, policy: str = "TakeAllGoods",
                      tree: str = "Singles") -> Path:
    """GATE 10's offline coincidence sorter on a singles file; output tree ``Coincidences``.

    Wraps ``opengate.actors.coincidences.coincidences_sorter`` (pure Python, no Geant4
    needed) and writes ``out`` atomically. ``window_ns`` is the coincidence window, ns.
    """
    from refsuite._checks import check_positive
    from refsuite.io.atomic import atomic_path

    check_positive("window_ns", window_ns, unit="ns")
    import_opengate()
    import uproot
    from opengate.actors.coincidences import coincidences_sorter

    out = Path(out)
    with atomic_path(out) as tmp, uproot.open(singles_path) as f:
        if tree not in f:
            raise ValueError(f"{singles_path}: no singles tree {tree!r}")
        coincidences_sorter(f[tree], float(window_ns), policy, None, "xy", None, output_file_path=str(tmp))
    return out
