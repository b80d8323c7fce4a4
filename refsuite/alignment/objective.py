"""The stochastic Poisson NLL of the alignment (Thull et al., secs. 2.3-2.4), in torch.

Expected counts of a bin ``b = (lambda1, lambda2, t)``, the model of Thull et al., sec. 2.3:

    mu_b = s E_lambda1 E_lambda2 a_b (1/K) sum_k int F(gamma_k(l)) K_TOF,t(l) dl,

``gamma_k`` the line between the k-th pair of points drawn inside the two crystal voxels
(``K = n_samples``, 5 in the paper), ``a_b = exp(-int mu)`` the attenuation of the phantom
material, ``E`` the crystal efficiencies, ``s`` a global scale.

Two refinements of the paper's model, both removing a measured radial (DOI) bias of the found
block positions (the validation study's note gives the numbers):

* depth sampling: the points are uniform in the voxel's planar coordinates but follow the
  first-interaction density ``exp(-mu_LYSO t)`` from the voxel's front face along the local
  (outward) DOI axis; uniform sampling places the modelled interactions ~``mu h^2 / 3`` (29 um
  for 2 mm voxels, 0.7 mm for an undivided 10 mm block) deeper than the physical ones;
* pair sensitivity: each sampled line is weighted by ``(L_ref / |p1 - p2|)^2``. For a point
  source at ``x0``, averaging the line integral over points uniform in the two voxel volumes gives
  ``int dOmega int int ds1 ds2 (s1 + s2)^2`` (``dp1 = s1^2 ds1 dOmega`` and the transverse
  delta at ``x0`` contributes ``((s1 + s2) / s1)^2``), whereas the probability of detection in
  the pair is ``int dOmega l1 l2 mu^2`` (``l`` the chords in the voxels): the weight restores it.
  ``L_ref`` (the blueprint's inner diameter) only keeps the numbers of order one. The Poisson NLL over all
bins, with the scale profiled out (``s = N / sum_b mu_b(s=1)``), is

    NLL = N log(sum_(lambda1,lambda2) mu~) - sum_events log mu~_event + N - N log N,

because the TOF kernel sums to one over the TOF bins (see :mod:`refsuite.alignment.support`).
Both sums are estimated on random batches: events for the second, entries of the support
(crystal pairs near the tracer, zero-count bins included) for the first.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from refsuite.geometry import euler_to_matrix
from refsuite.projectors import blob_line_integrals

__all__ = ["Problem", "batch_nll", "event_expectations", "event_pose_jacobians", "support_expectations"]


class Problem:
    """Tensors of one alignment problem on one device (built by :func:`refsuite.alignment.align`).

    Attributes (torch): ``lut_centres``/``lut_half`` (M, 3) mm; ``eff`` (N*M,) efficiencies;
    ``ev_cr`` (n_ev, 2) global crystal indices (block * M + cr) of singles 1 and 2; ``ev_tof``
    (n_ev,) signed TOF bins or None; ``ev_cand_ptr`` (n_ev + 1,) and ``ev_cand`` (int32) the
    candidate blobs of each event, nearest first, as a ragged array (event ``i``'s are
    ``ev_cand[ev_cand_ptr[i]:ev_cand_ptr[i + 1]]``, :func:`~refsuite.alignment.support.event_candidates`);
    ``ev_att`` (n_ev,); ``sup`` (n_sup, 3) support entries (cr1, cr2, blob); ``sup_att``;
    ``sup_weight`` (n_sup,) inverse inclusion probability of each support entry; blob ``centres``,
    ``sigmas``, ``activities``; ``tof`` (TOFParameters or None); ``n_samples``; ``depth_mu``
    (1/mm, 0: uniform depth sampling); ``inverse_square`` (bool) and ``length_ref`` (mm);
    optional ``backend``: ``"auto"`` (default, the fused CPU kernel where it applies) or
    ``"torch"`` (always the torch path).
    """

    def __init__(self, **kw):
        self.__dict__.update(kw)

    @property
    def n_events(self) -> int:
        return int(self.ev_cr.shape[0])


def _points(problem, cr, poses, gen, delta=None):
    """(n, S, 3) points drawn inside crystals ``cr`` (global index) under ``poses``.

    ``delta`` (n, 6), optional: a per-row pose change of the row's block, angles (rad) about its
    current local axes and a global translation (mm), as :class:`~refsuite.alignment.PoseModel`
    parametrises a block; its gradient is the per-event score (:mod:`.uncertainty`).
    """
    pos, axes = poses
    m = problem.lut_centres.shape[0]
    block, local_id = cr // m, cr % m
    u = torch.rand((cr.shape[0], problem.n_samples, 3), generator=gen, dtype=pos.dtype, device=pos.device)
    half = problem.lut_half[local_id][:, None, :]
    mu = problem.depth_mu
    if mu > 0:
        # depth (local y, outward): first-interaction density ~ exp(-mu t) from the voxel's front face
        q = -torch.expm1(-2 * mu * half[..., 1])
        t = -torch.log1p(-u[..., 1] * q) / mu
        u = torch.cat([u[..., :1], (t / (2 * half[..., 1]))[..., None], u[..., 2:]], -1)
    local = problem.lut_centres[local_id][:, None, :] + (2 * u - 1) * half
    p_rows, a_rows = pos[block], axes[block]
    if delta is not None:
        a_rows = euler_to_matrix(delta[:, :3]).transpose(-1, -2) @ a_rows
        p_rows = p_rows + delta[:, 3:]
    return p_rows[:, None, :] + torch.einsum("nsi,nij->nsj", local, a_rows)


def _line_integrals(problem, xs, xe, blob, tof_bin):
    """Per-line integrals of single blobs ``blob`` (n,) along xs->xe (n, 3) (TOF bins ``tof_bin`` or None).

    One vectorised call over the (line, blob) rows with each row's blob parameters gathered:
    bitwise the same values as a call per blob, without a Python loop over a tube's ~2000 blobs.
    """
    kw = {} if tof_bin is None else dict(tof=problem.tof, tof_bin=tof_bin, truncate=False)
    return blob_line_integrals(xs, xe, centres=problem.centres[blob], sigmas=problem.sigmas[blob],
                               activities=problem.activities[blob], paired=True, **kw)


@functools.cache
def _load_kernel():
    """:mod:`._kernel`, imported on first use; None when numba is missing (the torch path)."""
    try:
        from . import _kernel
    except ImportError:
        return None
    return _kernel


def _kernel_module(problem, poses, deltas):
    """:mod:`._kernel` when it can compute :func:`_expected` (CPU tensors, numba importable, no
    per-row pose changes, ``problem.backend`` not ``"torch"``), else None."""
    if getattr(problem, "backend", "auto") == "torch" or deltas[0] is not None or deltas[1] is not None \
            or poses[0].device.type != "cpu" or poses[0].dtype not in (torch.float32, torch.float64):
        return None
    return _load_kernel()


def _expected(problem, cr, row, blob, tof_bin, poses, gen, deltas=(None, None)):
    """Mean over sampled lines of the (TOF-)line integral for (line, blob) rows, summed per line.

    ``cr`` (n, 2) crystal pairs of the lines; ``row`` (R,) the line of each (line, blob) row and
    ``blob`` (R,) its blob, rows of one line adjacent; returns (n,) without efficiencies and
    attenuation. ``deltas``: per-line pose changes of the two blocks (see :func:`_points`).
    On the CPU the fused kernel of :mod:`._kernel` computes it from the same random draws (values
    and pose gradients equal to this torch path to rounding); otherwise the torch path below.
    """
    kernel = _kernel_module(problem, poses, deltas)
    if kernel is not None:
        return kernel.expected_counts(problem, cr, row, blob, tof_bin, poses, *_uniforms(problem, cr.shape[0], poses, gen))
    n = cr.shape[0]
    s = problem.n_samples
    a = _points(problem, cr[:, 0], poses, gen, deltas[0])
    b = _points(problem, cr[:, 1], poses, gen, deltas[1])
    xs = a[row].reshape(-1, 3)
    xe = b[row].reshape(-1, 3)
    bl_s = blob.repeat_interleave(s)
    tb = None if tof_bin is None else tof_bin[row].repeat_interleave(s)
    li = _line_integrals(problem, xs, xe, bl_s, tb)
    if problem.inverse_square:
        li = li * (problem.length_ref**2 / ((xe - xs) ** 2).sum(1))
    li = li.reshape(-1, s).mean(1)
    return torch.zeros(n, dtype=li.dtype, device=li.device).index_add(0, row, li)


def _uniforms(problem, n, poses, gen):
    """The uniforms (n, S, 3) of :func:`_points` for the two crystals of n lines, drawn in its order."""
    shape = (n, problem.n_samples, 3)
    return (torch.rand(shape, generator=gen, dtype=poses[0].dtype, device=poses[0].device),
            torch.rand(shape, generator=gen, dtype=poses[0].dtype, device=poses[0].device))


def _candidate_rows(problem, idx):
    """(row, blob) of events ``idx``: each event's candidate blobs from the ragged array, in order."""
    start = problem.ev_cand_ptr[idx]
    count = problem.ev_cand_ptr[idx + 1] - start
    row = torch.repeat_interleave(torch.arange(idx.shape[0], device=idx.device), count)
    first = torch.cumsum(count, 0) - count  # position of each event's first row
    pos = torch.repeat_interleave(start - first, count) + torch.arange(row.shape[0], device=idx.device)
    return row, problem.ev_cand[pos].long()


