"""refsuite.acceptance: tolerances with units, plan validation (errors name the field, nothing is
written), the checks on small built-in MC scans, baseline comparison, CLI and the pytest plugin."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refsuite.acceptance import (AcceptancePlan, BaselineError, Dimension, PlanError, load_plan, parse_quantity,
                                 run_acceptance)
from refsuite.geometry import preset
from refsuite.io import save_listmode
from refsuite.mc import simulate
from refsuite.phantoms import CylindricalShell, PointSources
from refsuite.timing.listmode_skew import apply_channel_skews

SOURCES = [[0, 0, 0], [20, 0, 10], [0, 20, -10], [-20, 0, 25], [0, -20, -25]]


# ------------------------------------------------------------------ quantities
@given(st.floats(0, 1e6, allow_nan=False), st.sampled_from([("um", 1e-3), ("mm", 1.0), ("cm", 10.0)]))
def test_lengths_convert_to_mm(x, unit):
    q = parse_quantity(f"{x!r} {unit[0]}", Dimension.LENGTH)
    assert q.value == pytest.approx(x * unit[1], rel=1e-12, abs=1e-300)


def test_quantity_units_and_errors():
    assert parse_quantity("0.1 deg", Dimension.ANGLE).value == pytest.approx(math.radians(0.1))
    assert parse_quantity("2 %", Dimension.FRACTION).value == pytest.approx(0.02)
    assert parse_quantity(0.5, Dimension.FRACTION).value == 0.5
    assert parse_quantity("1 ns", Dimension.TIME).value == 1000.0
    assert parse_quantity("100 um", Dimension.LENGTH).display("um") == pytest.approx(100.0)
    with pytest.raises(ValueError, match="is a angle, but this tolerance is a length"):
        parse_quantity("0.1 deg", Dimension.LENGTH)
    with pytest.raises(ValueError, match="unknown unit 'furlong'"):
        parse_quantity("3 furlong", Dimension.LENGTH)
    with pytest.raises(ValueError, match="finite and >= 0"):
        parse_quantity("-5 ps", Dimension.TIME)
    with pytest.raises(ValueError, match="expected '<number> <unit>'"):
        parse_quantity("fast", Dimension.TIME)


# ------------------------------------------------------------------ plans
def _write_scans(folder: Path, *, skew_change=0.0, n_timing=300_000, n_shell=4_000_000):
    """Small 4 mm thull_sim scans: shell and timing, with block skews (and one changed)."""
    folder.mkdir(parents=True, exist_ok=True)
    s = preset("thull_sim", binning="4mm")
    s.save(folder / "blueprint.json")
    PointSources(np.asarray(SOURCES, float)).save(folder / "timing_phantom.json")
    skews = np.random.default_rng(0).normal(0, 100, 24)
    skews[3] += skew_change
    ev = apply_channel_skews(simulate(s, PointSources(np.asarray(SOURCES, float)), n_decays=n_timing, seed=4), s, skews)
    save_listmode(folder / "timing.npz", ev)
    save_listmode(folder / "shell.npz", simulate(s, CylindricalShell(), n_decays=n_shell, seed=5))
    return folder


PLAN = """name = "small"
[scanner]
file = "blueprint.json"
[data]
shell = "shell.npz"
timing = "timing.npz"
timing_phantom = "timing_phantom.json"
[checks.efficiency]
min_fraction = 0.5
[checks.timing]
skew_change = "50 ps"
ctr = "275 ps"
"""


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    root = tmp_path_factory.mktemp("acc")
    base = _write_scans(root / "base")
    changed = _write_scans(root / "changed", skew_change=150.0)
    for f in (base, changed):
        (f / "plan.toml").write_text(PLAN)
    return base, changed


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('skew_change = "50 ps"', 'skew_change = "50 mm"'),
     r"checks.timing.skew_change: '50 mm' is a length, but this tolerance is a time"),
    (lambda t: t + "[checks.colour]\nhue = 1\n", r"checks.colour: Extra inputs are not permitted"),
    (lambda t: t.replace('shell = "shell.npz"', 'shell = "nowhere.npz"'), r"data.shell: file not found: .*nowhere.npz"),
    (lambda t: t.replace('timing = "timing.npz"\n', ""), r"checks.timing needs data.timing"),
    (lambda t: t.replace('min_fraction = 0.5', 'min_fraction = "0.5 ps"'), r"checks.efficiency.min_fraction"),
    (lambda t: t.replace('[checks.timing]\nskew_change = "50 ps"\nctr = "275 ps"\n', "")
     .replace("[checks.efficiency]\nmin_fraction = 0.5\n", ""), r"checks: Field required|enables no check"),
])
def test_bad_plans_name_the_field_and_write_nothing(scans, tmp_path, edit, message):
    base, _ = scans
    bad = base / f"bad-{abs(hash(message))}.toml"
    bad.write_text(edit(PLAN))
    with pytest.raises(PlanError, match=message):
        load_plan(bad)
    out = tmp_path / "out"
    with pytest.raises(PlanError):
        run_acceptance(bad, out_dir=out, progress=False)
    assert not out.exists()
    # the CLI: exit status 2, the field in the message, no output folder
    r = subprocess.run([sys.executable, "-m", "refsuite", "acceptance", str(bad), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "invalid acceptance plan" in r.stderr and not out.exists()


def test_plan_model_is_the_documented_one(scans):
    plan = load_plan(scans[0] / "plan.toml")
    assert isinstance(plan, AcceptancePlan)
    assert plan.enabled_checks() == ["efficiency", "timing"]
    assert plan.checks.timing.skew_change.value == 50.0 and plan.checks.timing.ctr.text == "275 ps"


# ------------------------------------------------------------------ checks, baseline, CLI, plugin
def test_baseline_then_changed_channel_fails_timing_only(scans, tmp_path):
    base, changed = scans
    r0 = run_acceptance(base / "plan.toml", out_dir=tmp_path / "base", progress=False)
    assert r0.passed, [r.summary() for r in r0.results]
    results = json.loads((tmp_path / "base" / "results.json").read_text())
    assert results["acceptance"]["passed"] is True and (tmp_path / "base" / "index.html").is_file()
    r1 = run_acceptance(changed / "plan.toml", out_dir=tmp_path / "changed",
                        baseline=tmp_path / "base" / "results.json", progress=False)
    assert r1.failed == ["timing"]
    tim = r1.result("timing")
    assert [o["channel"] for o in tim.offenders] == [3]
    assert tim.offenders[0]["skew_change_ps"] == pytest.approx(150.0, abs=10.0)
    assert "channel 3" in tim.summary()
    # the same data against itself as baseline: no change
    r2 = run_acceptance(base / "plan.toml", out_dir=tmp_path / "again", baseline=tmp_path / "base" / "results.json",
                        progress=False)
    assert r2.passed and r2.result("timing").criteria[-1].measured < 1e-6


def test_bad_baseline(scans, tmp_path):
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(BaselineError, match="not the results.json of `refsuite acceptance`"):
        run_acceptance(scans[0] / "plan.toml", out_dir=tmp_path / "o", baseline=tmp_path / "x.json", progress=False)
    assert not (tmp_path / "o").exists()


def test_efficiency_check_finds_a_dead_voxel_and_refuses_short_scans(scans, tmp_path):
    from refsuite.acceptance import check_efficiency
    from refsuite.acceptance.demo import _drop_voxel
    from refsuite.acceptance.plan import EfficiencyCheck
    from refsuite.io import load_listmode

    base, _ = scans
    s = preset("thull_sim", binning="4mm")
    shell = load_listmode(base / "shell.npz")
    res, eff = check_efficiency(_drop_voxel(shell, 9, 100), s, EfficiencyCheck())
    assert not res.passed and [(o["block"], o["crystal"]) for o in res.offenders] == [(9, 100)]
    assert eff.shape == (24, s.n_crystals) and np.all(eff > 0)
    ok, _ = check_efficiency(shell, s, EfficiencyCheck())
    assert ok.passed
    # a tenth of the scan: a dead voxel would not be detectable, so the check cannot pass
    short = {k: v[: len(v) // 10] for k, v in shell.items()}
    res, _ = check_efficiency(short, s, EfficiencyCheck())
    assert not res.passed and not res.criteria[1].passed


def test_pytest_plugin_reports_checks_by_name(scans, tmp_path):
    base, changed = scans
    run_acceptance(base / "plan.toml", out_dir=tmp_path / "base", progress=False)
    xml = tmp_path / "junit.xml"
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--acceptance",
                        str(changed / "plan.toml"), "--acceptance-baseline", str(tmp_path / "base" / "results.json"),
                        "--acceptance-out", str(tmp_path / "out"), f"--junitxml={xml}", "-rA"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAILED" in r.stdout and "plan.toml::timing" in r.stdout and "PASSED" in r.stdout
    assert "plan.toml::efficiency" in r.stdout and "1 failed, 1 passed" in r.stdout
    assert "channel 3" in r.stdout
    assert 'name="timing"' in xml.read_text()
    # -k selects checks like tests
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--acceptance",
                        str(changed / "plan.toml"), "-k", "efficiency", "--acceptance-out", str(tmp_path / "o2")],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and "1 passed, 1 deselected" in r.stdout, r.stdout
    # a bad plan is a usage error
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--acceptance",
                        str(tmp_path / "missing.toml")], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 4 and "acceptance plan not found" in r.stderr


def test_hot_rod_sample_points_sit_between_rods():
    from refsuite.metrics.hot_rod import hot_rod_sample_points
    from refsuite.phantoms import HotRod

    ph = HotRod()
    centres, radii = ph.rods()
    pts = hot_rod_sample_points(ph)
    assert set(pts) == set(ph.diameters_mm)
    for d, (peaks, valleys) in pts.items():
        gap = np.linalg.norm(valleys[:, None, :] - centres[None, :, :], axis=-1) - radii[None, :]
        assert gap.min() >= 0.5 * d - 1e-9  # a valley point is half a diameter clear of every rod
        assert len(peaks) >= 3


def test_image_quality_check_flags_a_wrong_geometry():
    from refsuite.acceptance import check_image_quality
    from refsuite.acceptance.plan import ImageQualityCheck
    from refsuite.geometry import perturb
    from refsuite.phantoms import HotRod

    s, ph, spec = preset("thull_sim", binning="2mm"), HotRod(), ImageQualityCheck()
    ref = check_image_quality(simulate(s, ph, n_decays=1_500_000, seed=3), s, ph, spec)
    assert ref.passed and ref.figures["PVR 2 mm"] > ref.figures["PVR 0.8 mm"]
    again = simulate(s, ph, n_decays=1_500_000, seed=4)
    assert check_image_quality(again, s, ph, spec, baseline=ref.state).passed
    # a reconstruction geometry only (never simulated): the unconstrained draw this test was sized on
    wrong = perturb(s, sigma_t_mm=1.0, sigma_r_deg=1.0, rng=np.random.default_rng(1), min_clearance_mm=None)
    bad = check_image_quality(again, wrong, ph, spec, baseline=ref.state)
    assert not bad.passed and bad.offenders and "rod_diameter_mm" in bad.summary()


def test_cli_runs_a_plan_and_reports_the_verdict(scans, tmp_path):
    base, changed = scans
    cmd = [sys.executable, "-m", "refsuite", "acceptance", "--no-progress"]
    r = subprocess.run(cmd + [str(base / "plan.toml"), "--out", str(tmp_path / "b")], capture_output=True, text=True)
    assert r.returncode == 0 and "ACCEPTED (2/2 checks passed)" in r.stdout, r.stdout + r.stderr
    r = subprocess.run(cmd + [str(changed / "plan.toml"), "--out", str(tmp_path / "c"), "--baseline",
                              str(tmp_path / "b" / "results.json")], capture_output=True, text=True)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL timing: FAILED" in r.stdout and "channel 3" in r.stdout and "NOT ACCEPTED (1/2" in r.stdout
    assert json.loads((tmp_path / "c" / "results.json").read_text())["acceptance"]["failed"] == ["timing"]


@pytest.mark.slow  # ~40 s: PETSIRD is encoded and decoded event by event in Python
def test_plan_on_petsird_scans_gives_the_verdicts_of_npz(scans, tmp_path):
    """The same scans as PETSIRD files (binary and NDJSON, 1 ps TOF bins): the CLI runs the plan as on
    the npz files; fan sums count the same crystal ids (identical efficiencies), the skews and CTR
    move by less than the TOF quantisation."""
    import shutil

    pytest.importorskip("petsird")
    from refsuite.geometry import Scanner
    from refsuite.io import load_listmode, write_petsird

    folders = {}
    for name, folder in zip(("base", "changed"), scans):
        pet = tmp_path / f"{name}_petsird"
        pet.mkdir()
        for f in ("blueprint.json", "timing_phantom.json"):
            shutil.copy(folder / f, pet / f)
        bp = Scanner.load(folder / "blueprint.json")
        # the channel skews widen t1 - t2 beyond the 5 ns window: 6 ns of 1 ps bins
        write_petsird(pet / "timing.ndjson", bp, load_listmode(folder / "timing.npz"), tof_bin_width_ps=1.0,
                      n_tof_bins=12_001, format="ndjson")
        shell = "shell.petsird" if name == "base" else "../base_petsird/shell.petsird"  # the same shell scan
        if name == "base":
            write_petsird(pet / shell, bp, load_listmode(folder / "shell.npz"), tof_bin_width_ps=1.0, n_tof_bins=12_001)
        else:
            assert np.array_equal(load_listmode(folder / "shell.npz")["CrystalID1"],
                                  load_listmode(scans[0] / "shell.npz")["CrystalID1"])
        (pet / "plan.toml").write_text(PLAN.replace("shell.npz", shell).replace("timing.npz", "timing.ndjson"))
        folders[name] = pet
    cmd = [sys.executable, "-m", "refsuite", "acceptance", "--no-progress"]
    r = subprocess.run(cmd + [str(folders["base"] / "plan.toml"), "--out", str(tmp_path / "pb")], capture_output=True,
                       text=True)
    assert r.returncode == 0 and "ACCEPTED (2/2 checks passed)" in r.stdout, r.stdout + r.stderr
    ref = run_acceptance(scans[0] / "plan.toml", out_dir=tmp_path / "nb", progress=False)
    got = json.loads((tmp_path / "pb" / "results.json").read_text())["acceptance"]["checks"]
    want = json.loads((tmp_path / "nb" / "results.json").read_text())["acceptance"]["checks"]
    assert [c["measured"] for c in got["efficiency"]["criteria"]] == [c["measured"] for c in want["efficiency"]["criteria"]]
    assert got["efficiency"]["state"] == want["efficiency"]["state"]
    np.testing.assert_allclose(got["timing"]["state"]["offsets_ps"], want["timing"]["state"]["offsets_ps"], atol=0.5)
    for a, b in zip(got["timing"]["criteria"], want["timing"]["criteria"]):
        assert a["name"] == b["name"] and a["passed"] == b["passed"]
        assert a["measured"] == pytest.approx(b["measured"], abs=1.0), a["name"]
    assert ref.passed
    # the changed channel fails against the PETSIRD baseline, as with npz scans
    r = subprocess.run(cmd + [str(folders["changed"] / "plan.toml"), "--out", str(tmp_path / "pc"), "--baseline",
                              str(tmp_path / "pb" / "results.json")], capture_output=True, text=True)
    assert r.returncode == 1 and "channel 3" in r.stdout, r.stdout + r.stderr
    assert json.loads((tmp_path / "pc" / "results.json").read_text())["acceptance"]["failed"] == ["timing"]
