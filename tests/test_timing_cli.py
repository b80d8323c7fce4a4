"""`refsuite timing simulate | calibrate | apply | evaluate` end to end on list-mode files."""

from __future__ import annotations

import json

import numpy as np

from refsuite import timing as T
from refsuite.cli import main


def test_cli_round_trip(tmp_path, capsys):
    train, test = tmp_path / "train.npz", tmp_path / "test.npz"
    assert main(["timing", "simulate", "--out", str(train), "--axial-step-mm", "100", "--n-per-position", "2000",
                 "--seed", "1"]) == 0
    assert main(["timing", "simulate", "--out", str(test), "--z-mm", "-100", "0", "100", "--n-per-position", "800",
                 "--seed", "2"]) == 0
    events, truth = T.load_events(test, with_truth=True)
    assert events["time_ps"].shape == (2400, 2, 16) and "dt_oracle_ps" in truth
    model = tmp_path / "model.ubj"
    assert main(["timing", "calibrate", str(train), "--out", str(model), "--max-depth", "4", "--n-estimators", "40",
                 "--device", "cpu"]) == 0
    out = tmp_path / "corrected.npz"
    assert main(["timing", "apply", str(model), str(test), "--out", str(out), "--device", "cpu"]) == 0
    corrected = T.load_events(out)
    np.testing.assert_allclose(corrected["dt_corrected_ps"],
                               T.apply_correction(T.load_model(model), events, device="cpu"))
    report = tmp_path / "eval.json"
    assert main(["timing", "evaluate", str(model), str(test), "--json", str(report), "--device", "cpu"]) == 0
    doc = json.loads(report.read_text())
    assert doc["kind"] == "explicit" and doc["ctr"]["iso_photopeak"]["fwhm"] > 0
    assert "CTR iso" in capsys.readouterr().out


def test_cli_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["timing", "simulate", "--out", str(tmp_path / "x.npz"), "--z-mm", "400",
                 "--n-per-position", "10"]) == 2
    assert "source_positions_mm" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()
    bad = tmp_path / "bad.npz"
    np.savez(bad, time_ps=np.zeros((3, 2, 16)))
    assert main(["timing", "calibrate", str(bad), "--out", str(tmp_path / "m.json")]) == 2
    assert "missing columns" in capsys.readouterr().err
    # execution flags are checked before the events are read
    assert main(["timing", "calibrate", str(bad), "--out", str(tmp_path / "m.json"), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "--workers 0: must be 1" in err and "missing columns" not in err and len(err.strip().splitlines()) == 1
