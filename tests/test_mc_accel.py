"""The azimuth index of the block culling is exact: same crossings as brute force, any geometry."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refsuite.geometry import perturb, preset
from refsuite.geometry import tracing
from refsuite.mc import simulate
from refsuite.geometry import accel
from refsuite.geometry.accel import RingIndex, _pseudo_angle
from refsuite.phantoms import PointSources

SCANNERS = {name: preset(name) for name in ("thull_sim", "lin_clinical", "thull_halfrings")}


def _all_crossings(scanner, origin, direction):
    """Every (photon, block) whose box the ray crosses: the slab test on all pairs."""
    n, nb = len(origin), scanner.n_blocks
    i, b = np.repeat(np.arange(n), nb), np.tile(np.arange(nb), n)
    i, b = tracing._slab(origin, direction, scanner.positions, scanner.axes, scanner.block_size / 2, i, b)[:2]
    return set(zip(i.tolist(), b.tolist()))


def _rays(scanner, rng, n, spread):
    """Origins in a cylinder reaching ``spread`` x the scanner's inner radius (some start
    beyond it: fallback), directions isotropic plus exact special cases."""
    r_in = RingIndex(scanner).r_in
    rad = spread * r_in * np.sqrt(rng.random(n))
    ang = rng.random(n) * 2 * np.pi
    z = rng.uniform(-200, 200, n)
    o = np.column_stack([rad * np.cos(ang), rad * np.sin(ang), z])
    d = rng.normal(size=(n, 3))
    d[:5] = [[0, 0, 1], [0, 0, -1], [1, 0, 0], [0, 1, 0], [np.sqrt(0.5), -np.sqrt(0.5), 0]]
    d[5:20, 2] = 0.0  # transverse rays
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    o[:3] = 0.0  # from the centre, along the axis and transverse
    return o, d


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(sorted(SCANNERS)), st.floats(0.0, 6.0), st.floats(0.0, 6.0), st.floats(0.2, 1.3),
       st.integers(0, 2**32 - 1), st.booleans())
def test_index_candidates_contain_every_crossing(name, sigma_t, sigma_r, spread, seed, dense):
    """Misaligned scanners (perturbed blocks, as alignment studies simulate into): the
    candidates of the index (and its fallback) contain every block the ray crosses, both
    senses, and the traced hits equal brute force bit for bit; for both layouts of the
    candidate table (dense, ragged). Unconstrained draws (overlaps allowed): the tracer must be
    right for any geometry, and lin_clinical's touching rings admit no clear draw at these sigmas."""
    rng = np.random.default_rng(seed)
    scan = perturb(SCANNERS[name], sigma_t_mm=sigma_t, sigma_r_deg=sigma_r, rng=rng, min_clearance_mm=None)
    o, d = _rays(scan, rng, 400, spread)
    with mock.patch.object(accel, "_DENSE_SLACK", 10**9 if dense else -(10**9)):
        _check_against_brute_force(scan, o, d, rng)


def _check_against_brute_force(scan, o, d, rng):
    fwd, bwd = tracing._candidates(scan, o, d, both_ways=True)
    for (i, b), sense in ((fwd, 1.0), (bwd, -1.0)):
        assert np.all(np.diff(i) >= 0)  # photon-major, as _exact needs
        cand = set(zip(i.tolist(), b.tolist()))
        assert len(cand) == len(i)  # no duplicates
        assert _all_crossings(scan, o, sense * d) <= cand
    depth = rng.exponential(1 / 0.087, len(o))
    fast = tracing.trace_blocks(scan, o, d, depth)
    slow = tracing.trace_blocks(scan, o, d, depth, accelerate=False)
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a, b)
    # pairs: the index also skips rays whose partner cannot reach a block
    depth2 = rng.exponential(1 / 0.087, len(o))
    fast = tracing.trace_pairs(scan, o, d, depth, depth2)
    slow = tracing.trace_pairs(scan, o, d, depth, depth2, accelerate=False)
    np.testing.assert_array_equal(fast[0], slow[0])
    for a, b in zip(fast[1] + fast[2], slow[1] + slow[2]):
        np.testing.assert_array_equal(a, b)


def test_index_is_used_and_tighter_than_bounding_spheres():
    """Not a silent fallback: the presets are indexed and get fewer candidates."""
    rng = np.random.default_rng(1)
    for scan in SCANNERS.values():
        index = RingIndex(scan)
        assert index.usable
        o, d = _rays(scan, rng, 5000, 0.5)
        assert index.inside(o).all()
        n_fast = len(tracing._candidates(scan, o, d)[0])
        n_slow = len(tracing._candidates(scan, o, d, accelerate=False)[0])
        assert n_fast < 0.7 * n_slow


def test_index_refuses_a_block_on_the_axis():
    """A block straddling the z axis has no azimuth interval: brute force for every ray."""
    pair = preset("thull_sim")
    from dataclasses import replace

    pos = pair.positions.copy()
    pos[0] = [0.0, 0.0, 0.0]
    scan = replace(pair, positions=pos)
    assert not RingIndex(scan).usable
    rng = np.random.default_rng(3)
    o, d = _rays(pair, rng, 300, 0.5)
    o[:, :2] += 30.0  # outside block 0
    o[:, 2] = 100.0
    depth = rng.exponential(1 / 0.087, len(o))
    for a, b in zip(tracing.trace_blocks(scan, o, d, depth), tracing.trace_blocks(scan, o, d, depth, accelerate=False)):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=50, deadline=None)