def event_expectations(problem, idx, poses, gen, deltas=(None, None)):
    """Expected counts (up to the global scale) of events ``idx``: line integrals times
    efficiencies and attenuation, (n,). ``deltas``: per-row pose changes (see :func:`_points`)."""
    cr = problem.ev_cr[idx]
    tb = None if problem.ev_tof is None else problem.ev_tof[idx]
    mu = _expected(problem, cr, *_candidate_rows(problem, idx), tb, poses, gen, deltas)
    return mu * problem.eff[cr[:, 0]] * problem.eff[cr[:, 1]] * problem.ev_att[idx]


def event_pose_jacobians(problem, idx, poses, gen):
    """Expected counts of events ``idx`` (as :func:`event_expectations`) and their gradients with
    respect to the position and axes of each event's two blocks, from the fused kernel:
    ``(mu (n,), jac (n, 2, 12))`` float64 numpy (layout of
    :func:`refsuite.alignment._kernel.expected_with_jacobian`); None where the kernel cannot run
    (then :func:`event_expectations` with per-row pose changes gives the same by autograd)."""
    kernel = _kernel_module(problem, poses, (None, None))
    if kernel is None:
        return None
    cr = problem.ev_cr[idx]
    tb = None if problem.ev_tof is None else problem.ev_tof[idx]
    mu, jac = kernel.expected_with_jacobian(problem, cr, *_candidate_rows(problem, idx), tb, poses,
                                            *_uniforms(problem, cr.shape[0], poses, gen))
    f = (problem.eff[cr[:, 0]] * problem.eff[cr[:, 1]] * problem.ev_att[idx]).double().numpy()
    return mu * f, jac * f[:, None, None]


