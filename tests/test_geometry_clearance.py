"""Exact block clearances (refsuite.geometry.clearance) against known cases and brute force."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from refsuite.geometry import (
    CrystalLUT, Scanner, block_clearances, check_block_clearance, euler_to_matrix, min_block_clearance,
    overlapping_blocks, perturb, preset,
)

SIZE = np.array([10.0, 4.0, 10.0])
H = SIZE / 2
LUT = CrystalLUT.regular(SIZE, (1, 1, 1))


def _pair(pos_b, axes_b=np.eye(3), axes_a=np.eye(3)):
    return Scanner(np.array([[0.0, 0.0, 0.0], pos_b]), np.stack([axes_a, axes_b]), SIZE, LUT, name="pair")


def _clearance(s):
    pairs, c = block_clearances(s, within_mm=100.0)
    assert pairs.tolist() == [[0, 1]]
    return float(c[0])


def _distance_reference(s, rng):
    """Box-constrained least squares in the two local frames (L-BFGS-B, several starts)."""
    pa, pb = s.positions
    a, b = s.axes

    def f(x):
        r = pa + x[:3] @ a - pb - x[3:] @ b
        return r @ r, np.concatenate([2 * a @ r, -2 * b @ r])

    bounds = [(-v, v) for v in np.tile(H, 2)]
    best = min(minimize(f, rng.uniform(-1, 1, 6) * np.tile(H, 2), jac=True, method="L-BFGS-B", bounds=bounds,
                        options={"ftol": 1e-15, "gtol": 1e-12}).fun for _ in range(4))
    return np.sqrt(max(best, 0.0))


def _depth_reference(s, rng):
    """Penetration depth = min over unit directions u of the projections' overlap
    r_A(u) + r_B(u) - |d . u|: sampled on the sphere, then refined by Nelder-Mead."""
    d = s.positions[1] - s.positions[0]

    def overlap(u):
        u = u / np.linalg.norm(u)
        return np.abs(s.axes[0] @ u) @ H + np.abs(s.axes[1] @ u) @ H - abs(d @ u)

    u = rng.normal(size=(20000, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    o = np.abs(u @ s.axes[0].T) @ H + np.abs(u @ s.axes[1].T) @ H - np.abs(u @ d)
    starts = u[np.argsort(o)[:4]]
    return min(minimize(overlap, x0, method="Nelder-Mead", options={"xatol": 1e-12, "fatol": 1e-13,
                                                                    "maxiter": 4000}).fun for x0 in starts)


# ------------------------------------------------------------------ known cases
@pytest.mark.parametrize("gap", [0.7, 0.0, -0.3])
def test_face_to_face_gap_touch_and_overlap(gap):
    for k in range(3):
        pos = np.zeros(3)
        pos[k] = SIZE[k] + gap
        assert _clearance(_pair(pos)) == pytest.approx(gap, abs=1e-12)
    # a sideways shift smaller than the overlap elsewhere does not change the depth
    assert _clearance(_pair([SIZE[0] + gap, 1.0, -2.0])) == pytest.approx(gap, abs=1e-12)


def test_corner_to_corner_is_euclidean_not_the_sat_bound():
    off = np.array([0.3, 0.4, 1.2])
    # SAT would give max(off) = 1.2; the corners are |off| = 1.3 apart
    assert _clearance(_pair(SIZE + off)) == pytest.approx(1.3, abs=1e-12)


def test_rotated_edge_facing_a_face():
    c = np.cos(np.pi / 4)
    rot = np.array([[c, c, 0.0], [-c, c, 0.0], [0.0, 0.0, 1.0]])  # 45 deg about z: an edge leads along x
    reach = (H[0] + H[1]) * c  # half extent of the turned 10 x 4 rectangle along x
    lift = (H[0] - H[1]) * c  # y of that leading edge relative to the centre is -lift
    for gap in (0.5, 0.0):
        assert _clearance(_pair([H[0] + reach + gap, lift, 0.0], rot)) == pytest.approx(gap, abs=1e-12)
    # pushed 0.2 mm in: freed by 0.2 mm along x (B's own face normals would have to clear A's whole face)
    s = _pair([H[0] + reach - 0.2, lift, 0.0], rot)
    assert _clearance(s) == pytest.approx(-0.2, abs=1e-12)
    assert _depth_reference(s, np.random.default_rng(0)) == pytest.approx(0.2, abs=1e-6)


def test_crossed_edges():
    """A ridge along x under a ridge along z (both boxes turned 45 deg): the edges cross at
    right angles, so the clearance is their vertical gap (an edge-edge SAT axis, y = x cross z)."""
    axes_a = euler_to_matrix(np.array([np.pi / 4, 0.0, 0.0])).T  # about x: a ridge edge along x on top
    axes_b = euler_to_matrix(np.array([0.0, 0.0, np.pi / 4])).T  # about z: a ridge edge along z below
    ca = _pair([50.0, 0.0, 0.0], axes_b, axes_a).block_corners()
    top = ca[0][np.argsort(ca[0][:, 1])[-2:]]  # the two highest corners of A: its ridge
    bottom = ca[1][np.argsort(ca[1][:, 1])[:2]] - [50.0, 0.0, 0.0]  # B's lowest two, relative to its centre
    assert np.allclose(np.abs(np.diff(top, axis=0)), [[SIZE[0], 0, 0]]) and np.allclose(
        np.abs(np.diff(bottom, axis=0)), [[0, 0, SIZE[2]]])
    for gap in (0.25, 0.0, -0.1):
        s = _pair(top.mean(0) - bottom.mean(0) + [0.0, gap, 0.0], axes_b, axes_a)
        assert _clearance(s) == pytest.approx(gap, abs=1e-12)


def test_far_pairs_are_skipped_and_presets_clear():
    assert block_clearances(_pair([100.0, 0.0, 0.0]))[0].shape == (0, 2)
    assert min_block_clearance(_pair([100.0, 0.0, 0.0])) == pytest.approx(90.0)
    # nominal clearances: thull_sim's 2 mm ring gap, lin_clinical's touching rings, half-rings 2.18 mm
    assert min_block_clearance(preset("thull_sim")) == pytest.approx(2.0, abs=1e-9)
    assert min_block_clearance(preset("thull_sim", axial_gap_mm=0.5)) == pytest.approx(0.5, abs=1e-9)
    assert min_block_clearance(preset("lin_clinical")) == pytest.approx(0.0, abs=1e-9)
    assert min_block_clearance(preset("thull_halfrings")) == pytest.approx(2.1804469, abs=1e-6)
    for name in ("thull_sim", "lin_clinical", "thull_halfrings"):
        assert len(overlapping_blocks(preset(name))) == 0
        check_block_clearance(preset(name))


# ------------------------------------------------------------------ brute-force references
def test_random_pairs_match_the_references():
    rng = np.random.default_rng(11)
    n_sep = n_over = 0
    for _ in range(60):
        axes = [euler_to_matrix(rng.uniform(-1.5, 1.5, 3)).T for _ in range(2)]
        s = _pair(rng.uniform(-13, 13, 3), axes[1], axes[0])
        c = _clearance(s)
        if c > 0:
            n_sep += 1
            assert c == pytest.approx(_distance_reference(s, rng), abs=1e-6)
        else:
            n_over += 1
            assert -c == pytest.approx(_depth_reference(s, rng), abs=1e-6)
    assert n_sep >= 10 and n_over >= 10


def test_overlap_decision_matches_point_sampling():
    """Points sampled in box 0 that fall in box 1 prove an overlap; sampling can miss a thin
    overlap, never invent one, and must agree on nearly all random pairs."""
    rng = np.random.default_rng(4)
    agree = 0
    for _ in range(30):
        s = _pair(rng.uniform(-12, 12, 3), euler_to_matrix(rng.uniform(-1, 1, 3)).T)
        pts = s.to_global(rng.uniform(-1, 1, (100_000, 3)) * H, np.zeros(100_000, int))
        inside = np.all(np.abs(s.to_local(pts, np.ones(100_000, int))) <= H, axis=1).any()
        found = len(overlapping_blocks(s)) == 1
        assert found == (_clearance(s) < 0)
        if inside:
            assert found
        agree += inside == found
    assert agree >= 27


def test_min_and_all_pairs_agree_on_a_misaligned_scanner():
    s = perturb(preset("thull_halfrings"), sigma_t_mm=2.0, sigma_r_deg=2.0, rng=np.random.default_rng(5),
                min_clearance_mm=None)
    pairs, c = block_clearances(s, within_mm=1e3)
    assert len(pairs) == s.n_blocks * (s.n_blocks - 1) // 2
    assert min_block_clearance(s) == pytest.approx(c.min(), abs=1e-12) and c.min() < 0
    over = overlapping_blocks(s)
    assert sorted(map(tuple, over.tolist())) == sorted(map(tuple, pairs[c < -1e-9].tolist()))
    # a tolerance keeps only the deeper overlaps
    assert len(overlapping_blocks(s, tolerance_mm=0.5)) == int(np.sum(c < -0.5))


# ------------------------------------------------------------------ the check
def test_check_names_the_deepest_pair_and_depth():
    t = np.zeros((24, 3))
    t[9, 2] = -2.75  # ring 1 block 1 moves 0.75 mm into ring 0 block 1 (2 mm gap)
    s = preset("thull_sim").transform(np.zeros((24, 3)), t)
    with pytest.raises(ValueError, match=r"blocks 1 and 9 interpenetrate by 0\.75 mm.*1 pair.*try this") as err:
        check_block_clearance(s, hint="try this")
    assert "thull_sim" in str(err.value)
    check_block_clearance(s, min_clearance_mm=-0.8)  # a tolerated overlap passes
    with pytest.raises(ValueError, match=r"too close: blocks \d+ and \d+ are 2 mm apart"):
        check_block_clearance(preset("thull_sim"), min_clearance_mm=2.5)
    with pytest.raises(ValueError, match="min_clearance_mm"):
        check_block_clearance(s, min_clearance_mm=float("nan"))
    with pytest.raises(TypeError, match="scanner"):
        block_clearances("thull_sim")
    with pytest.raises(ValueError, match="within_mm"):
        block_clearances(s, within_mm=-1.0)
    with pytest.raises(ValueError, match="tolerance_mm"):
        overlapping_blocks(s, tolerance_mm=-1.0)
