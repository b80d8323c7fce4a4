"""The list-mode event model: crystal ids and their bounds check, TOF offsets, LOR end points."""

from __future__ import annotations

import numpy as np
import pytest

from refsuite.constants import SPEED_OF_LIGHT_MM_PER_NS
from refsuite.events import (CRYSTAL_ID_COLUMNS, Events, LORPlacement, canonical_pairs, canonical_row_order,
                             crystal_ids, lor_endpoints, positions, swapped_pairs, tof_offsets_mm)
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


def test_canonical_pairs_lower_detection_id_first():
    # rows: ordered; swapped by block; same block, swapped by crystal; one crystal (kept)
    ev = Events({"BlockID1": np.array([1, 5, 2, 3]), "CrystalID1": np.array([9, 0, 7, 4]),
                 "BlockID2": np.array([4, 2, 2, 3]), "CrystalID2": np.array([0, 3, 1, 4]),
                 "GlobalTime1": np.array([1.0, 2.0, 3.0, 4.0]), "GlobalTime2": np.array([1.5, 2.1, 2.9, 4.0]),
                 "tof_bin": np.array([1, -2, 3, 0]), "xstart": np.arange(12.0).reshape(4, 3),
                 "xend": -np.arange(12.0).reshape(4, 3), "run": np.array([7, 7, 7, 7])}, attrs={"ctr_ps": 200.0})
    assert swapped_pairs(ev).tolist() == [False, True, True, False]
    c = canonical_pairs(ev)
    assert isinstance(c, Events) and c.attrs == {"ctr_ps": 200.0} and set(c) == set(ev)
    assert crystal_ids(c).tolist() == [[1, 9, 4, 0], [2, 3, 5, 0], [2, 1, 2, 7], [3, 4, 3, 4]]
    # the TOF offset and the signed bin change sign with the swap; unpaired columns stay
    np.testing.assert_allclose(tof_offsets_mm(c), tof_offsets_mm(ev) * [1, -1, -1, 1])
    assert c["tof_bin"].tolist() == [1, 2, -3, 0] and c["run"].tolist() == [7, 7, 7, 7]
    np.testing.assert_array_equal(c["xstart"][1], ev["xend"][1])
    np.testing.assert_array_equal(c["xend"][2], ev["xstart"][2])
    np.testing.assert_array_equal(c["xstart"][0], ev["xstart"][0])
    assert not swapped_pairs(c).any()
    # an event written either way round is one canonical event (not decidable in one crystal: row 3)
    flipped = Events({k: ev[{"1": k[:-1] + "2", "2": k[:-1] + "1"}[k[-1]]] if k[-1] in "12" else ev[k] for k in ev})
    flipped["tof_bin"], flipped["xstart"], flipped["xend"] = -ev["tof_bin"], ev["xend"], ev["xstart"]
    back = canonical_pairs(flipped)
    for k in ev:
        np.testing.assert_array_equal(back[k][:3], c[k][:3], err_msg=k)
    assert list(canonical_pairs(ev, columns=["BlockID1", "GlobalTime2"])) == ["BlockID1", "GlobalTime2"]
    with pytest.raises(ValueError, match="lack the columns"):
        canonical_pairs(ev, columns=["nope"])
    with pytest.raises(ValueError, match="crystal-id columns"):
        swapped_pairs({"GlobalTime1": np.zeros(2)})


def test_canonical_row_order_sorts_ids_then_tof_bin():
    ids = np.array([[2, 0, 5, 1], [1, 3, 4, 0], [2, 0, 5, 1], [1, 3, 2, 9]])
    assert canonical_row_order(ids).tolist() == [3, 1, 0, 2]  # stable for equal keys
    assert canonical_row_order(ids, np.array([4, 0, -1, 0])).tolist() == [3, 1, 2, 0]
    # any permutation of the same rows sorts to the same arrays
    perm = np.random.default_rng(1).permutation(4)
    tb = np.array([4, 0, -1, 0])
    o1, o2 = canonical_row_order(ids, tb), canonical_row_order(ids[perm], tb[perm])
    np.testing.assert_array_equal(ids[o1], ids[perm][o2])
