"""The fused CPU kernel of the alignment's expected counts against the torch path.

Same random draws, so the values and the gradients with respect to the block poses must agree to
rounding (float64: 1e-10 relative; float32 inputs are computed in float64 by the kernel, so the
torch path's float32 rounding sets the tolerance). A broken derivative (e.g. a sign of one term)
shows as a gradient mismatch of order one.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

pytest.importorskip("numba")

from refsuite.alignment import objective  # noqa: E402
from refsuite.geometry import euler_to_matrix  # noqa: E402
from refsuite.projectors import TOFParameters  # noqa: E402


def _problem(rng, *, tof, dtype, depth_mu=0.087, inverse_square=True, n=300, n_blocks=6, m=8, n_blobs=5):
    ang = np.linspace(0, 2 * np.pi, n_blocks, endpoint=False)
    pos = np.stack([60 * np.cos(ang), 60 * np.sin(ang), rng.uniform(-5, 5, n_blocks)], 1)
    axes = euler_to_matrix(torch.as_tensor(rng.normal(0, 0.3, (n_blocks, 3)))).numpy()
    T = lambda x: torch.as_tensor(np.asarray(x), dtype=dtype)  # noqa: E731
    problem = objective.Problem(
        lut_centres=T(rng.uniform(-4, 4, (m, 3))), lut_half=T(rng.uniform(0.5, 1.5, (m, 3))),
        centres=T(rng.uniform(-10, 10, (n_blobs, 3))), sigmas=T(rng.uniform(0.5, 3, n_blobs)),
        activities=T(rng.uniform(0.5, 2, n_blobs)), n_samples=5, depth_mu=depth_mu,
        inverse_square=inverse_square, length_ref=120.0,
        tof=TOFParameters(num_bins=21, bin_width_mm=10.0, sigma_mm=15.9) if tof else None)
    poses = (T(pos).requires_grad_(), T(axes).requires_grad_())
    cr = torch.as_tensor(rng.integers(0, n_blocks * m, (n, 2)))
    counts = rng.integers(0, 4, n)  # 0-3 candidate blobs per line, some lines none
    row = torch.as_tensor(np.repeat(np.arange(n), counts))
    blob = torch.as_tensor(rng.integers(0, n_blobs, int(counts.sum())))
    tof_bin = torch.as_tensor(rng.integers(-5, 6, n)) if tof else None
    return problem, poses, cr, row, blob, tof_bin


def _value_and_grads(problem, poses, cr, row, blob, tof_bin, weights, backend):
    problem.backend = backend
    gen = torch.Generator().manual_seed(3)
    mu = objective._expected(problem, cr, row, blob, tof_bin, poses, gen)
    gpos, gaxes = torch.autograd.grad((mu * weights).sum(), poses)
    return mu.detach(), gpos, gaxes


@pytest.mark.parametrize("tof", [False, True], ids=["non-TOF", "TOF"])
@pytest.mark.parametrize("depth_mu,inverse_square", [(0.087, True), (0.0, False)])
def test_kernel_equals_torch_path_values_and_pose_gradients_float64(tof, depth_mu, inverse_square):
    rng = np.random.default_rng(0)
    args = _problem(rng, tof=tof, dtype=torch.float64, depth_mu=depth_mu, inverse_square=inverse_square)
    w = torch.as_tensor(rng.normal(size=args[2].shape[0]))
    ref = _value_and_grads(*args, w, "torch")
    got = _value_and_grads(*args, w, "auto")
    assert ref[0].abs().max() > 0 and ref[1].abs().max() > 0
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12 * float(b.abs().max()))


def test_kernel_float32_matches_torch_path_to_float32_rounding():
    rng = np.random.default_rng(1)
    args = _problem(rng, tof=True, dtype=torch.float32)
    w = torch.as_tensor(rng.normal(size=args[2].shape[0]), dtype=torch.float32)
    ref = _value_and_grads(*args, w, "torch")
    got = _value_and_grads(*args, w, "auto")
    for a, b in zip(got, ref):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=2e-3, atol=1e-4 * float(b.abs().max()))


def test_kernel_pose_gradient_is_the_same_for_any_thread_count():
    from refsuite._threads import limited_threads

    rng = np.random.default_rng(2)
    args = _problem(rng, tof=True, dtype=torch.float64)
    w = torch.ones(args[2].shape[0], dtype=torch.float64)
    with limited_threads(1):
        one = _value_and_grads(*args, w, "auto")
    with limited_threads(2):
        two = _value_and_grads(*args, w, "auto")
    for a, b in zip(one, two):
        assert torch.equal(a, b)


@pytest.mark.parametrize("tof", [False, True], ids=["non-TOF", "TOF"])
def test_event_scores_from_the_kernel_equal_the_autograd_scores(tof):
    """The uncertainty's per-event scores (angles about the local axes, global translation) from
    the kernel's pose gradients equal those autograd gives through per-row pose changes."""
    from refsuite.alignment import uncertainty

    rng = np.random.default_rng(4)
    problem, poses, cr, row, blob, tof_bin = _problem(rng, tof=tof, dtype=torch.float64)
    n = cr.shape[0]
    counts = torch.bincount(row, minlength=n)
    ptr = torch.zeros(n + 1, dtype=torch.int64)
    ptr[1:] = torch.cumsum(counts, 0)
    problem.ev_cr, problem.ev_tof, problem.ev_cand_ptr, problem.ev_cand = cr, tof_bin, ptr, blob.int()
    problem.eff = torch.as_tensor(rng.uniform(0.5, 1.5, int(cr.max()) + 1))
    problem.ev_att = torch.as_tensor(rng.uniform(0.2, 1.0, n))
    idx = torch.arange(n)
    scores = {}
    for backend in ("torch", "auto"):
        problem.backend = backend
        scores[backend] = uncertainty.event_scores(problem, poses, idx, gen=torch.Generator().manual_seed(5), floor=1e-6)
    assert np.abs(scores["torch"][0]).max() > 0
    for a, b in zip(scores["auto"], scores["torch"]):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10 * np.abs(b).max())


