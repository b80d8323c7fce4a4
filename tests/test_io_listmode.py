"""npz list-mode files: exact round trip with attrs, errors naming the file."""

from __future__ import annotations

import numpy as np
import pytest

from refsuite.geometry import preset
from refsuite.io import load_listmode, save_listmode
from refsuite.mc import simulate
from refsuite.phantoms import PointSources


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip(tmp_path, compress):
    ev = simulate(preset("thull_sim"), PointSources.random(3, rng=np.random.default_rng(0)), n_decays=8192, seed=3)
    back = load_listmode(save_listmode(tmp_path / "e.npz", ev, compress=compress))
    assert set(back) == set(ev) and back.attrs == ev.attrs
    for k in ev:
        assert back[k].dtype == ev[k].dtype
        np.testing.assert_array_equal(back[k], ev[k])


def test_errors(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(ValueError, match="bad.npz"):
        load_listmode(bad)
    part = tmp_path / "part.npz"
    np.savez(part, EventID1=np.arange(3))
    with pytest.raises(ValueError, match=r"part.npz: list-mode file lacks required columns \['EventID2'"):
        load_listmode(part)
