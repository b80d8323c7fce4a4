"""ROOT coincidence files: exact round trip, GATE spellings, errors naming the file, atomicity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refsuite.geometry import preset
from refsuite.io import REQUIRED_COLUMNS, RootFileError, read_coincidences, write_coincidences
from refsuite.mc import simulate
from refsuite.phantoms import PointSources

uproot = pytest.importorskip("uproot")

THULL = preset("thull_sim")


@pytest.fixture(scope="module")
def events():
    return simulate(THULL, PointSources.random(10, rng=np.random.default_rng(3)), n_decays=20_000, seed=9)


def test_round_trip_every_column(tmp_path, events):
    path = write_coincidences(tmp_path / "c.root", events)
    back = read_coincidences(path)
    for k, v in events.items():
        assert back[k].dtype == v.dtype, k
        np.testing.assert_array_equal(back[k], v, err_msg=k)
    assert back.attrs["seed"] == 9 and back.attrs["counts"] == events.attrs["counts"]
    # GATE-style volume IDs derived from block and crystal
    b, c = events["BlockID1"][0], events["CrystalID1"][0]
    assert back["PreStepUniqueVolumeID1"][0] == f"0_{b}_{c}"
    # a GATE reader sees a TTree named Coincidences (not an RNTuple)
    with uproot.open(path) as f:
        assert f.classnames()["Coincidences;1"] == "TTree"


def test_scanner_mapping_recovers_indices(tmp_path, events):
    drop = {k: v for k, v in events.items() if not k.startswith(("BlockID", "CrystalID"))}
    back = read_coincidences(write_coincidences(tmp_path / "c.root", drop), scanner=THULL)
    for k in ("BlockID1", "BlockID2", "CrystalID1", "CrystalID2"):
        np.testing.assert_array_equal(back[k], events[k])


_DTYPES = st.sampled_from([np.float64, np.float32, np.int64, np.int32])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 300), st.dictionaries(st.from_regex(r"[A-Z][A-Za-z]{1,8}[12]", fullmatch=True), _DTYPES,
                                            max_size=4), st.integers(0, 2**32 - 1))
def test_round_trip_property(tmp_path, n, extra, seed):
    rng = np.random.default_rng(seed)
    cols = {c: rng.normal(size=n) * 100 for c in REQUIRED_COLUMNS}
    cols["EventID1"] = cols["EventID2"] = rng.integers(0, 2**40, n)
    for name, dt in extra.items():
        if name not in cols:
            cols[name] = (rng.normal(size=n) * 1e3).astype(dt)
    path = write_coincidences(tmp_path / f"p{seed}.root", cols, chunk_size=97)
    back = read_coincidences(path)
    assert set(back) == set(cols)
    for k, v in cols.items():
        assert back[k].dtype == v.dtype
        np.testing.assert_array_equal(back[k], v)


def test_reads_online_sorter_spelling(tmp_path, events):
    """CoincidenceSorterActor writes tree 'coincidences' with PostPosition1_X."""
    path = tmp_path / "online.root"
    cols = {}
    for k, v in events.items():
        m = k.split("_")
        if k.startswith("PostPosition_"):
            cols[f"PostPosition{k[-1]}_{k[-2]}"] = v
        elif len(m) == 1:
            cols[k] = v
    with uproot.recreate(path) as f:
        t = f.mktree("coincidences", {k: v.dtype for k, v in cols.items()})
        t.extend(cols)
    back = read_coincidences(path, scanner=THULL)
    np.testing.assert_array_equal(back["PostPosition_Y2"], events["PostPosition_Y2"])
    np.testing.assert_array_equal(back["CrystalID2"], events["CrystalID2"])


def test_errors_name_the_file_and_problem(tmp_path, events):
    with pytest.raises(RootFileError, match="nothere.root: no such file"):
        read_coincidences(tmp_path / "nothere.root")
    junk = tmp_path / "junk.root"
    junk.write_bytes(b"this is not a ROOT file" * 10)
    with pytest.raises(RootFileError, match="junk.root: not a readable ROOT file"):
        read_coincidences(junk)
    missing = tmp_path / "missing.root"
    with uproot.recreate(missing) as f:
        t = f.mktree("Coincidences", {"EventID1": np.int64, "GlobalTime1": np.float64})
        t.extend({"EventID1": np.arange(3), "GlobalTime1": np.zeros(3)})
    with pytest.raises(RootFileError, match=r"missing.root: tree 'Coincidences' lacks required branches \['EventID2'"):
        read_coincidences(missing)
    good = write_coincidences(tmp_path / "good.root", events)
    data = good.read_bytes()
    trunc = tmp_path / "trunc.root"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(RootFileError, match="trunc.root"):
        read_coincidences(trunc)


def test_write_is_atomic(tmp_path, events, monkeypatch):
    path = tmp_path / "out.root"
    write_coincidences(path, events)
    before = path.read_bytes()
    bad = dict(events)
    bad["GlobalTime1"] = bad["GlobalTime1"][:-1]
    with pytest.raises(ValueError, match="equal lengths"):
        write_coincidences(path, bad)
    bad = {k: v for k, v in events.items() if k != "TotalEnergyDeposit2"}
    with pytest.raises(ValueError, match="TotalEnergyDeposit2"):
        write_coincidences(path, bad)
    # a failure inside the writer leaves the old file and no temporary behind
    import uproot.writing.writable as w

    def boom(self, data, **kw):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(w.WritableTree, "extend", boom)
    with pytest.raises(OSError, match="disk full"):
        write_coincidences(path, events)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.root"]
