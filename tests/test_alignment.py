"""refsuite.alignment: poses, fan sums, the likelihood, the solver's contracts (checkpoint,
resume, NaN stop, bad input), the CLI and image metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refsuite.alignment import (AlignmentDiverged, PoseModel, TOFMode, align, depth_layer_efficiencies, fan_partners,
                                fan_sum_efficiencies, prepare_events)
from refsuite.geometry import GroupMotion, perturb, preset, procrustes_errors
from refsuite.mc import simulate
from refsuite.phantoms import CylindricalShell, PointSources

# a small problem: 4 mm voxels (12 x 2 x 12 per block) keep every solver call to seconds
SMALL = dict(n_iter=40, batch_size=20_000, model_sigma_mm=0.5, lr_translation_mm=0.1, lr_rotation_rad=2e-3,
             support_radius_mm=4.5, max_support=200_000, progress=False)


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(11)
    bp = preset("thull_sim", binning="4mm")
    truth = perturb(bp, sigma_t_mm=1.0, sigma_r_deg=0.5, rng=rng)
    src = PointSources.random(10, fov_radius_mm=40.0, fov_half_length_mm=50.0, rng=rng)
    ev = simulate(truth, src, n_decays=250_000, seed=5)
    return bp, truth, src, ev


def test_pose_model_per_block_matches_scanner_transform():
    bp = preset("thull_sim", binning="4mm")
    rng = np.random.default_rng(0)
    r, t = rng.normal(0, 0.02, (24, 3)), rng.normal(0, 1.0, (24, 3))
    pm = PoseModel(bp)
    pos, axes = pm.poses(torch.tensor(r), torch.tensor(t))
    ref = bp.transform(r, t)
    np.testing.assert_allclose(pos.numpy(), ref.positions, atol=1e-12)
    np.testing.assert_allclose(axes.numpy(), ref.axes, atol=1e-12)
    rb, tb = pm.block_parameters(torch.tensor(r), torch.tensor(t))
    np.testing.assert_allclose(rb, r, atol=1e-12)
    np.testing.assert_allclose(tb, t, atol=1e-12)


@pytest.mark.parametrize("motion", list(GroupMotion))
def test_pose_model_groups_reproduce_perturbed_groups(motion):
    """Group parameters equal to the drawn group noise reproduce perturb(groups=True)."""
    bp = preset("thull_halfrings")
    truth = perturb(bp, sigma_t_mm=2.0, sigma_r_deg=2.0, groups=True, rng=np.random.default_rng(3),
                    group_motion=motion, min_clearance_mm=None)
    # recover the group noise from the same stream (the unconstrained draw: the clearance rule
    # would redraw overlapping groups from further down the stream)
    rng = np.random.default_rng(3)
    g_rot = rng.normal(0.0, np.deg2rad(2.0), (4, 3))
    g_trans = rng.normal(0.0, 2.0, (4, 3))
    pm = PoseModel(bp, bp.groups, motion)
    pos, axes = pm.poses(torch.tensor(g_rot), torch.tensor(g_trans))
    np.testing.assert_allclose(pos.numpy(), truth.positions, atol=1e-9)
    np.testing.assert_allclose(axes.numpy(), truth.axes, atol=1e-12)


def test_fan_partners_thull_sim_nine_blocks():
    fan = fan_partners(preset("thull_sim"))
    assert (fan.sum(1) == 9).all() and (fan == fan.T).all() and not fan.diagonal().any()


def test_fan_sum_efficiencies_shell():
    bp = preset("thull_sim", binning="4mm")
    ev = simulate(bp, CylindricalShell(), n_decays=400_000, seed=2)
    eff = fan_sum_efficiencies(ev, bp)
    assert eff.shape == (24, 288) and np.isclose(eff[eff > 0].mean(), 1.0)
    # the front DOI layer (local y < 0, facing the FOV) sees more photons than the back one
    y = bp.crystals.centres[:, 1]
    assert eff[:, y < 0].mean() > 1.2 * eff[:, y > 0].mean()
    layer = depth_layer_efficiencies(eff, bp)
    assert np.unique(layer.round(12)).size == 2 and layer[:, y < 0].min() > layer[:, y > 0].max()
    np.testing.assert_allclose(layer.mean(), eff.mean())
    raw = fan_sum_efficiencies(ev, bp, normalise=False)
    fan = fan_partners(bp)
    n_fan = int(fan[ev["BlockID1"], ev["BlockID2"]].sum())
    assert raw.sum() == 2 * n_fan


def test_prepare_events_rejects_foreign_crystals(small):
    bp, _, _, ev = small
    bad = dict(ev)
    bad["CrystalID1"] = np.array(ev["CrystalID1"]).copy()
    bad["CrystalID1"][3] = bp.n_crystals
    with pytest.raises(ValueError, match="do not map to the scanner's crystals: 1 CrystalID"):
        prepare_events(bad, bp)
    with pytest.raises(ValueError, match="lack the crystal-id columns"):
        prepare_events({"GlobalTime1": np.zeros(2)}, bp)


def test_align_rejects_phantom_outside_fov(small):
    bp, _, src, ev = small
    far = PointSources(src.centres_mm + [200.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="outside the scanner's field of view"):
        align(ev, bp, far, **SMALL)


def test_align_reduces_error_tof(small):
    bp, truth, src, ev = small
    res = align(ev, bp, src, **SMALL)
    before = procrustes_errors(bp, truth)["translation_mm_mean"].mean()
    after = procrustes_errors(res.scanner, truth)["translation_mm_mean"].mean()
    assert after < 0.5 * before, (before, after)
    assert res.nll_history.shape == (40,) and res.nll_history[-5:].mean() < res.nll_history[0]
    # the result's per-block parameters reproduce its scanner
    np.testing.assert_allclose(bp.transform(res.rotations_rad, res.translations_mm).positions, res.scanner.positions)


def test_nan_stops_and_keeps_last_good_checkpoint(small, tmp_path):
    bp, _, src, ev = small
    ckpt = tmp_path / "a.pt"
    kw = dict(SMALL, n_iter=6, checkpoint=ckpt, checkpoint_every=1)
    kw["lr_translation_mm"] = 1e308  # Adam's first step is ~lr: the parameters overflow

    with pytest.raises(AlignmentDiverged, match="non-finite|NLL became") as info:
        align(ev, bp, src, **kw)
    res = info.value.result
    assert np.isfinite(res.translations_mm).all() and np.isfinite(res.scanner.positions).all()
    state = torch.load(ckpt, weights_only=False) if ckpt.exists() else None
    if state is not None:
        assert torch.isfinite(state["translations"]).all()


def test_checkpoint_resume_continues_the_run(small, tmp_path):
    bp, _, src, ev = small
    # float64: multithreaded float32 reductions round differently from run to run (~1e-5 relative)
    kw = dict(SMALL, n_iter=6, tof=TOFMode.NONE, dtype=torch.float64)
    full = align(ev, bp, src, **kw)
    ckpt = tmp_path / "c.pt"

    def stop(it, *_):
        if it == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        align(ev, bp, src, checkpoint=ckpt, checkpoint_every=3, callback=stop, **kw)
    resumed = align(ev, bp, src, checkpoint=ckpt, checkpoint_every=3, resume=True, **kw)
    # same batches, samples and optimiser state
    np.testing.assert_allclose(resumed.nll_history, full.nll_history, rtol=1e-10)
    np.testing.assert_allclose(resumed.translations_mm, full.translations_mm, atol=1e-8)  # mm
    assert not np.allclose(resumed.translations_mm, 0.0)
    # a completed run resumes to its stored final state (loaded with weights_only=True: tensors and plain types)
    again = align(ev, bp, src, checkpoint=ckpt, checkpoint_every=3, resume=True, **kw)
    np.testing.assert_array_equal(again.translations_mm, resumed.translations_mm)
    assert resumed.uncertainty is not None  # the stored Fisher information came back as a numpy array
    np.testing.assert_array_equal(again.uncertainty.covariance, resumed.uncertainty.covariance)
    with pytest.raises(ValueError, match="belongs to other data or options"):
        align(ev, bp, src, checkpoint=ckpt, resume=True, **dict(kw, n_iter=7))


def _cli(argv):
    """The command as a user runs it: refsuite.cli.main (one error path, exit status)."""
    from refsuite.cli import main

    return main(argv)


def test_cli_align(small, tmp_path):
    from refsuite.geometry import Scanner
    from refsuite.io import save_listmode

    bp, _, src, ev = small
    bp.save(tmp_path / "bp.json")
    src.save(tmp_path / "ph.json")
    save_listmode(tmp_path / "ev.npz", ev)
    out = tmp_path / "aligned.json"
    rc = _cli(["align", "--events", str(tmp_path / "ev.npz"), "--scanner", str(tmp_path / "bp.json"), "--phantom",
               str(tmp_path / "ph.json"), "--out", str(out), "--n-iter", "2", "--batch-size", "5000", "--no-progress"])
    assert rc == 0 and Scanner.load(out).n_blocks == 24
    bad = PointSources(src.centres_mm + [300.0, 0, 0])
    bad.save(tmp_path / "far.json")
    rc = _cli(["align", "--events", str(tmp_path / "ev.npz"), "--scanner", str(tmp_path / "bp.json"), "--phantom",
               str(tmp_path / "far.json"), "--out", str(tmp_path / "x.json"), "--n-iter", "2", "--no-progress"])
    assert rc == 2 and not (tmp_path / "x.json").exists()


def test_cli_align_refuses_unusable_inputs_before_the_set_up(small, tmp_path, capsys):
    """No coincidences, no CTR for the TOF likelihood, a checkpoint cut short by a kill or of another
    kind: one line naming the file or flag, exit 2, before the candidates and support are built."""
    from refsuite.io import save_listmode

    bp, _, src, ev = small
    bp.save(tmp_path / "bp.json")
    src.save(tmp_path / "ph.json")
    save_listmode(tmp_path / "ev.npz", ev)
    save_listmode(tmp_path / "none.npz", ev.take(np.zeros(0, int)))
    no_ctr = ev.take(np.arange(ev.n_events))
    no_ctr.attrs.pop("ctr_ps", None)
    save_listmode(tmp_path / "noctr.npz", no_ctr)
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 cut short")
    base = ["align", "--scanner", str(tmp_path / "bp.json"), "--phantom", str(tmp_path / "ph.json"), "--out",
            str(tmp_path / "x.json"), "--n-iter", "2", "--no-progress"]
    for extra, names in ((["--events", str(tmp_path / "none.npz")], "none.npz: no coincidences"),
                         (["--events", str(tmp_path / "noctr.npz")], "pass --ctr-ps"),
                         (["--events", str(tmp_path / "ev.npz"), "--resume", "--checkpoint", str(tmp_path / "cut.pt")],
                          "--checkpoint")):
        assert _cli(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert names in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "x.json").exists()


def test_cli_align_reads_gate9_as_gate10(small, tmp_path, write_gate9):
    """The same coincidences as a GATE 9 tree (s, MeV, globalPos*) and as a GATE 10 tree align to the same
    scanner; crystal ids assigned from the interaction points on the blueprint (--crystal-ids assign; a GATE 9
    file records no run attributes, so the CTR is given)."""
    import json

    from refsuite.io import write_coincidences

    bp, _, src, ev = small
    bp.save(tmp_path / "bp.json")
    src.save(tmp_path / "ph.json")
    files = {"g9": write_gate9(tmp_path / "g9.root", ev), "g10": write_coincidences(tmp_path / "g10.root", ev)}
    found = {}
    for key, path in files.items():
        out = tmp_path / f"{key}.json"
        assert _cli(["align", "--events", str(path), "--scanner", str(tmp_path / "bp.json"), "--phantom",
                     str(tmp_path / "ph.json"), "--out", str(out), "--crystal-ids", "assign", "--ctr-ps", "250", "--n-iter", "3",
                     "--batch-size", "5000", "--no-progress", "--device", "cpu"]) == 0
        found[key] = json.loads(out.with_name(f"{key}.alignment.json").read_text())
    # the files hold the same events but for the s -> ns rounding of GATE 9's times (~1e-9 ns, so a few
    # TOF bins may flip): the poses agree to 2 um, against steps of ~100 um in these 3 iterations
    moved = np.abs(found["g10"]["translations_mm"]).max()
    assert moved > 0.05, moved
    np.testing.assert_allclose(found["g9"]["translations_mm"], found["g10"]["translations_mm"], atol=2e-3)


def test_group_shared_parameters_recover_half_ring_poses():
    """thull_halfrings, misalignment shared per half-ring (rigid): 4 group poses are learnt."""
    rng = np.random.default_rng(5)
    bp = preset("thull_halfrings")
    truth = perturb(bp, sigma_t_mm=1.0, sigma_r_deg=0.5, groups=True, rng=rng)
    src = PointSources.random(10, fov_radius_mm=40.0, fov_half_length_mm=25.0, rng=rng)
    ev = simulate(truth, src, n_decays=150_000, seed=6)
    res = align(ev, bp, src, groups=True, **dict(SMALL, n_iter=60))
    assert res.parameters["translations_mm"].shape == (4, 3)
    before = procrustes_errors(bp, truth)["translation_mm_mean"].mean()
    after = procrustes_errors(res.scanner, truth)["translation_mm_mean"].mean()
    assert after < 0.4 * before, (before, after)


def test_misplaced_phantom_is_absorbed_by_a_global_motion(small):
    """A phantom placed 1 mm off (rigidly): Procrustes-evaluated errors still drop (Thull et al. 2.8)."""
    bp, truth, src, ev = small
    shifted = PointSources(src.centres_mm + np.array([0.7, -0.5, 0.5]))
    res = align(ev, bp, shifted, **SMALL)
    before = procrustes_errors(bp, truth)["translation_mm_mean"].mean()
    after = procrustes_errors(res.scanner, truth)["translation_mm_mean"].mean()
    assert after < 0.5 * before, (before, after)


def _two_voxel_problem(depth_mu=0.0, inverse_square=True, n_samples=4000):
    from refsuite.alignment.objective import Problem

    T = lambda x: torch.as_tensor(np.asarray(x, float))  # noqa: E731
    return Problem(lut_centres=T([[0.0, 0.0, 0.0]]), lut_half=T([[1.0, 1.0, 1.0]]), centres=T([[0.0, 0.0, 0.0]]),
                   sigmas=T([0.05]), activities=T([1.0]), tof=None, n_samples=n_samples, depth_mu=depth_mu,
                   inverse_square=inverse_square, length_ref=100.0)


def _facing_blocks(d):
    """Two 2 mm voxels on the x axis at +-d mm, local y (DOI) pointing away from the origin."""
    axes = np.array([[[0, 1, 0], [1, 0, 0], [0, 0, 1]], [[0, -1, 0], [-1, 0, 0], [0, 0, 1]]], float)
    return torch.tensor([[d, 0, 0], [-d, 0, 0]], dtype=torch.float64), torch.tensor(axes)


def test_depth_sampling_follows_first_interaction_density():
    from refsuite.alignment.objective import _points

    mu, h = 0.087, 1.0
    gen = torch.Generator().manual_seed(0)
    pts = _points(_two_voxel_problem(depth_mu=mu, n_samples=200_000), torch.tensor([0]), _facing_blocks(50.0), gen)
    depth = pts[0, :, 0].numpy() - 50.0 + h  # distance behind the voxel's front face, mm
    expected = 1 / mu - 2 * h / np.expm1(2 * mu * h)  # mean of exp(-mu t) truncated to [0, 2h]
    assert abs(depth.mean() - expected) < 4 * depth.std() / np.sqrt(depth.size)
    assert expected < h - 0.025  # 29 um: ~20 standard errors from uniform sampling (mean h)
    assert depth.min() >= 0 and depth.max() <= 2 * h


@pytest.mark.parametrize("weighted", [True, False])
def test_pair_sensitivity_falls_as_inverse_square_of_distance(weighted):
    """A point source midway between two facing voxels: doubling the distance divides the
    detection probability of the pair by 4 (solid angle); the unweighted mean line integral
    of the paper's model does not fall at all (the line's offset at the midpoint does not
    depend on the distance)."""
    from refsuite.alignment.objective import _expected

    prob = _two_voxel_problem(inverse_square=weighted, n_samples=200_000)
    cr, row, blob = torch.tensor([[0, 1]]), torch.tensor([0]), torch.tensor([0])
    mu = [float(_expected(prob, cr, row, blob, None, _facing_blocks(d), torch.Generator().manual_seed(1))) for d in (40, 80)]
    ratio = mu[1] / mu[0]
    assert ratio == pytest.approx(0.25 if weighted else 1.0, rel=0.08)


@pytest.mark.parametrize("with_tof", [False, True])
def test_many_blob_line_integrals_equal_one_call_per_blob(with_tof):
    # the vectorised (paired) line integrals must equal one call per blob, for a tube's hundreds of blobs
    import torch

    from refsuite.alignment.objective import Problem, _line_integrals
    from refsuite.projectors import TOFParameters, blob_line_integrals

    g = torch.Generator().manual_seed(2)
    m, n = 100, 500
    tof = TOFParameters(num_bins=41, bin_width_mm=3.75, sigma_mm=15.9) if with_tof else None
    prob = Problem(centres=torch.randn(m, 3, generator=g, dtype=torch.float64) * 10,
                   sigmas=0.25 + torch.rand(m, generator=g, dtype=torch.float64),
                   activities=1 + torch.rand(m, generator=g, dtype=torch.float64), tof=tof)
    xs = torch.randn(n, 3, generator=g, dtype=torch.float64) * 10 + torch.tensor([-80.0, 0, 0], dtype=torch.float64)
    xe = torch.randn(n, 3, generator=g, dtype=torch.float64) * 10 + torch.tensor([80.0, 0, 0], dtype=torch.float64)
    blob = torch.randint(0, m, (n,), generator=g)
    tb = torch.randint(-10, 11, (n,), generator=g) if with_tof else None
    got = _line_integrals(prob, xs, xe, blob, tb)
    kw = dict(tof=tof, truncate=False) if with_tof else {}
    want = torch.stack([blob_line_integrals(xs[i:i + 1], xe[i:i + 1], centres=prob.centres[blob[i]][None],
                                            sigmas=prob.sigmas[blob[i]][None], activities=prob.activities[blob[i]][None],
                                            **({**kw, "tof_bin": tb[i:i + 1]} if with_tof else {}))[0] for i in range(n)])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)


def test_event_candidates_are_every_blob_within_the_radius_nearest_first():
    """The grouped search (bounding spheres of consecutive blobs) finds exactly the blobs a brute
    force over every (line, blob) distance finds, in order of distance, for a tube's ~800 blobs
    (blob count not a multiple of the group size) and for 10 point sources."""
    from refsuite.alignment.support import event_candidates, line_point_distance
    from refsuite.phantoms import Tube

    rng = np.random.default_rng(4)
    pts = rng.uniform(-40, 40, (6, 3))
    for centres in (Tube(pts[np.argsort(pts[:, 2])]).centre_line(803), rng.uniform(-40, 40, (10, 3))):
        a = rng.normal(0, 30, (3000, 3)) + [-150, 0, 0]
        b = rng.normal(0, 30, (3000, 3)) + [150, 0, 0]
        ptr, blobs = event_candidates(a, b, centres, 4.0, chunk=2000)
        d = line_point_distance(a, b, centres)
        assert ptr[-1] > 100 and blobs.dtype == np.int32
        for i in range(0, 3000, 7):
            want = np.flatnonzero(d[i] <= 4.0)
            np.testing.assert_array_equal(blobs[ptr[i]:ptr[i + 1]], want[np.argsort(d[i, want], kind="stable")])
