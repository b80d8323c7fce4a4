"""The GATE 10 driver: every shipped scenario built into an ``opengate.Simulation`` (never run
here: no Geant4 data) whose volumes, digitiser and sources match the scenario exactly; the
offline coincidence sorter on singles from the built-in MC."""

from __future__ import annotations

import json

import numpy as np
import pytest

from refsuite.capabilities import capability
from refsuite.io import read_coincidences
from simulations.scenario import load_scenario, shipped_scenarios

pytestmark = pytest.mark.requires("opengate")

SHIPPED = shipped_scenarios()
POSE_TOL_MM = 1e-9


def _nd(x):
    """An array from opengate's JSON (``{"__ndarray__": ...}`` objects, possibly in lists)."""
    if isinstance(x, dict) and "__ndarray__" in x:
        return np.asarray(x["__ndarray__"], float)
    if isinstance(x, list):
        return np.asarray([_nd(v) for v in x], float)
    return np.asarray(x, float)


def _runs():
    out = []
    for name, path in SHIPPED.items():
        runs = load_scenario(path).runs()
        # the sweep's runs differ only in the line's position: first and last suffice
        out += [(f"{name}{'_' + r.label if r.label else ''}", r) for r in (runs if len(runs) == 1 else runs[::15])]
    return out


@pytest.fixture(scope="module")
def gate():
    from simulations.gate import import_opengate

    return import_opengate()


@pytest.fixture(scope="module")
def built(gate, tmp_path_factory):
    """(run, simulation, JSON dictionary of the simulation) per shipped scenario run."""
    from simulations.gate import build_simulation

    out = {}
    for label, run in _runs():
        sim = build_simulation(run, output_dir=tmp_path_factory.mktemp(label))
        out[label] = (run, sim, json.loads(sim.to_json_string()))
    return out


LABELS = [label for label, _ in _runs()]


@pytest.mark.parametrize("label", LABELS)
def test_block_poses_equal_the_scanner(built, label):
    """Block corners through the poses GATE will place (read from the simulation's JSON)."""
    run, sim, d = built[label]
    scan = run.scanner
    ui = d["volume_manager"]["volumes"][f"{scan.name}_block"]["user_info"]
    t, r = _nd(ui["translation"]), _nd(ui["rotation"])
    assert t.shape == (scan.n_blocks, 3) and r.shape == (scan.n_blocks, 3, 3)
    np.testing.assert_allclose(_nd(ui["size"]), scan.block_size, rtol=0, atol=POSE_TOL_MM)
    s = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1], indexing="ij")).reshape(3, 8).T * scan.block_size / 2
    corners = np.einsum("bij,kj->bki", r, s) + t[:, None, :]  # Geant4: world = R local + t
    assert np.abs(corners - scan.block_corners()).max() <= POSE_TOL_MM


@pytest.mark.parametrize("label", LABELS)
def test_crystal_centres_equal_the_scanner(built, label):
    from simulations.gate import gate_crystal_centres

    run, sim, _ = built[label]
    assert np.abs(gate_crystal_centres(sim, run.scanner) - run.scanner.crystal_centres()).max() <= POSE_TOL_MM


def test_rotation_convention_agrees_with_opengates_own_composition(built):
    """opengate.geometry.utility.get_transform_world_to_local composes the placements; a
    local point of every block and the crystals of block 0 land where the Scanner puts them."""
    from opengate.geometry.utility import get_transform_world_to_local

    run, sim, _ = built["thull_points"]
    scan = run.scanner
    t, r = get_transform_world_to_local(sim.volume_manager.get_volume("thull_sim_block"))
    local = np.array([[7.0, -3.0, 11.0]])
    world = np.einsum("bij,j->bi", np.asarray(r), local[0]) + np.asarray(t)
    assert np.abs(world - scan.to_global(np.repeat(local, scan.n_blocks, 0), np.arange(scan.n_blocks))).max() < POSE_TOL_MM
    tc, _ = get_transform_world_to_local(sim.volume_manager.get_volume("thull_sim_crystal0"))
    assert np.abs(np.asarray(tc) - scan.crystal_centres()[0]).max() < POSE_TOL_MM


