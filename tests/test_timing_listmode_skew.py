"""refsuite.timing.listmode_skew: per-channel skews and CTR of a ring scanner from a point-source scan."""

from __future__ import annotations

import numpy as np
import pytest

from refsuite.geometry import preset
from refsuite.mc import simulate
from refsuite.phantoms import PointSources
from refsuite.timing.listmode_skew import (ChannelGranularity, apply_channel_skews, channel_map, listmode_ctr,
                                           listmode_skew_calibration)


# one source at the iso-centre (CTR) and four off-centre ones that connect the channels
SOURCES = np.array([[0, 0, 0], [20, 0, 10], [0, 20, -10], [-20, 0, 25], [0, -20, -25]], float)


@pytest.fixture(scope="module")
def scan():
    scanner = preset("thull_sim", binning="4mm")
    ev = simulate(scanner, PointSources(SOURCES), n_decays=400_000, seed=3, ctr_ps=250.0)
    return scanner, ev


def test_channel_map_shapes():
    s = preset("thull_sim", binning="4mm")
    blk = channel_map(s, ChannelGranularity.BLOCK)
    assert blk.shape == (24, s.n_crystals) and blk.max() == 23
    cry = channel_map(s, "crystal")
    # 12 x 12 planar positions per block, the 2 DOI layers of a column share a channel
    assert cry.max() + 1 == 24 * 144
    assert len(np.unique(cry[0])) == 144


def test_block_skews_are_recovered_within_their_errors(scan):
    scanner, ev = scan
    truth = np.random.default_rng(0).normal(0.0, 100.0, 24)
    skewed = apply_channel_skews(ev, scanner, truth)
    assert skewed.attrs["channel_skews_ps"] == truth.tolist()
    res = listmode_skew_calibration(skewed, scanner, sources_mm=SOURCES)
    z = (res.offsets_ps - (truth - truth.mean())) / res.sigma_ps
    assert np.abs(z).max() < 5.0, z
    assert res.sigma_ps.max() < 3.0  # ps: thousands of coincidences per block at 106 ps rms
    # the calibration restores the CTR of the simulation (250 ps FWHM)
    raw = listmode_ctr(skewed, scanner, sources_mm=SOURCES)
    cal = listmode_ctr(skewed, scanner, sources_mm=SOURCES, offsets_ps=res.offsets_ps)
    assert raw.fwhm > cal.fwhm + 10.0  # 100 ps rms block skews broaden the spectrum
    assert abs(cal.fwhm - 250.0) < 4 * cal.fwhm_err + 5.0, cal


def test_one_changed_channel_stands_out(scan):
    scanner, ev = scan
    base = np.random.default_rng(1).normal(0.0, 100.0, 24)
    changed = base.copy()
    changed[7] += 150.0
    a = listmode_skew_calibration(apply_channel_skews(ev, scanner, base), scanner, sources_mm=SOURCES)
    b = listmode_skew_calibration(apply_channel_skews(ev, scanner, changed), scanner, sources_mm=SOURCES)
    delta = b.offsets_ps - a.offsets_ps
    delta -= np.median(delta)
    assert np.argmax(np.abs(delta)) == 7
    assert delta[7] == pytest.approx(150.0, abs=5.0)
    assert np.abs(np.delete(delta, 7)).max() < 5.0


def test_bad_input(scan):
    scanner, ev = scan
    with pytest.raises(ValueError, match="skews_ps must have 24 values"):
        apply_channel_skews(ev, scanner, np.zeros(5))
    with pytest.raises(ValueError, match="max_source_distance_mm"):
        listmode_skew_calibration(ev, scanner, sources_mm=SOURCES, max_source_distance_mm=-1)
    bad = dict(ev)
    del bad["GlobalTime1"]
    with pytest.raises(ValueError, match="GlobalTime1"):
        listmode_skew_calibration(bad, scanner, sources_mm=SOURCES)
