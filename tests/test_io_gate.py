"""Files of GATE 10's own coincidence sorter read exactly like ours.

Singles from the built-in MC are sorted into coincidences by ``opengate.actors.coincidences``
(GATE's Python sorter, which writes the ``Coincidences`` tree); reading that file with a
scanner must give back our events, block and crystal indices included.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from refsuite.geometry import preset
from refsuite.io import read_coincidences
from refsuite.mc import simulate
from refsuite.phantoms import PointSources


@pytest.fixture(scope="module")
def gate_sorter():
    os.environ.setdefault("GATEONRTD", "1")
    mod = pytest.importorskip("opengate.actors.coincidences", reason="opengate (GATE 10) not installed")
    return mod.coincidences_sorter


@pytest.mark.slow
def test_gate_python_sorter_output_reads_back(tmp_path, gate_sorter):
    import awkward as ak
    import uproot

    scan = preset("thull_sim")
    # 1 kBq: decays ~1 ms apart, far outside the 5 ns window, so no multiples
    ev = simulate(scan, PointSources.random(10, rng=np.random.default_rng(1)), n_decays=2**14, seed=1,
                  activity_bq=1e3)
    singles = {base: np.concatenate([ev[f"{base}1"], ev[f"{base}2"]]) for base in
               ("EventID", "GlobalTime", "TotalEnergyDeposit", "PostPosition_X", "PostPosition_Y", "PostPosition_Z")}
    blocks = np.concatenate([ev["BlockID1"], ev["BlockID2"]]).astype(str)
    crystals = np.concatenate([ev["CrystalID1"], ev["CrystalID2"]]).astype(str)
    singles["PreStepUniqueVolumeID"] = np.char.add(np.char.add("0_", blocks), np.char.add("_", crystals))
    order = np.argsort(singles["GlobalTime"], kind="stable")
    singles = {k: v[order] for k, v in singles.items()}
    with uproot.recreate(tmp_path / "singles.root") as f:
        t = f.mktree("Singles", {k: ("string" if v.dtype.kind == "U" else v.dtype) for k, v in singles.items()})
        t.extend({k: (ak.from_numpy(v) if v.dtype.kind == "U" else v) for k, v in singles.items()})
    with uproot.open(tmp_path / "singles.root") as f:
        gate_sorter(f["Singles"], 5.0, "TakeAllGoods", None, "xy", None,
                    output_file_path=str(tmp_path / "gate.root"))
    back = read_coincidences(tmp_path / "gate.root", scanner=scan)
    assert len(back["EventID1"]) == ev.n_events > 1000
    idx = np.searchsorted(ev["EventID1"], back["EventID1"])
    for k in back:
        want = ev[k][idx] if k in ev else None
        if k.startswith("PreStepUniqueVolumeID"):
            continue
        np.testing.assert_array_equal(back[k], want, err_msg=k)