def test_a_transposed_rotation_would_be_caught(built):
    """The pose test can fail: A instead of A.T moves block corners by centimetres."""
    run, _, d = built["thull_points"]
    scan = run.scanner
    ui = d["volume_manager"]["volumes"]["thull_sim_block"]["user_info"]
    r = np.swapaxes(_nd(ui["rotation"]), 1, 2)
    s = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1], indexing="ij")).reshape(3, 8).T * scan.block_size / 2
    corners = np.einsum("bij,kj->bki", r, s) + _nd(ui["translation"])[:, None, :]
    assert np.abs(corners - scan.block_corners()).max() > 10.0


def test_materials_and_crystal_volumes(built, gate):
    from simulations.gate import lyso_mass_fractions

    assert sum(lyso_mass_fractions().values()) == pytest.approx(1.0, abs=1e-12)
    run, sim, d = built["thull_points"]
    vols = d["volume_manager"]["volumes"]
    assert vols["thull_sim_block"]["user_info"]["material"] == "LYSO"  # 2 mm voxels fill the block
    c = vols["thull_sim_crystal0"]["user_info"]
    assert c["mother"] == "thull_sim_block" and np.allclose(_nd(c["size"]), 2.0)
    assert len(_nd(c["translation"])) == 24 * 5 * 24
    run, sim, d = built["lin_line_sweep_r0mm"]
    assert d["volume_manager"]["volumes"]["lin_clinical_block"]["user_info"]["material"] == "G4_BARIUM_SULFATE"


@pytest.mark.parametrize("label", LABELS)
def test_digitiser_chain_is_thull_et_al(built, gate, label):
    u = gate.g4_units
    run, sim, d = built[label]
    a = {k: v["user_info"] for k, v in d["actor_manager"]["actors"].items()}
    crystals = [k for k in d["volume_manager"]["volumes"] if "_crystal" in k]
    assert sorted(a["hits"]["attached_to"]) == sorted(crystals)
    assert a["readout"]["input_digi_collection"] == "hits"
    assert a["readout"]["policy"] == "EnergyWeightedCentroidPosition"
    assert a["readout"]["group_volume"] == f"{run.scanner.name}_block"
    e = a["energy_blur"]
    assert (e["input_digi_collection"], e["blur_attribute"], e["blur_method"]) == (
        "readout", "TotalEnergyDeposit", "InverseSquare")
    assert e["blur_resolution"] == 0.12 and e["blur_reference_value"] == pytest.approx(511 * u.keV, rel=1e-12)
    t = a["time_blur"]
    assert (t["input_digi_collection"], t["blur_attribute"], t["blur_method"]) == ("energy_blur", "GlobalTime", "Gaussian")
    assert t["blur_fwhm"] * np.sqrt(2) == pytest.approx(250 * u.ps, rel=1e-12)  # CTR = FWHM(t1 - t2)
    (ch,) = a["energy_window"]["channels"]
    assert (ch["min"], ch["max"]) == pytest.approx((450 * u.keV, 650 * u.keV), rel=1e-12)
    assert a["energy_window"]["input_digi_collection"] == "time_blur"
    cc = a["coincidences"]
    assert cc["input_digi_collection"] == ch["name"] and cc["window"] == pytest.approx(5 * u.ns, rel=1e-12)
    assert {sim.get_actor(k).get_output_path().name for k in ("energy_window", "coincidences")} == {"gate_output.root"}