@pytest.mark.benchmark(group="alignment")
@pytest.mark.parametrize("threads", [1, 2])
def test_alignment_batch_throughput(benchmark, record_figure, threads):
    """One stochastic-gradient batch of the alignment (expected counts of 1e5 TOF events with 1-3
    candidate blobs, 5 sampled lines each, and the pose gradient), float32 as :func:`align` runs:
    the fused kernel against the torch path on the same inputs in the same run. The goal
    (issue 30: the full-size alignment in half its time) needs the kernel >= 2x the torch path;
    the ratio judged here, at one thread, is the median of 5 interleaved (kernel, torch path) pairs,
    timed by the test itself so that ``--benchmark-disable`` judges the same. Single pairs on an
    idle machine ranged 1.3-2.4x (the torch path's time varies, the kernel's does not), so the
    floor is 1.25x: it catches the kernel not being used (ratio ~1), not a lost 10 %. At two
    threads the ratio (1.3-3.0 seen next to a niced job on the other core) is recorded, not judged."""
    from refsuite._threads import limited_threads

    rng = np.random.default_rng(6)
    args = _problem(rng, tof=True, dtype=torch.float32, n=100_000, n_blocks=24, m=500, n_blobs=10)
    w = torch.as_tensor(rng.normal(size=args[2].shape[0]), dtype=torch.float32)
    def timed(backend):
        c0, w0 = time.process_time(), time.perf_counter()
        out = _value_and_grads(*args, w, backend)
        return out, time.perf_counter() - w0, time.process_time() - c0

    with limited_threads(threads):
        _value_and_grads(*args, w, "auto")  # JIT cache load
        got = benchmark.pedantic(lambda: _value_and_grads(*args, w, "auto"), rounds=1, iterations=1, warmup_rounds=0)
        pairs = [(timed("auto"), timed("torch")) for _ in range(5)]
    ratios = sorted(t[1] / k[1] for k, t in pairs)
    ratio = ratios[len(ratios) // 2]  # median of interleaved pairs: robust to a busy machine
    wall, cpu = (float(np.median([k[i] for k, _ in pairs])) for i in (1, 2))
    ref, t_wall = pairs[0][1][0], float(np.median([t[1] for _, t in pairs]))
    torch.testing.assert_close(got[1], ref[1], rtol=2e-3, atol=1e-4 * float(ref[1].abs().max()))
    benchmark.extra_info.update(threads=threads, lines=args[2].shape[0], wall_s=wall, cpu_s=cpu, torch_wall_s=t_wall,
                                ratio_vs_torch=ratio)
    n = args[2].shape[0]
    record_figure(f"alignment batch ({n:.0e} TOF events, pose gradient), fused kernel, {threads} thread(s), "
                  f"{cpu:.3f} s CPU", n / wall, unit="events/s", reference=n / t_wall,
                  reference_label="torch path, same run")
    if threads == 1:  # two threads: recorded, not judged (a busy second core slows the kernel's threads only)
        assert ratio >= 1.25, f"fused kernel only {ratio:.2f}x the torch path (pairs: {np.round(ratios, 2).tolist()})"
