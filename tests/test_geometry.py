"""Scanner geometry: presets, frames, LUTs, transform, save/load, perturb, Procrustes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refsuite.geometry import (
    CrystalLUT, GroupMotion, Scanner, TranslationFrame, apply_rigid, axis_angle_matrix, euler_to_matrix,
    matrix_to_euler, perturb, preset, procrustes_errors,
)

SMALL = preset("thull_sim", binning="planar_4mm")


def _random_rotation(seed):
    rng = np.random.default_rng(seed)
    return axis_angle_matrix(rng.normal(size=3), rng.uniform(-np.pi, np.pi)), rng.normal(0, 50, 3)


# ------------------------------------------------------------------ presets
@pytest.mark.parametrize("name, n_blocks, n_crystals", [
    ("thull_sim", 24, 24 * 5 * 24), ("lin_clinical", 144, 288), ("thull_halfrings", 28, 23 * 23 * 2 + 22 * 22)])
def test_preset_sizes_and_frames(name, n_blocks, n_crystals):
    s = preset(name)
    assert (s.n_blocks, s.n_crystals) == (n_blocks, n_crystals)
    # right-handed orthonormal axes, Y radial outward, Z along the scanner axis
    np.testing.assert_allclose(np.cross(s.axes[:, 0], s.axes[:, 1]), s.axes[:, 2], atol=1e-12)
    radial = s.positions[:, :2] / np.linalg.norm(s.positions[:, :2], axis=1, keepdims=True)
    np.testing.assert_allclose(s.axes[:, 1, :2], radial, atol=1e-12)
    np.testing.assert_allclose(s.axes[:, 2], np.tile([0, 0, 1.0], (n_blocks, 1)))


def test_thull_sim_dimensions():
    s = preset("thull_sim")
    np.testing.assert_allclose(s.block_size, [48, 10, 48])
    # front faces at 75 mm: the block centre is 75 + 5 mm from the axis
    np.testing.assert_allclose(np.linalg.norm(s.positions[:, :2], axis=1), 80.0)
    np.testing.assert_allclose(s.crystals.half_sizes, 1.0)  # 2 x 2 x 2 mm voxels (Fig. 1)
    assert preset("thull_sim", binning="1mm").n_crystals == 48 * 48 * 10
    assert preset("thull_sim", binning="planar_2mm").n_crystals == 24 * 24
    with pytest.raises(ValueError, match="binning"):
        preset("thull_sim", binning="3mm")
    with pytest.raises(ValueError, match="name must be one of"):
        preset("siemens")


def test_lin_clinical_matches_paper():
    s = preset("lin_clinical")
    c = s.crystal_centres()
    # axial extent 306 mm (2L), crystals 3.9 mm wide, 20 mm deep at R = 403.8 mm
    assert c[..., 2].max() + 1.95 == pytest.approx(153 - (25.5 - 6 * 4.25) / 2 - (4.25 - 3.9) / 2)
    assert s.positions[:, 2].max() + s.block_size[2] / 2 == pytest.approx(153.0)
    np.testing.assert_allclose(np.linalg.norm(s.positions[:, :2], axis=1), 403.8 + 10)
    np.testing.assert_allclose(s.crystals.half_sizes, np.tile([1.95, 10, 1.95], (288, 1)))
    # 48 modules per ring do not overlap: module width < polygon side
    assert s.block_size[0] < 2 * 403.8 * np.tan(np.pi / 48)


def test_halfring_groups_axially_offset():
    s = preset("thull_halfrings", half_ring_offset_mm=8.0)
    assert sorted(np.bincount(s.groups)) == [7, 7, 7, 7]
    z = np.array([s.positions[s.groups == g, 2].mean() for g in range(4)])
    assert z[0] - z[1] == pytest.approx(8.0) and z[2] - z[3] == pytest.approx(8.0)


# ------------------------------------------------------------------ LUT
def test_lut_locate_exact_and_gaps():
    lut = preset("lin_clinical").crystals
    rng = np.random.default_rng(1)
    ids = rng.integers(0, lut.n_crystals, 5000)
    pts = lut.sample(ids, rng)
    assert np.array_equal(lut.locate(pts), ids)
    # a point in the 0.35 mm reflector between crystals goes to the nearest crystal centre
    gap_pt = np.array([0.05, 0.0, 0.1])
    assert not np.any(np.all(np.abs(gap_pt - lut.centres) <= lut.half_sizes, axis=1))
    nearest = np.argmin(np.linalg.norm(lut.centres - gap_pt, axis=1))
    assert lut.locate(gap_pt[None])[0] == nearest
    # with a smaller pitch the sub-block borders are wider gaps: still binned to the nearest
    wide = preset("lin_clinical", crystal_pitch_mm=4.0).crystals
    z_edges = np.unique(np.round(wide.centres[:, 2], 6))
    assert np.diff(z_edges).max() > 4.0 + 1e-6  # irregular spacing across sub-blocks
    pt = np.array([[0.3, 0.0, 0.2]])
    assert wide.locate(pt)[0] == np.argmin(np.linalg.norm(wide.centres - pt, axis=1))


def test_lut_validation():
    with pytest.raises(ValueError, match="half_sizes"):
        CrystalLUT(np.zeros((2, 3)), np.array([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="inside the block"):
        Scanner(np.zeros((1, 3)), np.eye(3)[None], [1, 1, 1], CrystalLUT(np.zeros((1, 3)), 1.0))
    with pytest.raises(ValueError, match="right-handed"):
        Scanner(np.zeros((1, 3)), np.diag([1.0, 1, -1])[None], [4, 4, 4], CrystalLUT(np.zeros((1, 3)), 1.0))


# ------------------------------------------------------------------ rotations and transform
@given(st.lists(st.floats(-1.5, 1.5), min_size=3, max_size=3))
def test_euler_round_trip(angles):
    m = euler_to_matrix(np.array(angles))
    np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(matrix_to_euler(m), angles, atol=1e-9)


def test_euler_torch_matches_numpy():
    torch = pytest.importorskip("torch")
    a = np.random.default_rng(2).normal(size=(5, 3))
    np.testing.assert_allclose(euler_to_matrix(torch.tensor(a)).numpy(), euler_to_matrix(a), atol=1e-14)


def test_transform_rotates_about_local_axes():
    s = SMALL
    r = np.zeros((s.n_blocks, 3))
    r[:, 1] = 0.3  # rotation about the DOI axis Y keeps Y, turns X and Z about it
    out = s.transform(r, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(out.axes[:, 1], s.axes[:, 1], atol=1e-15)
    np.testing.assert_allclose(np.einsum("di,di->d", out.axes[:, 0], s.axes[:, 0]), np.cos(0.3))
    np.testing.assert_allclose(out.positions, s.positions + [1, 2, 3])
    # local translations follow the block axes
    loc = s.transform(0.0, [0.0, 5.0, 0.0], translation_frame=TranslationFrame.LOCAL)
    np.testing.assert_allclose(loc.positions, s.positions + 5.0 * s.axes[:, 1])
    with pytest.raises(ValueError, match=r"rotations must have shape \(24, 3\)"):
        s.transform(np.zeros((5, 3)), 0.0)
    # crystal centres: P + L @ A
    c = out.crystal_centres()
    np.testing.assert_allclose(c[3, 7], out.positions[3] + out.crystals.centres[7] @ out.axes[3])


# ------------------------------------------------------------------ save / load
@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["thull_sim", "thull_halfrings"]), st.booleans())
def test_save_load_round_trip_exact(tmp_path_factory, seed, name, grouped):
    s = perturb(preset(name), sigma_t_mm=2.0, sigma_r_deg=2.0, groups=True if grouped else None,
                rng=np.random.default_rng(seed))
    path = tmp_path_factory.mktemp("scan") / "s.json"
    s.save(path)
    back = Scanner.load(path)
    assert back.equals(s)
    assert back.misalignment.to_dict() == s.misalignment.to_dict()


def test_load_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="bad.json"):
        Scanner.load(bad)
    trunc = tmp_path / "trunc.json"
    SMALL.save(trunc)
    trunc.write_text(trunc.read_text()[:100])
    with pytest.raises(ValueError, match="trunc.json"):
        Scanner.load(trunc)


# ------------------------------------------------------------------ perturb
@pytest.mark.parametrize("groups, motion", [(None, GroupMotion.RIGID), (True, GroupMotion.RIGID),
                                            (True, GroupMotion.SHARED_LOCAL)])
def test_perturb_truth_reproduces_scanner(groups, motion):
    blue = preset("thull_halfrings")
    pert = perturb(blue, sigma_t_mm=2.0, sigma_r_deg=2.0, groups=groups, rng=np.random.default_rng(3),
                   group_motion=motion)
    m = pert.misalignment
    again = blue.transform(m.rotations_rad, m.translations_mm)
    np.testing.assert_allclose(again.positions, pert.positions, atol=1e-12)
    np.testing.assert_allclose(again.axes, pert.axes, atol=1e-12)
    if groups is not None and motion is GroupMotion.RIGID:
        # a rigid group keeps the distances between its block centres
        for g in range(4):
            sel = blue.groups == g
            d0 = np.linalg.norm(blue.positions[sel][:, None] - blue.positions[sel][None], axis=-1)
            d1 = np.linalg.norm(pert.positions[sel][:, None] - pert.positions[sel][None], axis=-1)
            np.testing.assert_allclose(d1, d0, atol=1e-10)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.1, 3.0), st.floats(0.1, 3.0))
def test_perturb_statistics(seed, sigma_t, sigma_r):
    """Sample sigmas of 24 x 3 x 40 draws lie in their chi-square intervals.

    Hypothesis draws many seeds (and replays failures), so each example's interval is
    1 - 2e-6 wide: a false alarm stays below 1e-4 per run while a sigma 10 % off (variance
    ratio 0.81 or 1.21) still falls outside (the interval is about +-13 % of the variance).
    The Gaussian itself, i.e. without the clearance rule (which truncates it by design)."""
    from scipy import stats

    rng = np.random.default_rng(seed)
    rots, trans = [], []
    for _ in range(40):
        m = perturb(SMALL, sigma_t_mm=sigma_t, sigma_r_deg=sigma_r, rng=rng, min_clearance_mm=None).misalignment
        rots.append(m.rotations_rad)
        trans.append(m.translations_mm)
    n = 40 * SMALL.n_blocks * 3
    lo, hi = stats.chi2.ppf([1e-6, 1 - 1e-6], n) / n
    for x, sigma in ((np.rad2deg(np.array(rots)), sigma_r), (np.array(trans), sigma_t)):
        ratio = np.mean(x**2) / sigma**2  # mean is known to be zero
        assert lo < ratio < hi


def test_perturb_validates():
    with pytest.raises(ValueError, match="sigma_t_mm"):
        perturb(SMALL, sigma_t_mm=-1, sigma_r_deg=1, rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng"):
        perturb(SMALL, sigma_t_mm=1, sigma_r_deg=1, rng=0)
    with pytest.raises(ValueError, match="min_clearance_mm"):
        perturb(SMALL, sigma_t_mm=1, sigma_r_deg=1, rng=np.random.default_rng(0), min_clearance_mm=float("nan"))


@pytest.mark.parametrize("name, groups, motion", [
    ("thull_sim", None, GroupMotion.RIGID), ("thull_sim", True, GroupMotion.RIGID),
    ("thull_halfrings", None, GroupMotion.RIGID), ("thull_halfrings", True, GroupMotion.SHARED_LOCAL)])
def test_perturb_keeps_blocks_clear(name, groups, motion):
    """Unconstrained draws at 2 mm / 2 deg overlap; the default rule resamples them clear,
    reproducibly, with a truth that still reproduces the scanner."""
    from refsuite.geometry import min_block_clearance

    blue = preset(name, binning="planar_4mm") if name == "thull_sim" else preset(name)
    kw = dict(sigma_t_mm=2.0, sigma_r_deg=2.0, groups=groups, group_motion=motion)
    n_overlapping = 0
    for seed in range(4):
        free = perturb(blue, rng=np.random.default_rng(seed), min_clearance_mm=None, **kw)
        n_overlapping += min_block_clearance(free) < 0
        assert free.misalignment.min_clearance_mm is None
        for lim in (0.0, 0.5):
            s = perturb(blue, rng=np.random.default_rng(seed), min_clearance_mm=lim, **kw)
            assert min_block_clearance(s) >= lim - 1e-9 and s.misalignment.min_clearance_mm == lim
            assert s.equals(perturb(blue, rng=np.random.default_rng(seed), min_clearance_mm=lim, **kw))
            m = s.misalignment
            np.testing.assert_allclose(blue.transform(m.rotations_rad, m.translations_mm).positions, s.positions,
                                       atol=1e-12)
    assert n_overlapping >= 2
    assert perturb(blue, rng=np.random.default_rng(0), **kw).misalignment.min_clearance_mm == 0.0  # the default


def test_perturb_rule_changes_nothing_when_the_draw_is_clear():
    from refsuite.geometry import overlapping_blocks

    n_clear = 0
    for seed in range(10):
        free = perturb(SMALL, sigma_t_mm=0.3, sigma_r_deg=0.3, rng=np.random.default_rng(seed), min_clearance_mm=None)
        ruled = perturb(SMALL, sigma_t_mm=0.3, sigma_r_deg=0.3, rng=np.random.default_rng(seed))
        clear = len(overlapping_blocks(free)) == 0
        n_clear += clear
        assert np.array_equal(free.positions, ruled.positions) == clear
    assert n_clear >= 5


def test_perturb_gives_up_with_a_clear_error(monkeypatch):
    import refsuite.geometry.misalignment as mis

    # zero sigmas cannot move the blueprint's 2 mm ring gap to 3 mm: no rounds at all
    with pytest.raises(ValueError, match=r"min_clearance_mm=3 mm.*blueprint's smallest clearance is 2 mm"):
        perturb(SMALL, sigma_t_mm=0.0, sigma_r_deg=0.0, rng=np.random.default_rng(0), min_clearance_mm=3.0)
    monkeypatch.setattr(mis, "MAX_RESAMPLE_ROUNDS", 2)
    with pytest.raises(ValueError, match=r"after 2 rounds of resampling \(last draw: blocks \d+ and \d+ at"):
        perturb(SMALL, sigma_t_mm=0.5, sigma_r_deg=0.5, rng=np.random.default_rng(0), min_clearance_mm=20.0)


# ------------------------------------------------------------------ Procrustes
@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_procrustes_invariant_to_global_motion(seed, seed_motion):
    truth = perturb(SMALL, sigma_t_mm=1.0, sigma_r_deg=1.0, rng=np.random.default_rng(seed))
    found = perturb(truth, sigma_t_mm=0.3, sigma_r_deg=0.3, rng=np.random.default_rng(seed + 1))
    rot, t = _random_rotation(seed_motion)
    e0 = procrustes_errors(found, truth)
    e1 = procrustes_errors(apply_rigid(found, rot, t), truth)
    for key in ("translation_mm_mean", "translation_mm_max", "rotation_deg_mean", "rotation_deg_max"):
        assert e0[key].shape == (3,)
        np.testing.assert_allclose(e1[key], e0[key], atol=1e-7)
    # zero error on identical scanners, even after a global motion
    e2 = procrustes_errors(apply_rigid(truth, rot, t), truth)
    for key in ("translation_mm_max", "rotation_deg_max"):
        np.testing.assert_allclose(e2[key], 0.0, atol=1e-5)


def test_procrustes_detects_single_block_error():
    truth = preset("thull_sim")
    r = np.zeros((24, 3))
    t = np.zeros((24, 3))
    r[5, 2] = np.deg2rad(1.0)  # 1 deg about local Z of block 5
    found = truth.transform(r, t)
    e = procrustes_errors(found, truth)
    # rotation about Z moves X and Y by ~1 deg and leaves Z; the global fit spreads a little
    assert e["rotation_deg_max"][0] == pytest.approx(1.0, abs=0.1)
    assert e["rotation_deg_max"][2] < 0.1
    assert np.argmax(e["rotation_deg"][:, 0]) == 5


def test_pose_points_matches_transform_numpy_and_torch():
    from refsuite.geometry import pose_points

    torch = pytest.importorskip("torch")
    s = preset("thull_halfrings")
    rng = np.random.default_rng(6)
    r, t = rng.normal(0, 0.03, (s.n_blocks, 3)), rng.normal(0, 2, (s.n_blocks, 3))
    blocks = rng.integers(0, s.n_blocks, 500)
    crystals = rng.integers(0, s.n_crystals, 500)
    local = s.crystals.sample(crystals, rng)
    want = s.transform(r, t).to_global(local, blocks)
    np.testing.assert_allclose(pose_points(local, blocks, s.positions, s.axes, r, t), want, atol=1e-12)
    rt = torch.tensor(r, requires_grad=True)
    got = pose_points(torch.tensor(local), torch.tensor(blocks), torch.tensor(s.positions), torch.tensor(s.axes),
                      rt, torch.tensor(t))
    np.testing.assert_allclose(got.detach().numpy(), want, atol=1e-12)
    got.sum().backward()
    assert rt.grad is not None and torch.isfinite(rt.grad).all()


def test_coarsened_ids_merge_doi_layers():
    fine, coarse = preset("thull_sim", binning="2mm").crystals, preset("thull_sim", binning="planar_2mm").crystals
    m = fine.coarsened_ids(coarse)
    assert m.shape == (fine.n_crystals,)
    # every coarse voxel collects exactly the 5 DOI layers of one (x, z) column, and holds their points
    assert np.array_equal(np.bincount(m, minlength=coarse.n_crystals), np.full(coarse.n_crystals, 5))
    rng = np.random.default_rng(3)
    ids = rng.integers(0, fine.n_crystals, 2000)
    assert np.array_equal(coarse.locate(fine.sample(ids, rng)), m[ids])