@given(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3), st.floats(-1e3, 1e3), st.floats(-1e3, 1e3))
def test_pseudo_angle_is_monotone_in_azimuth(x1, y1, x2, y2):
    """Order of azimuths (mod a turn, starting at +x) and the half-turn shift are kept."""
    if np.hypot(x1, y1) < 1e-6 or np.hypot(x2, y2) < 1e-6:
        return
    t1, t2 = np.mod(np.arctan2([y1, y2], [x1, x2]), 2 * np.pi)
    p1, p2 = _pseudo_angle(np.array([x1, x2]), np.array([y1, y2]))
    if abs(t1 - t2) > 1e-9:
        assert (t1 < t2) == (p1 < p2)
    assert np.mod(_pseudo_angle(np.array(-x1), np.array(-y1)) - p1, 4.0) == pytest.approx(2.0, abs=1e-12)


def test_simulate_is_bit_identical_without_the_index(monkeypatch):
    """Events of a misaligned scanner: the same with the index as with brute force."""
    scan = perturb(preset("thull_sim", binning="2mm"), sigma_t_mm=2.0, sigma_r_deg=2.0,
                   rng=np.random.default_rng(4))
    src = PointSources.random(10, rng=np.random.default_rng(7))
    kw = dict(n_decays=30_000, seed=9, acollinearity_fwhm_deg=0.0)
    fast = simulate(scan, src, **kw)
    fast_acol = simulate(scan, src, **{**kw, "acollinearity_fwhm_deg": 0.5})

    class NoIndex(RingIndex):
        def __init__(self, scanner):
            self.usable = False

    monkeypatch.setattr(tracing, "RingIndex", NoIndex)
    slow = simulate(scan, src, **kw)
    slow_acol = simulate(scan, src, **{**kw, "acollinearity_fwhm_deg": 0.5})
    assert fast.n_events > 1000
    for a, b in ((fast, slow), (fast_acol, slow_acol)):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(sorted(SCANNERS)), st.floats(0.0, 0.3), st.integers(0, 2**32 - 1))
def test_depth_pruning_only_drops_photons_that_cannot_interact(name, sigma, seed):
    """The depth pruning of the index is exact: a photon whose depth is below its summed
    chords through all blocks (it interacts) keeps all its candidates; every photon pruned
    has a depth of at least its chords; and pruning does remove photons. Overlapping
    blocks (lin_clinical's rings touch: any unconstrained misalignment overlaps them) switch it off."""
    rng = np.random.default_rng(seed)
    scan = perturb(SCANNERS[name], sigma_t_mm=sigma, sigma_r_deg=sigma, rng=rng, min_clearance_mm=None)
    index = RingIndex(scan)
    assert index.prunable == (not accel._blocks_overlap(scan))
    o, d = _rays(scan, rng, 3000, 0.9)
    ins = index.inside(o)
    o, d = o[ins], d[ins]
    n, nb = len(o), scan.n_blocks
    i, b = np.repeat(np.arange(n), nb), np.tile(np.arange(nb), n)
    chords = []
    for sense in (1.0, -1.0):  # origins inside r_in are outside every block: t_in > 0
        hit = tracing._slab(o, sense * d, scan.positions, scan.axes, scan.block_size / 2, i, b)
        chords.append(np.bincount(hit[0], weights=hit[3] - hit[2], minlength=n))
    full = index.candidates(o, d, both_ways=True)
    just_below = index.candidates(o, d, both_ways=True, depths=[c * (1 - 1e-12) for c in chords])
    for (i_f, b_f), (i_k, b_k) in zip(full, just_below):
        np.testing.assert_array_equal(i_f, i_k)
        np.testing.assert_array_equal(b_f, b_k)
    depths = rng.exponential(1 / 0.087, (2, n))
    pruned = index.candidates(o, d, both_ways=True, depths=depths)
    for k in range(2):
        gone = np.setdiff1d(full[k][0], pruned[k][0])
        assert np.all(depths[k, gone] >= chords[k][gone])
        assert (len(gone) > 0) == index.prunable


def test_block_overlap_detection():
    """Separating-axis test: touching blocks do not overlap, 0.01 mm more along any
    local axis does; unperturbed presets have no overlaps (so the depth pruning applies)."""
    from dataclasses import replace

    for scan in SCANNERS.values():
        assert not accel._blocks_overlap(scan)
        assert RingIndex(scan).prunable
    scan = SCANNERS["thull_sim"]
    pos, ax = scan.positions.copy(), scan.axes.copy()
    ax[1] = ax[0]
    pos[0] = [3.0, 1.0, 500.0]  # a pair away from the ring
    for k in range(3):
        pos[1] = pos[0] + ax[0, k] * scan.block_size[k]
        assert not accel._blocks_overlap(replace(scan, positions=pos, axes=ax))
        pos[1] = pos[0] + ax[0, k] * (scan.block_size[k] - 0.01)
        assert accel._blocks_overlap(replace(scan, positions=pos, axes=ax))
    rot = ax.copy()
    c, s = np.cos(0.3), np.sin(0.3)  # a tilted neighbour touching at an edge only
    rot[1] = np.array([[c, s, 0], [-s, c, 0], [0, 0, 1.0]]) @ ax[0]
    pos[1] = pos[0] + ax[0, 0] * (scan.block_size[0] / 2 + 0.5 + np.abs(rot[1] @ ax[0, 0]) @ (scan.block_size / 2))
    assert not accel._blocks_overlap(replace(scan, positions=pos, axes=rot))
    pos[1] -= ax[0, 0]
    assert accel._blocks_overlap(replace(scan, positions=pos, axes=rot))
