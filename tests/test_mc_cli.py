"""``refsuite simulate``: ROOT file plus truth files; same seed, same file content."""

from __future__ import annotations

import numpy as np
import pytest

from refsuite.cli import main
from refsuite.geometry import Scanner, preset
from refsuite.io import read_coincidences
from refsuite.phantoms import load_phantom


def test_simulate_command_writes_events_and_truth(tmp_path, capsys):
    args = ["simulate", "--n-decays", "3e4", "--sigma-t-mm", "1", "--sigma-r-deg", "1", "--seed", "5",
            "--binning", "planar_2mm", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a.root")]) == 0
    assert "coincidences from 30000 decays" in capsys.readouterr().out
    ev = read_coincidences(tmp_path / "a.root")
    scanner = Scanner.load(tmp_path / "a.scanner.json")
    phantom = load_phantom(tmp_path / "a.phantom.json")
    assert ev.attrs["counts"]["coincidences"] == len(ev["EventID1"]) > 0
    # the recorded truth is the blueprint moved by the stored misalignment
    m = scanner.misalignment
    again = preset("thull_sim", binning="planar_2mm").transform(m.rotations_rad, m.translations_mm)
    np.testing.assert_allclose(again.positions, scanner.positions, atol=1e-12)
    # the truth was drawn with clear blocks, so events sit in exactly one crystal of the truth
    # scanner (reassigning them reproduces the ids) and come from the phantom's sources
    from refsuite.geometry import min_block_clearance

    assert min_block_clearance(scanner) >= 0 and m.min_clearance_mm == 0.0
    back = read_coincidences(tmp_path / "a.root", scanner=scanner)
    for k in ("BlockID1", "CrystalID1", "BlockID2", "CrystalID2"):
        np.testing.assert_array_equal(back[k], ev[k])
    src = np.column_stack([ev[f"TrackVertexPosition_{a}1"] for a in "XYZ"])
    assert np.all(phantom.contains(src) > 0)
    assert main([*args, "--out", str(tmp_path / "b.root")]) == 0
    ev2 = read_coincidences(tmp_path / "b.root")
    for k in ev:
        np.testing.assert_array_equal(ev[k], ev2[k])


def test_simulate_command_refuses_overlapping_blocks(tmp_path, capsys):
    """One line, exit 2, naming the pair and the depth, before any file is written; the flag
    --allow-overlap simulates it (and draws misalignments without the clearance rule)."""
    t = np.zeros((24, 3))
    t[9, 2] = -2.5  # block 9 half a millimetre into block 1 across the 2 mm ring gap
    preset("thull_sim", binning="planar_2mm").transform(np.zeros_like(t), t).save(tmp_path / "s.json")
    args = ["simulate", "--scanner", str(tmp_path / "s.json"), "--n-decays", "2e3", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "x.root")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "blocks 1 and 9 interpenetrate by 0.5 mm" in err and "--allow-overlap" in err
    assert not (tmp_path / "x.root").exists()
    assert main([*args, "--allow-overlap", "--out", str(tmp_path / "y.root")]) == 0
    assert read_coincidences(tmp_path / "y.root").attrs["allow_overlap"] is True
    free = ["simulate", "--n-decays", "2e3", "--sigma-t-mm", "2", "--sigma-r-deg", "2", "--binning", "planar_2mm",
            "--no-progress", "--allow-overlap", "--out", str(tmp_path / "z.root")]
    assert main(free) == 0
    assert Scanner.load(tmp_path / "z.scanner.json").misalignment.min_clearance_mm is None


def test_simulate_command_reports_bad_input(tmp_path, capsys):
    assert main(["simulate", "--n-decays", "10", "--phantom", "nope.json", "--out", str(tmp_path / "x.root")]) == 2
    assert "nope.json" in capsys.readouterr().err
    assert not (tmp_path / "x.root").exists()


@pytest.mark.parametrize("flags, names", [
    (["--acollinearity-deg", "200"], "acollinearity_fwhm_deg"),
    (["--sigma-t-mm", "1e9"], "sigma_t_mm"),
    (["--n-sources", "1000000000"], "n_sources"),
    (["--energy-resolution", "5"], "energy_resolution"),
    (["--n-decays", "1e13", "--chunk-size", "1000000000000"], "--chunk-size"),
])
def test_simulate_refuses_nonsense_before_any_work(tmp_path, capsys, flags, names):
    """Values the scenario schema bounds (a unit mistake, not physics) and a vectorised pass that
    would not fit in memory: one line naming the field or flag, exit 2, nothing written."""
    argv = ["simulate", "--binning", "4mm", "--n-decays", "2e3", *flags, "--no-progress", "--out", str(tmp_path / "x.root")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert names in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []

