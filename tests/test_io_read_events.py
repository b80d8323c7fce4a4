"""read_events: GATE 9 and GATE 10 (both spellings) TTrees, RNTuples and npz give the same events.

The fixtures are written here with uproot in each layout (GATE 9 as ``GateToRoot`` writes it:
tree ``Coincidences``, ``eventID1``, ``time1`` in s, ``energy1`` in MeV, float32 ``globalPosX1``
and ``sourcePosX1``, the volume ids ``rsectorID1``, ``moduleID1``, ``crystalID1``)."""

from __future__ import annotations

import numpy as np
import pytest

from refsuite.events import crystal_ids, energies_kev, positions
from refsuite.io import RootFileError, read_coincidences, read_events, save_listmode, write_coincidences

uproot = pytest.importorskip("uproot")

N = 200


@pytest.fixture(scope="module")
def truth():
    """One set of coincidences in GATE 9's own units (s, MeV, mm as float32)."""
    rng = np.random.default_rng(4)
    f32 = lambda a: a.astype(np.float32)  # noqa: E731 - GATE 9 stores positions and energies as float
    decay = np.cumsum(rng.exponential(1e-3, N))  # s
    return {
        "eventID": rng.integers(0, 10**6, N).astype(np.int32),
        "time": [decay, decay + rng.normal(0, 2e-10, N)],
        "energy": [f32(rng.normal(0.511, 0.03, N)) for _ in range(2)],
        "pos": [f32(rng.normal(0, 200, (N, 3))) for _ in range(2)],
        "source": f32(rng.normal(0, 10, (N, 3))),
        "ids": [rng.integers(0, 24, N).astype(np.int32) for _ in range(2)],
    }


def _gate9(t):
    cols = {"runID": np.zeros(N, np.int32)}
    for k in (1, 2):
        cols[f"eventID{k}"] = t["eventID"]
        cols[f"time{k}"] = t["time"][k - 1]
        cols[f"energy{k}"] = t["energy"][k - 1]
        for a, axis in enumerate("XYZ"):
            cols[f"globalPos{axis}{k}"] = t["pos"][k - 1][:, a]
            cols[f"sourcePos{axis}{k}"] = t["source"][:, a]
        cols[f"rsectorID{k}"] = t["ids"][k - 1]
        cols[f"moduleID{k}"] = np.zeros(N, np.int32)
        cols[f"crystalID{k}"] = (t["ids"][k - 1] * 7) % 64
    return cols


def _gate10(t, *, online=False):
    cols = {}
    for k in (1, 2):
        cols[f"EventID{k}"] = t["eventID"].astype(np.int64)
        cols[f"GlobalTime{k}"] = t["time"][k - 1] * 1e9  # s -> ns, as the reader converts
        cols[f"TotalEnergyDeposit{k}"] = t["energy"][k - 1].astype(np.float64)
        for a, axis in enumerate("XYZ"):
            name = f"PostPosition{k}_{axis}" if online else f"PostPosition_{axis}{k}"
            cols[name] = t["pos"][k - 1][:, a].astype(np.float64)
    return cols


def _ttree(path, name, cols):
    with uproot.recreate(path) as f:
        tree = f.mktree(name, {k: v.dtype for k, v in cols.items()})
        tree.extend(cols)
    return path


def _rntuple(path, name, cols):
    with uproot.recreate(path) as f:
        f[name] = cols  # uproot >= 5.7 writes a dict as an RNTuple
    with uproot.open(path) as f:
        assert f.classnames()[f"{name};1"] == "ROOT::RNTuple"
    return path


def test_every_layout_gives_the_same_events(tmp_path, truth):
    files = {
        "gate9": _ttree(tmp_path / "g9.root", "Coincidences", _gate9(truth)),
        "gate10": _ttree(tmp_path / "g10.root", "Coincidences", _gate10(truth)),
        "gate10 online": _ttree(tmp_path / "g10o.root", "coincidences", _gate10(truth, online=True)),
        "rntuple gate10": _rntuple(tmp_path / "r10.root", "Coincidences", _gate10(truth)),
        "rntuple gate9": _rntuple(tmp_path / "r9.root", "Coincidences", _gate9(truth)),
        "npz": save_listmode(tmp_path / "ev.npz", _gate10(truth)),
    }
    want_t = [truth["time"][k] * 1e9 for k in (0, 1)]
    for label, path in files.items():
        ev = read_events(path)
        for k in (1, 2):
            np.testing.assert_array_equal(positions(ev, k), truth["pos"][k - 1].astype(np.float64), err_msg=label)
            np.testing.assert_array_equal(ev[f"GlobalTime{k}"], want_t[k - 1], err_msg=label)
            np.testing.assert_array_equal(energies_kev(ev, k), 1000.0 * truth["energy"][k - 1].astype(np.float64),
                                          err_msg=label)
            np.testing.assert_array_equal(ev[f"EventID{k}"], truth["eventID"], err_msg=label)
            assert ev[f"GlobalTime{k}"].dtype == np.float64 and ev[f"EventID{k}"].dtype == np.int64, label
        # plausibility of the fixture itself: ns-scale TOF differences, ms-scale decay spacing
        assert 0.01 < np.abs(ev["GlobalTime1"] - ev["GlobalTime2"]).mean() < 1.0


def test_gate9_keeps_volume_ids_and_truth(tmp_path, truth):
    ev = read_events(_ttree(tmp_path / "g9.root", "Coincidences", _gate9(truth)))
    np.testing.assert_array_equal(ev["rsectorID1"], truth["ids"][0])
    np.testing.assert_array_equal(ev["crystalID2"], (truth["ids"][1] * 7) % 64)
    np.testing.assert_array_equal(ev["TrackVertexPosition_Y1"], truth["source"][:, 1].astype(np.float64))
    assert "BlockID1" not in ev  # GATE's volume ids are not a Scanner's block indices
    assert not any(k.startswith(("time", "energy", "globalPos")) for k in ev)


def test_unknown_layout_names_the_layouts_and_branches(tmp_path):
    path = _ttree(tmp_path / "odd.root", "Hits", {"edep": np.zeros(3), "posX": np.zeros(3)})
    with pytest.raises(RootFileError) as err:
        read_events(path)
    msg = str(err.value)
    assert "odd.root" in msg and "gate9" in msg and "gate10" in msg and "npz" in msg
    assert "'edep'" in msg and "'posX'" in msg
    # a tree with a conventional name but no layout: what it lacks of the nearest layout
    half = _ttree(tmp_path / "half.root", "Coincidences", {"eventID1": np.zeros(3, np.int32),
                                                           "time1": np.zeros(3)})
    with pytest.raises(RootFileError, match=r"lacks required branches \['EventID2'.* of the gate9 layout"):
        read_events(half)
    text = tmp_path / "ev.txt"
    text.write_text("1 2 3\n")
    with pytest.raises(RootFileError, match="neither a ROOT file, an npz archive nor a PETSIRD stream") as err:
        read_events(text)
    assert "petsird: PETSIRD binary or NDJSON" in str(err.value)


def test_crystal_id_policy(tmp_path):
    from refsuite.geometry import preset
    from refsuite.mc import simulate
    from refsuite.phantoms import PointSources

    scanner = preset("thull_sim")
    ev = simulate(scanner, PointSources.random(4, rng=np.random.default_rng(1)), n_decays=4000, seed=2)
    wrong = dict(ev)
    wrong["BlockID1"] = (ev["BlockID1"] + 1) % scanner.n_blocks  # ids unlike the positions
    path = write_coincidences(tmp_path / "c.root", wrong)
    kept = read_events(path, scanner, crystal_ids="keep")
    np.testing.assert_array_equal(kept["BlockID1"], wrong["BlockID1"])
    assigned = read_events(path, scanner, crystal_ids="assign")
    np.testing.assert_array_equal(crystal_ids(assigned, scanner), crystal_ids(ev, scanner))
    # a file without ids gets them assigned under "keep" when a scanner is given, not without one
    bare = write_coincidences(tmp_path / "bare.root", {k: v for k, v in ev.items() if "ID" not in k or "Event" in k})
    np.testing.assert_array_equal(crystal_ids(read_events(bare, scanner), scanner), crystal_ids(ev, scanner))
    assert "BlockID1" not in read_events(bare)
    # read_coincidences with a scanner reassigns, as it always has
    np.testing.assert_array_equal(read_coincidences(path, scanner=scanner)["BlockID1"], ev["BlockID1"])
    with pytest.raises(ValueError, match="crystal_ids must be 'keep' or 'assign', got 'maybe'"):
        read_events(path, scanner, crystal_ids="maybe")
    with pytest.raises(ValueError, match="crystal_ids='assign' needs the scanner"):
        read_events(tmp_path / "not-read.root", crystal_ids="assign")