@pytest.mark.parametrize("label", LABELS)
def test_sources_carry_the_phantoms_activity_and_geometry(built, gate, label):
    from refsuite import phantoms as ph

    u = gate.g4_units
    run, sim, d = built[label]
    src = [v["user_info"] for v in d["source_manager"]["sources"].values()]
    assert all(s["particle"] == "back_to_back" for s in src)
    assert all(s["energy"]["mono"] == pytest.approx(511 * u.keV) for s in src)
    total = sum(s["activity"] for s in src) / u.Bq
    assert total == pytest.approx(run.phantom.total_activity, rel=1e-12)
    # the acquisition: activity x time = the scenario's decays
    (t0, t1), = sim.run_timing_intervals
    assert (t1 - t0) / u.s * total == pytest.approx(run.n_decays, rel=1e-9)
    p = run.phantom
    pos = np.array([_nd(s["position"]["translation"]) for s in src], float)
    if isinstance(p, ph.PointSources):
        np.testing.assert_allclose(pos, p.centres_mm, rtol=0, atol=POSE_TOL_MM)
        assert {s["position"]["type"] for s in src} == {"sphere"}
        assert {s["position"]["radius"] for s in src} == {0.125}
        cubes = d["volume_manager"]["volumes"]["pmma_cubes"]["user_info"]
        assert cubes["material"] == "G4_PLEXIGLASS"
        np.testing.assert_allclose(_nd(cubes["translation"]), p.centres_mm, rtol=0, atol=POSE_TOL_MM)
    elif isinstance(p, ph.LineSource):
        (s,) = src
        np.testing.assert_allclose(pos[0], [*p.position_mm, p.centre_z_mm], rtol=0, atol=POSE_TOL_MM)
        assert (s["position"]["type"], s["position"]["radius"], s["position"]["dz"]) == ("cylinder", 0.01, 350.0)
    elif isinstance(p, ph.Tube):
        # the polyline pieces (checked against the curve below), activity in proportion to length
        from simulations.gate import tube_segments

        mids, _, lengths, _ = tube_segments(p)
        np.testing.assert_allclose(pos, mids, rtol=0, atol=POSE_TOL_MM)
        act = np.array([s["activity"] for s in src]) / u.Bq
        np.testing.assert_allclose(act, p.activity_bq * lengths / lengths.sum(), rtol=1e-12)
        assert {s["position"]["radius"] for s in src} == {p.diameter_mm / 2}
    elif isinstance(p, ph.HotRod):
        centres, radii = p.rods()
        np.testing.assert_allclose(pos[:, :2], centres, rtol=0, atol=POSE_TOL_MM)
        np.testing.assert_allclose([s["position"]["radius"] for s in src], radii, rtol=0, atol=POSE_TOL_MM)
    elif isinstance(p, ph.CylindricalShell):
        (s,) = src
        assert s["position"]["confine"] == "phantom"
        v = d["volume_manager"]["volumes"]["phantom"]["user_info"]
        assert (v["rmin"], v["rmax"], v["dz"]) == (p.inner_radius_mm, p.outer_radius_mm, p.length_mm / 2)


def test_tube_polyline_is_a_faithful_approximation():
    from simulations.gate import polyline_distance, tube_segments

    tube = load_scenario(SHIPPED["thull_tube"]).runs()[0].phantom
    mids, dirs, lengths, err = tube_segments(tube)
    assert err <= 0.02 * tube.diameter_mm  # 5 um of a 250 um tube
    # measured independently of the splitting: every centre-line point is that close to the polyline
    dist = polyline_distance(tube.centre_line(4001), mids, dirs, lengths)
    assert dist.max() <= 0.02 * tube.diameter_mm + 1e-3
    assert lengths.sum() == pytest.approx(tube.length_mm, rel=1e-4)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0, atol=1e-12)


def test_world_encloses_the_700mm_line_source(built):
    _, sim, _ = built["lin_line_sweep_r375mm"]
    assert min(sim.world.size) / 2 >= 350.0


@pytest.mark.skipif(capability("geant4_data").available, reason="Geant4 data present: GATE would really run")
def test_run_gate_refuses_without_geant4_data(tmp_path):
    from simulations.gate import run_gate

    run = load_scenario(SHIPPED["thull_points"]).runs()[0]
    with pytest.raises(RuntimeError, match="geant4_data is required.*Geant4 data sets are missing"):
        run_gate(run, tmp_path / "g.root")
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(capability("geant4_data").available, reason="Geant4 data present: GATE would really run")
def test_cli_gate_engine_stops_with_install_instructions(tmp_path, capsys):
    from refsuite.cli import main

    rc = main(["simulate", str(SHIPPED["thull_points"]), "--engine", "gate", "--out", str(tmp_path / "g.root")])
    err = capsys.readouterr().err
    assert rc == 2 and "Geant4 data sets are missing" in err and "import opengate" in err


# ---------------------------------------------------------------- offline sorter
@pytest.fixture(scope="module")
def mc_events():
    from simulations.builtin import builtin_options
    from refsuite.mc import simulate

    run = load_scenario(SHIPPED["thull_points"]).runs()[0]
    kw = builtin_options(run, n_decays=3 * 4096)
    kw["activity_bq"] = 1e3  # decays ~1 ms apart: no multiples in any window used below
    return run, simulate(run.scanner, run.phantom, **kw)