def support_expectations(problem, idx, poses, gen):
    """Non-TOF expected counts of support entries ``idx``, weighted by their inverse inclusion
    probability (n,): summed over all entries they estimate the normalisation."""
    sup = problem.sup[idx]
    mu = _expected(problem, sup[:, :2], torch.arange(sup.shape[0], device=sup.device), sup[:, 2], None, poses, gen)
    return mu * problem.eff[sup[:, 0]] * problem.eff[sup[:, 1]] * problem.sup_att[idx] * problem.sup_weight[idx]


def batch_nll(problem, poses, *, ev_idx, sup_idx, gen, floor):
    """Estimate of the profiled Poisson NLL on one batch (differentiable in ``poses``).

    Parameters
    ----------
    problem : Problem
    poses : (positions (N, 3), axes (N, 3, 3)) torch tensors
    ev_idx, sup_idx : LongTensor
        Rows of the events and of the support used in this batch.
    gen : torch.Generator
        For the sample points inside the crystals.
    floor : float
        Added to every event's expectation (a tiny constant background, so that an event
        whose sampled lines all miss the tracer does not give ``log 0``).

    Returns
    -------
    nll : scalar tensor
    parts : dict of floats (``log_sum_mu``, ``mean_log_mu``)
    """
    n_ev = problem.n_events
    data = torch.log(event_expectations(problem, ev_idx, poses, gen) + floor).mean()
    total = support_expectations(problem, sup_idx, poses, gen).sum() * (problem.sup.shape[0] / sup_idx.shape[0])
    log_total = torch.log(total)
    nll = n_ev * (log_total - data) + n_ev - n_ev * math.log(n_ev)
    return nll, {"log_sum_mu": float(log_total.detach()), "mean_log_mu": float(data.detach())}


def attenuation_factors(phantom, a, b):
    """``exp(-mu L)`` of the phantom material along the lines a->b (n, 3) mm (numpy, (n,))."""
    mu = float(getattr(phantom, "mu_per_mm", 0.0))
    if mu <= 0:
        return np.ones(a.shape[0])
    d = b - a
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    out = np.empty(a.shape[0])
    step = 200_000
    for s in range(0, a.shape[0], step):
        out[s:s + step] = np.exp(-mu * phantom.attenuation_length(a[s:s + step], d[s:s + step]))
    return out
