"""The list-mode event model: crystal ids and their bounds check, TOF offsets, LOR end points."""

from __future__ import annotations

import numpy as np
import pytest

from refsuite.constants import SPEED_OF_LIGHT_MM_PER_NS
from refsuite.events import (CRYSTAL_ID_COLUMNS, Events, LORPlacement, crystal_ids, lor_endpoints, positions,
                             tof_offsets_mm)
from refsuite.geometry import preset

SCANNER = preset("thull_sim")


def _events():
    ids = {"BlockID1": np.array([0, 3]), "CrystalID1": np.array([5, 2879]), "BlockID2": np.array([12, 15]),
           "CrystalID2": np.array([0, 7])}
    pts = {f"PostPosition_{a}{k}": np.array([1.0, 2.0]) * (k + 3 * i) for i, a in enumerate("XYZ") for k in (1, 2)}
    return Events({**ids, **pts, "GlobalTime1": np.array([10.0, 10.0]), "GlobalTime2": np.array([10.0, 10.5])},
                  attrs={"seed": 1})


def test_crystal_ids_one_bounds_check():
    ev = _events()
    ids = crystal_ids(ev, SCANNER)
    assert ids.dtype == np.int64 and ids.tolist() == [[0, 5, 12, 0], [3, 2879, 15, 7]]
    with pytest.raises(ValueError, match=r"1 CrystalID values outside \[0, 2879\] \(first 2880\)"):
        crystal_ids(dict(ev, CrystalID2=np.array([0, 2880])), SCANNER)
    with pytest.raises(ValueError, match=r"1 BlockID values outside \[0, 23\] \(first -1\)"):
        crystal_ids(dict(ev, BlockID1=np.array([-1, 0])), SCANNER)
    with pytest.raises(ValueError, match=r"lack the crystal-id columns \['CrystalID2'\]"):
        crystal_ids({k: v for k, v in ev.items() if k != "CrystalID2"})
    assert crystal_ids(dict(ev, CrystalID2=np.array([0, 99999]))).shape == (2, 4)  # no scanner: no check


def test_tof_offsets_and_take():
    ev = _events()
    # single 2 later by 0.5 ns: the annihilation is nearer single 1, i.e. towards xstart (negative)
    np.testing.assert_allclose(tof_offsets_mm(ev), [0.0, -0.25 * SPEED_OF_LIGHT_MM_PER_NS])
    sub = ev.take(np.array([False, True]))
    assert isinstance(sub, Events) and sub.n_events == 1 and sub.attrs == {"seed": 1}
    assert sub["CrystalID1"].tolist() == [2879]
    with pytest.raises(ValueError, match="TrueGlobalTime1"):
        tof_offsets_mm(ev, true_times=True)


def test_lor_endpoints_placements():
    ev = _events()
    xs, xe = lor_endpoints(ev, SCANNER)
    np.testing.assert_array_equal(xs, SCANNER.crystal_positions(ev["BlockID1"], ev["CrystalID1"]))
    np.testing.assert_array_equal(xe, SCANNER.crystal_positions(ev["BlockID2"], ev["CrystalID2"]))
    a, b = lor_endpoints(ev, SCANNER, placement="crystal_samples", rng=np.random.default_rng(0))
    half = SCANNER.crystals.half_sizes[ev["CrystalID1"]]
    local = SCANNER.to_local(a, ev["BlockID1"]) - SCANNER.crystals.centres[ev["CrystalID1"]]
    assert np.all(np.abs(local) <= half + 1e-9) and not np.allclose(a, xs)
    line = lor_endpoints(ev, placement=LORPlacement.LINE)
    np.testing.assert_array_equal(line[1], positions(ev, 2))
    with pytest.raises(ValueError, match="needs the scanner"):
        lor_endpoints(ev)
    with pytest.raises(TypeError, match="rng must be a numpy Generator"):
        lor_endpoints(ev, SCANNER, placement="crystal_samples")
    assert CRYSTAL_ID_COLUMNS == ("BlockID1", "CrystalID1", "BlockID2", "CrystalID2")