@pytest.mark.parametrize("window_ns", [5.0, 0.15])
def test_offline_sorter_on_builtin_singles(tmp_path, gate, mc_events, window_ns):
    """GATE's Python sorter pairs our MC's singles back into exactly the coincidences whose
    |t1 - t2| fits the window; the result reads back through read_coincidences."""
    from simulations.gate import singles_from_events, sort_coincidences, write_singles

    run, ev = mc_events
    write_singles(tmp_path / "singles.root", singles_from_events(ev))
    out = sort_coincidences(tmp_path / "singles.root", tmp_path / "coinc.root", window_ns=window_ns)
    back = read_coincidences(out, scanner=run.scanner)
    keep = np.abs(ev["GlobalTime1"] - ev["GlobalTime2"]) <= window_ns
    assert 0 < keep.sum() and (window_ns == 5.0) == keep.all()
    assert back.n_events == keep.sum()
    np.testing.assert_array_equal(np.sort(back["EventID1"]), np.sort(ev["EventID1"][keep]))
    idx = np.searchsorted(ev["EventID1"], back["EventID1"])
    for k in ("GlobalTime1", "GlobalTime2", "TotalEnergyDeposit2", "PostPosition_Z1"):
        np.testing.assert_array_equal(back[k], ev[k][idx], err_msg=k)


def test_sort_coincidences_validates_and_leaves_nothing_on_error(tmp_path, gate, mc_events):
    from simulations.gate import singles_from_events, sort_coincidences, write_singles

    write_singles(tmp_path / "s.root", singles_from_events(mc_events[1]))
    with pytest.raises(ValueError, match="window_ns"):
        sort_coincidences(tmp_path / "s.root", tmp_path / "c.root", window_ns=0.0)
    with pytest.raises(ValueError, match="no singles tree 'Hits'"):
        sort_coincidences(tmp_path / "s.root", tmp_path / "c.root", tree="Hits")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.root"]


# ---------------------------------------------------------------- with Geant4 data only
@pytest.mark.requires("geant4_data")
@pytest.mark.slow
def test_gate_and_builtin_agree_on_counts_per_block(tmp_path):
    """Where Geant4 data exists: a short thull_points run with both engines; both files read back
    into the same columns, and the shares of true singles per block agree (simulations.compare,
    the study's 3 % allowance; GATE adds scatter, so only shares are compared)."""
    from simulations.builtin import run_builtin
    from simulations.compare import compare_block_counts, run_engine, short_run, true_coincidences
    from simulations.gate import run_gate
    from validation.gate import BLOCK_REL_SYS, P_MIN

    run = short_run(load_scenario(SHIPPED["thull_points"]).runs()[0], n_decays=50_000, seed=1)
    g = run_engine(run_gate, run, tmp_path / "g.root")
    b = run_engine(run_builtin, run, tmp_path / "b.root")
    assert set(g) >= set(read_coincidences(tmp_path / "b.root")) - {"TrueGlobalTime1", "TrueGlobalTime2"}
    bc = compare_block_counts(true_coincidences(g), b, n_blocks=run.scanner.n_blocks, rel_sys=BLOCK_REL_SYS)
    assert bc.p_value >= P_MIN, bc


@pytest.mark.parametrize("particle, ion", [("F18", (9, 18)), ("Na22", (11, 22))])
def test_ion_sources_use_radioactive_decay(gate, tmp_path, particle, ion):
    import tomllib

    from simulations.gate import build_simulation
    from simulations.scenario import scenario_from_dict

    d = tomllib.loads(SHIPPED["thull_points"].read_text())
    d["source"] = {"particle": particle}
    run = scenario_from_dict(d).runs()[0]
    sim = build_simulation(run, output_dir=tmp_path)
    src = json.loads(sim.to_json_string())["source_manager"]["sources"]
    assert {v["user_info"]["particle"] for v in src.values()} == {f"ion {ion[0]} {ion[1]}"}
    assert all(v["user_info"]["energy"]["mono"] == 0.0 for v in src.values())  # ions at rest
    assert sim.physics_manager.enable_decay is True


def test_back_to_back_sources_run_without_decay_physics(built):
    _, sim, _ = built["thull_points"]
    assert sim.physics_manager.enable_decay is False
