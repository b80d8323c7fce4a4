"""``refsuite simulate``: ROOT file plus truth files; same seed, same file content."""

from __future__ import annotations

import numpy as np

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
    # events sit in the truth scanner's crystals and come from the phantom's sources
    # (except where misaligned blocks overlap: a point there lies in two crystals)
    from refsuite.geometry import overlapping_blocks

    back = read_coincidences(tmp_path / "a.root", scanner=scanner)
    clear = ~np.isin(ev["BlockID1"], overlapping_blocks(scanner).ravel())
    assert clear.sum() > 0.5 * len(clear)
    np.testing.assert_array_equal(back["CrystalID1"][clear], ev["CrystalID1"][clear])
    src = np.column_stack([ev[f"TrackVertexPosition_{a}1"] for a in "XYZ"])
    assert np.all(phantom.contains(src) > 0)
    assert main([*args, "--out", str(tmp_path / "b.root")]) == 0
    ev2 = read_coincidences(tmp_path / "b.root")
    for k in ev:
        np.testing.assert_array_equal(ev[k], ev2[k])


def test_simulate_command_reports_bad_input(tmp_path, capsys):
    assert main(["simulate", "--n-decays", "10", "--phantom", "nope.json", "--out", str(tmp_path / "x.root")]) == 2
    assert "nope.json" in capsys.readouterr().err
    assert not (tmp_path / "x.root").exists()
