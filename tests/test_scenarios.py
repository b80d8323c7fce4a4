"""Scenario files: validated before any work, expanded into runs, run by the built-in MC and
through ``refsuite simulate SCENARIO.toml`` (no opengate needed here)."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refsuite.cli import main
from refsuite.io import read_coincidences
from simulations.builtin import builtin_options, run_builtin, truth_paths
from simulations.scenario import (
    DigitizerSpec, Particle, ReadoutPolicy, ScenarioError, load_scenario, scenario_from_dict, shipped_scenarios,
)

SHIPPED = shipped_scenarios()


def _dict(name):
    return tomllib.loads(SHIPPED[name].read_text())


def test_shipped_scenarios_are_the_issues_five():
    assert set(SHIPPED) == {"thull_points", "thull_tube", "lin_line_sweep", "thull_shell", "thull_hotrod"}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_scenario_validates_with_the_papers_digitiser(name):
    sc = load_scenario(SHIPPED[name])
    d = sc.digitizer
    # Thull et al., sec. 2.5
    assert (d.readout, d.energy_resolution, d.ctr_ps, d.energy_window_kev, d.coincidence_window_ns) == (
        ReadoutPolicy.CENTROID, 0.12, 250.0, (450.0, 650.0), 5.0)
    assert sc.source.particle is Particle.BACK_TO_BACK
    runs = sc.runs()
    assert all(r.n_decays >= 10**6 for r in runs)


def test_thull_scenarios_share_scanner_and_source_positions():
    pts, tube = load_scenario(SHIPPED["thull_points"]).runs()[0], load_scenario(SHIPPED["thull_tube"]).runs()[0]
    assert pts.scanner.equals(tube.scanner)
    assert pts.scanner.misalignment is not None and pts.scanner.misalignment.sigma_t_mm == 2.0
    assert pts.phantom.centres_mm.shape == (10, 3)
    # the same positions, threaded nearest-neighbour so that the spline stays in the FOV
    np.testing.assert_array_equal(np.unique(tube.phantom.control_points_mm, axis=0), np.unique(pts.phantom.centres_mm, axis=0))
    line = tube.phantom.centre_line(4000)
    assert np.hypot(line[:, 0], line[:, 1]).max() < 70.0  # blocks start at r = 75 mm
    # the misalignment is really applied: blocks moved by ~sigma_t
    from refsuite.geometry import preset

    shift = np.linalg.norm(pts.scanner.positions - preset("thull_sim").positions, axis=1)
    assert 0.5 < shift.mean() < 6.0


def test_lin_sweep_expands_to_sixteen_offsets():
    runs = load_scenario(SHIPPED["lin_line_sweep"]).runs()
    offsets = [r.parameters["radial_offset_mm"] for r in runs]
    assert offsets == [25.0 * k for k in range(16)]  # Lin et al., Fig. 7: 0 ... 375 mm
    for r, off in zip(runs, offsets):
        assert np.hypot(*r.phantom.position_mm) == pytest.approx(off, abs=1e-12)
        assert (r.phantom.length_mm, r.phantom.radius_mm, r.phantom.activity_bq) == (700.0, 0.01, 7.4e6)
    assert runs[0].scanner.name == "lin_clinical" and runs[0].scanner.misalignment is None
    names = {r.output_path("out/lin.root").name for r in runs}
    assert len(names) == 16 and "lin_r375mm.root" in names


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.update(bogus=1), "bogus"),
    (lambda d: d["scanner"].update(file="x.json"), "exactly one of 'preset' or 'file'"),
    (lambda d: d["digitizer"].update(energy_window_kev=[650.0, 450.0]), "low < high"),
    (lambda d: d["digitizer"].update(energy_resolution=-0.1), "energy_resolution"),
    (lambda d: d["phantom"].update(kind="sphere"), "kind"),
    (lambda d: d["acquisition"].update(n_decays=10), "exactly one of 'duration_s' or 'n_decays'"),
    (lambda d: d["misalignment"].update(sigma_t_mm=-1.0), "sigma_t_mm"),
    (lambda d: d["source"].update(particle="proton"), "particle"),
])
def test_invalid_scenarios_are_rejected_naming_the_field(edit, match):
    d = _dict("thull_points")
    edit(d)
    with pytest.raises(ScenarioError, match=match) as err:
        scenario_from_dict(d, source="edited.toml")
    assert "edited.toml" in str(err.value)


def test_tube_in_drawn_order_overshoots_into_the_blocks_and_is_refused():
    d = _dict("thull_tube")
    d["phantom"]["order"] = "as_given"
    with pytest.raises(ValueError, match="inside detector block"):
        scenario_from_dict(d).runs()


def test_overlapping_blocks_are_redrawn_or_refused_unless_allowed(tmp_path):
    from refsuite.geometry import min_block_clearance, overlapping_blocks, preset

    d = _dict("thull_points")
    d["scanner"]["options"]["axial_gap_mm"] = 2.0  # this seed's sigma = 2 mm / 2 deg draw pushes rings together
    run = scenario_from_dict(d).runs()[0]  # perturb's clearance rule redraws the offending blocks
    assert min_block_clearance(run.scanner) >= 0 and builtin_options(run)["allow_overlap"] is False
    d["misalignment"]["allow_overlaps"] = True  # the unconstrained draw, accepted as it is
    run = scenario_from_dict(d).runs()[0]
    assert len(overlapping_blocks(run.scanner)) > 0 and builtin_options(run)["allow_overlap"] is True
    # explicit poses that overlap are refused with the pair and depth, unless allowed
    t = np.zeros((24, 3))
    t[9, 2] = -2.5
    preset("thull_sim").transform(np.zeros_like(t), t).save(tmp_path / "bad.json")
    d = _dict("thull_points")
    d["scanner"] = {"file": str(tmp_path / "bad.json")}
    del d["misalignment"]
    with pytest.raises(ValueError, match=r"blocks 1 and 9 interpenetrate by 0\.5 mm.*allow_overlaps = true"):
        scenario_from_dict(d).runs()


def test_line_source_inside_the_blocks_is_refused():
    d = _dict("lin_line_sweep")
    d["phantom"]["radial_offsets_mm"] = [0.0, 410.0]  # the front faces are at 403.8 mm
    with pytest.raises(ValueError, match="LineSource emits inside detector block"):
        scenario_from_dict(d).runs()


def test_unreadable_scenario_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed")
    with pytest.raises(ScenarioError, match="bad.toml"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="missing.toml"):
        load_scenario(tmp_path / "missing.toml")


def test_scanner_file_with_explicit_poses_is_relative_to_the_scenario(tmp_path):
    base = load_scenario(SHIPPED["thull_points"]).runs()[0].scanner
    base.save(tmp_path / "poses.json")
    d = _dict("thull_points")
    d["scanner"] = {"file": "poses.json"}
    del d["misalignment"]
    (tmp_path / "s.toml").write_text(_to_toml(d))
    sc = load_scenario(tmp_path / "s.toml")
    assert sc.runs()[0].scanner.equals(base)


def _to_toml(d):
    # enough TOML for these tests' dictionaries (strings, numbers, lists, one-level tables)
    def val(v):
        if isinstance(v, str):
            return '"' + v.replace('"', '\\"').replace("\n", " ") + '"'
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + "}"
        return repr(v)

    top = [f"{k} = {val(v)}" for k, v in d.items() if not isinstance(v, dict)]
    tables = [f"[{k}]\n" + "\n".join(f"{kk} = {val(vv)}" for kk, vv in v.items()) for k, v in d.items()
              if isinstance(v, dict)]
    return "\n".join(top) + "\n\n" + "\n\n".join(tables) + "\n"


@settings(max_examples=30, deadline=None)
@given(ctr=st.floats(1.0, 5000.0), res=st.floats(0.01, 0.5))
def test_per_single_time_sigma_reproduces_the_ctr(ctr, res):
    d = DigitizerSpec(ctr_ps=ctr, energy_resolution=res)
    # t1 - t2 of two independent Gaussians: sigma sqrt(2), FWHM = 2.3548 sigma sqrt(2)
    assert d.single_time_sigma_ps * np.sqrt(2) * 2 * np.sqrt(2 * np.log(2)) == pytest.approx(ctr, rel=1e-12)


def test_builtin_options_carry_the_scenario_digitiser():
    run = load_scenario(SHIPPED["thull_points"]).runs()[0]
    kw = builtin_options(run)
    assert kw["n_decays"] == 10**7 and kw["seed"] == 12345
    assert (kw["ctr_ps"], kw["energy_resolution"], kw["energy_window_kev"], kw["coincidence_window_ps"]) == (
        250.0, 0.12, (450.0, 650.0), 5000.0)
    assert kw["activity_bq"] == pytest.approx(1e6)
    with pytest.raises(ValueError, match="n_decays"):
        builtin_options(run, n_decays=0)


@pytest.fixture(scope="module")
def points_run():
    return load_scenario(SHIPPED["thull_points"]).runs()[0]


def test_run_builtin_writes_events_and_truth(tmp_path, points_run):
    out = tmp_path / "pts.root"
    counts = run_builtin(points_run, out, n_decays=20000)
    ev = read_coincidences(out)
    assert ev.n_events == counts["coincidences"] > 1000
    assert ev.attrs["engine"] == "builtin" and ev.attrs["scenario"]["name"] == "thull_points"
    sfile, pfile = truth_paths(out)
    from refsuite.geometry import Scanner
    from refsuite.phantoms import load_phantom

    assert Scanner.load(sfile).equals(points_run.scanner) and load_phantom(pfile).equals(points_run.phantom)
    # blocks recomputed from the positions agree with the MC's own, except where the
    # misaligned boxes overlap (assign_crystals then picks the lower index): there the
    # point lies inside both boxes
    back = read_coincidences(out, scanner=points_run.scanner)
    differ = np.flatnonzero(back["BlockID1"] != ev["BlockID1"])
    assert len(differ) < 0.01 * ev.n_events
    pts = np.column_stack([ev[f"PostPosition_{a}1"][differ] for a in "XYZ"])
    for blocks in (back["BlockID1"][differ], ev["BlockID1"][differ]):
        loc = points_run.scanner.to_local(pts, blocks)
        assert np.all(np.abs(loc) <= points_run.scanner.block_size / 2 + 1e-9)


def test_cli_runs_a_scenario_with_the_builtin_engine(tmp_path, capsys):
    out = tmp_path / "cli.root"
    rc = main(["simulate", str(SHIPPED["thull_points"]), "--engine", "builtin", "--n-decays", "8192",
               "--out", str(out), "--no-progress"])
    assert rc == 0 and out.is_file()
    direct = tmp_path / "direct.root"
    run_builtin(load_scenario(SHIPPED["thull_points"]).runs()[0], direct, n_decays=8192)
    a, b = read_coincidences(out), read_coincidences(direct)
    for k in ("GlobalTime1", "PostPosition_X2", "TotalEnergyDeposit1"):
        np.testing.assert_array_equal(a[k], b[k])


def test_cli_sweep_writes_one_file_per_offset(tmp_path):
    d = _dict("lin_line_sweep")
    d["phantom"]["radial_offsets_mm"] = [0.0, 200.0]
    d["acquisition"] = {"n_decays": 4096, "seed": 3}
    (tmp_path / "sweep.toml").write_text(_to_toml(d))
    rc = main(["simulate", str(tmp_path / "sweep.toml"), "--out", str(tmp_path / "lin.root"), "--no-progress"])
    assert rc == 0
    r0, r200 = (read_coincidences(tmp_path / f"lin_r{r}mm.root") for r in (0, 200))
    assert r0.attrs["parameters"] == {"radial_offset_mm": 0.0}
    assert np.hypot(r200["TrackVertexPosition_X1"], r200["TrackVertexPosition_Y1"]) == pytest.approx(200.0, abs=0.02)


@pytest.mark.parametrize("argv, message", [
    (["--phantom", "tube"], "cannot be combined with a scenario"),
    (["--n-decays", "1.5"], "expected a whole number >= 1"),
    (["--n-decays", "inf"], "expected a whole number >= 1"),
])
def test_cli_rejects_bad_scenario_invocations(tmp_path, capsys, argv, message):
    rc = main(["simulate", str(SHIPPED["thull_points"]), *argv, "--out", str(tmp_path / "x.root")])
    assert rc == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "x.root").exists()


def test_cli_gate_engine_without_a_scenario_says_so(tmp_path, capsys):
    assert main(["simulate", "--engine", "gate", "--out", str(tmp_path / "x.root")]) == 2
    assert "needs a scenario file" in capsys.readouterr().err


def test_cli_options_without_scenario_still_need_n_decays(tmp_path, capsys):
    assert main(["simulate", "--out", str(tmp_path / "x.root")]) == 2
    assert "--n-decays is required" in capsys.readouterr().err
