"""Per-event scores and the Fisher-information covariance of the alignment parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refsuite.alignment import PoseModel, PoseUncertainty
from refsuite.alignment.objective import Problem, _expected
from refsuite.alignment.support import pair_support
from refsuite.alignment.uncertainty import event_scores, pose_fisher_information
from refsuite.geometry import preset


def _problem(n_events=60, seed=3):
    """A TOF-less problem of one blob and crystal pairs whose lines pass near it (float64)."""
    bp = preset("thull_sim", binning="4mm")
    centre = np.array([[6.0, -4.0, 3.0]])
    rng = np.random.default_rng(seed)
    sup, _ = pair_support(bp.positions, bp.axes, bp.crystals.centres, centre, 1.5, max_per_blob=n_events, rng=rng)
    T = lambda x, dt=torch.float64: torch.as_tensor(np.array(x), dtype=dt)  # noqa: E731
    n_all = bp.n_blocks * bp.n_crystals
    problem = Problem(lut_centres=T(bp.crystals.centres), lut_half=T(bp.crystals.half_sizes), eff=T(np.ones(n_all)),
                      ev_cr=T(sup[:, :2], torch.long), ev_tof=None, ev_cand_ptr=torch.arange(len(sup) + 1),
                      ev_cand=torch.as_tensor(sup[:, 2], dtype=torch.int32),
                      ev_att=T(np.ones(len(sup))), sup=T(sup, torch.long), sup_att=T(np.ones(len(sup))),
                      sup_weight=T(np.ones(len(sup))), centres=T(centre), sigmas=T([0.5]), activities=T([1.0]),
                      tof=None, n_samples=4, depth_mu=bp.mu_per_mm, inverse_square=True, length_ref=150.0)
    return bp, problem


def test_event_scores_sum_to_the_gradient_of_the_pose_model():
    """Per-event scores, gathered per block, equal autograd of sum_e log mu_e through PoseModel at
    the blueprint (same sample points): the rows reach the right blocks in the right order."""
    bp, problem = _problem()
    poses = PoseModel(bp, dtype=torch.float64)
    rot = torch.zeros((bp.n_blocks, 3), dtype=torch.float64, requires_grad=True)
    trans = torch.zeros_like(rot, requires_grad=True)
    gen = torch.Generator().manual_seed(11)
    cr = problem.ev_cr
    mu = _expected(problem, cr, torch.arange(problem.n_events), problem.ev_cand.long(), None, poses.poses(rot, trans), gen)
    torch.log(mu).sum().backward()
    expected = np.concatenate([rot.grad.numpy(), trans.grad.numpy()], 1)
    gen = torch.Generator().manual_seed(11)
    g1, g2 = event_scores(problem, poses.poses(rot, trans), torch.arange(problem.n_events), gen=gen, floor=0.0)
    m = bp.n_crystals
    found = np.zeros((bp.n_blocks, 6))
    np.add.at(found, (cr[:, 0] // m).numpy(), g1)
    np.add.at(found, (cr[:, 1] // m).numpy(), g2)
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(found, expected, rtol=1e-9, atol=1e-12 * np.abs(expected).max())


def test_fisher_information_is_the_centred_cross_covariance_of_two_score_sets():
    bp, problem = _problem()
    poses = PoseModel(bp, dtype=torch.float64).poses(torch.zeros((bp.n_blocks, 3), dtype=torch.float64),
                                                     torch.zeros((bp.n_blocks, 3), dtype=torch.float64))
    info, n = pose_fisher_information(problem, poses, bp.n_blocks, gen=torch.Generator().manual_seed(5), floor=0.0,
                                      chunk=17)
    gen = torch.Generator().manual_seed(5)
    m = bp.n_crystals
    ga, gb = np.zeros((n, 6 * bp.n_blocks)), np.zeros((n, 6 * bp.n_blocks))
    for s in range(0, n, 17):  # the same chunks draw the same points, set a then set b
        idx = torch.arange(s, min(s + 17, n))
        for g in (ga, gb):
            g1, g2 = event_scores(problem, poses, idx, gen=gen, floor=0.0)
            for k, i in enumerate(idx.tolist()):
                b1, b2 = (int(c) // m for c in problem.ev_cr[i])
                g[i, 6 * b1:6 * b1 + 6] += g1[k]
                g[i, 6 * b2:6 * b2 + 6] += g2[k]
    cross = (ga - ga.mean(0)).T @ (gb - gb.mean(0))
    np.testing.assert_allclose(info, 0.5 * (cross + cross.T), rtol=1e-9, atol=1e-9 * np.abs(info).max())
    # the sampling noise is out: the information is smaller than either set's own covariance
    assert np.trace(info) < np.trace(n * np.cov(ga.T, bias=True))


def test_fisher_information_from_an_event_subset_is_scaled_to_all_events():
    """``event_subset``: the centred cross-covariance of the subset's scores times n_all / n_subset
    (the estimate ``align(information_events=...)`` uses for large data sets)."""
    bp, problem = _problem()
    zeros = torch.zeros((bp.n_blocks, 3), dtype=torch.float64)
    poses = PoseModel(bp, dtype=torch.float64).poses(zeros, zeros)
    n_all = problem.n_events
    sub = np.arange(1, n_all, 3)
    info, n = pose_fisher_information(problem, poses, bp.n_blocks, gen=torch.Generator().manual_seed(5), floor=0.0,
                                      chunk=10_000, event_subset=sub[::-1])  # order does not matter
    assert n == n_all
    gen, m = torch.Generator().manual_seed(5), bp.n_crystals
    sets = []
    for _ in range(2):  # one chunk: set a, then set b, as the function draws them
        g1, g2 = event_scores(problem, poses, torch.as_tensor(sub), gen=gen, floor=0.0)
        g = np.zeros((len(sub), 6 * bp.n_blocks))
        for k, i in enumerate(sub):
            b1, b2 = (int(c) // m for c in problem.ev_cr[i])
            g[k, 6 * b1:6 * b1 + 6] += g1[k]
            g[k, 6 * b2:6 * b2 + 6] += g2[k]
        sets.append(g)
    cross = (sets[0] - sets[0].mean(0)).T @ (sets[1] - sets[1].mean(0)) * (n_all / len(sub))
    np.testing.assert_allclose(info, 0.5 * (cross + cross.T), rtol=1e-9, atol=1e-9 * np.abs(info).max())
    with pytest.raises(ValueError, match="event_subset"):
        pose_fisher_information(problem, poses, bp.n_blocks, gen=gen, floor=0.0, event_subset=[n_all])


def test_pose_uncertainty_principal_deviations():
    cov = np.zeros((12, 12))
    cov[np.arange(12), np.arange(12)] = [1e-6, 4e-6, 9e-6, 0.01, 0.04, 0.0025] * 2
    cov[3, 4] = cov[4, 3] = 0.015
    u = PoseUncertainty(cov, n_events=10, n_samples=5)
    np.testing.assert_allclose(u.rotation_sd_rad(), [3e-3, 3e-3])
    lam = np.linalg.eigvalsh(np.array([[0.01, 0.015], [0.015, 0.04]]))[-1]
    np.testing.assert_allclose(u.translation_sd_mm(), [np.sqrt(lam), 0.2])
    assert u.to_dict()["n_events"] == 10


@pytest.mark.parametrize("groups", [None, True])
def test_align_reports_an_uncertainty_for_per_block_fits_only(groups):
    from refsuite.alignment import align
    from refsuite.mc import simulate
    from refsuite.phantoms import PointSources

    name = "thull_halfrings" if groups else "thull_sim"
    bp = preset(name, binning="4mm") if not groups else preset(name)
    src = PointSources.random(4, fov_radius_mm=30.0, fov_half_length_mm=20.0, rng=np.random.default_rng(1))
    ev = simulate(bp, src, n_decays=100_000, seed=4)
    res = align(ev, bp, src, n_iter=3, batch_size=4000, max_support=20_000, groups=groups, progress=False)
    if groups:
        assert res.uncertainty is None
        return
    u = res.uncertainty
    assert u.covariance.shape == (6 * bp.n_blocks,) * 2 and u.n_events == res.info["n_events"]
    sd_t, sd_r = u.translation_sd_mm(), u.rotation_sd_rad()
    assert np.all(np.isfinite(sd_t)) and np.all(sd_t > 0) and np.all(sd_r > 0)
    # ~1e4 coincidences over 24 blocks: tens of um to a mm, not nm or metres
    assert 0.005 < np.median(sd_t) < 2.0
    assert "uncertainty_s" in res.timing


def test_support_memo_reproduces_an_uncached_run_exactly():
    """The support cache returns the same support *and* leaves the random stream where the
    uncached call would: a cached run equals an uncached one bit for bit."""
    from refsuite.alignment import align, solver
    from refsuite.mc import simulate
    from refsuite.phantoms import PointSources

    bp = preset("thull_sim", binning="4mm")
    src = PointSources.random(3, fov_radius_mm=30.0, fov_half_length_mm=20.0, rng=np.random.default_rng(2))
    ev = simulate(bp, src, n_decays=60_000, seed=9)
    kw = dict(n_iter=3, batch_size=4000, max_support=20_000, progress=False, uncertainty=False, seed=5)
    solver._SUPPORT_CACHE.clear()
    first = align(ev, bp, src, **kw)
    assert len(solver._SUPPORT_CACHE) == 1
    second = align(ev, bp, src, **kw)
    np.testing.assert_array_equal(first.translations_mm, second.translations_mm)
    np.testing.assert_array_equal(first.nll_history, second.nll_history)
    other = align(ev, bp, src, **{**kw, "seed": 6})  # another random state: a different support draw
    assert len(solver._SUPPORT_CACHE) == 2 and not np.array_equal(other.nll_history, first.nll_history)


def test_fisher_scoring_polish_lowers_the_full_nll_and_the_error():
    """After a deliberately short stochastic phase, the Fisher-scoring steps take full-data
    Newton steps downhill (a wrong gradient sign or scale would make every step fail the
    full-NLL test and stop the polish) and bring the blocks closer to the truth."""
    from refsuite.alignment import align
    from refsuite.geometry import perturb, procrustes_errors
    from refsuite.mc import simulate
    from refsuite.phantoms import PointSources

    bp = preset("thull_sim", binning="4mm")
    rng = np.random.default_rng(8)
    truth = perturb(bp, sigma_t_mm=0.5, sigma_r_deg=0.5, rng=rng)
    src = PointSources.random(6, fov_radius_mm=35.0, fov_half_length_mm=40.0, rng=rng)
    ev = simulate(truth, src, n_decays=400_000, seed=3)
    kw = dict(n_iter=25, batch_size=20_000, max_support=100_000, progress=False, uncertainty=False, ctr_ps=250.0)
    raw = align(ev, bp, src, polish_steps=0, **kw)
    pol = align(ev, bp, src, polish_steps=2, **kw)
    steps = pol.timing["polish"]
    assert steps and all("nll_after" in s and s["nll_after"] < s["nll_before"] for s in steps), steps
    err = lambda r: float(np.mean(procrustes_errors(r.scanner, truth)["translation_mm_mean"]))  # noqa: E731
    assert err(pol) < err(raw), (err(pol), err(raw))


def test_a_completed_run_resumes_with_its_polished_solution_and_uncertainty(tmp_path):
    """Re-running a finished alignment from its checkpoint (an acceptance plan judged again)
    returns the same polished poses and covariance without recomputing them."""
    from refsuite.alignment import align
    from refsuite.mc import simulate
    from refsuite.phantoms import PointSources

    bp = preset("thull_sim", binning="4mm")
    src = PointSources.random(4, fov_radius_mm=30.0, fov_half_length_mm=20.0, rng=np.random.default_rng(3))
    ev = simulate(bp, src, n_decays=150_000, seed=2)
    kw = dict(n_iter=4, batch_size=6000, max_support=30_000, progress=False, ctr_ps=250.0,
              checkpoint=tmp_path / "a.pt", resume=True)
    first = align(ev, bp, src, **kw)
    again = align(ev, bp, src, **kw)
    np.testing.assert_array_equal(first.translations_mm, again.translations_mm)
    np.testing.assert_array_equal(first.uncertainty.covariance, again.uncertainty.covariance)
    assert again.timing["polish"] == first.timing["polish"]
    assert again.timing["uncertainty_s"] < 0.5 * first.timing["uncertainty_s"]
