"""Statistical uncertainty of per-block alignment parameters from the Fisher information.

For the Poisson model of :mod:`refsuite.alignment.objective` with the global scale ``s``
profiled out, the Fisher information of the pose parameters ``theta`` is the Schur complement

    I = sum_b mu_b g_b g_b^T - N gbar gbar^T,     g_b = grad_theta log mu_b,
    gbar = (1/N) sum_b mu_b g_b,

(the information about ``(theta, log s)`` is ``sum_b mu_b (g_b, 1)(g_b, 1)^T``). Over the
measured events ``sum_e g_e g_e^T`` is an unbiased estimate of the first term and, at the ML
solution, the mean event score estimates ``gbar``, so ``I = N Cov_e(g_e)``: only the
per-event scores are needed, not derivatives of the normalisation. Each event's ``mu_e``
depends on the poses of its two blocks only; giving every event its own (zero) pose change of
those blocks (:func:`refsuite.alignment.objective._points`) makes one backward pass return all
per-event scores.

The covariance ``I^-1`` is the Cramer-Rao bound of an unbiased estimator at this statistics;
it does not contain the residual optimisation noise of a stochastic run, nor systematic model
errors (efficiencies, phantom placement). The validation study compares it with the scatter
of runs on an unchanged scanner.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["PoseUncertainty", "event_scores", "full_nll_and_gradient", "pose_fisher_information"]

_N_PAR = 6  # (r_x, r_y, r_z) rad about the block's local axes, (t_x, t_y, t_z) mm global


@dataclass
class PoseUncertainty:
    """Covariance of the per-block pose parameters of an alignment.

    Attributes
    ----------
    covariance : ndarray (6N, 6N)
        Inverse Fisher information; per block ``d`` the rows ``6d .. 6d+5`` are the angles
        (rad) about its local axes X, Y, Z and its global translation x, y, z (mm).
    n_events : int
        Coincidences the information was estimated from.
    n_samples : int
        Points drawn per crystal voxel for the scores.
    """

    covariance: np.ndarray
    n_events: int
    n_samples: int

    def _blocks(self, sl):
        n = self.covariance.shape[0] // _N_PAR
        idx = _N_PAR * np.arange(n)[:, None] + np.arange(sl.start, sl.stop)[None, :]
        return self.covariance[idx[:, :, None], idx[:, None, :]]

    @property
    def rotation_covariance_rad2(self) -> np.ndarray:
        """(N, 3, 3) covariance of each block's angles, rad^2."""
        return self._blocks(slice(0, 3))

    @property
    def translation_covariance_mm2(self) -> np.ndarray:
        """(N, 3, 3) covariance of each block's translation, mm^2."""
        return self._blocks(slice(3, 6))

    def rotation_sd_rad(self) -> np.ndarray:
        """(N,) largest principal standard deviation of each block's angles, rad.

        An upper bound of the standard deviation of the block's rotation about any axis, hence
        of each axis tilt to first order."""
        return np.sqrt(np.linalg.eigvalsh(self.rotation_covariance_rad2)[:, -1])

    def translation_sd_mm(self) -> np.ndarray:
        """(N,) largest principal standard deviation of each block's translation, mm (any direction)."""
        return np.sqrt(np.linalg.eigvalsh(self.translation_covariance_mm2)[:, -1])

    def to_dict(self) -> dict:
        return {"rotation_sd_rad": self.rotation_sd_rad().tolist(), "translation_sd_mm": self.translation_sd_mm().tolist(),
                "n_events": self.n_events, "n_samples": self.n_samples}


def event_scores(problem, poses, idx, *, gen, floor: float):
    """Per-event scores ``d log mu_e / d theta`` of the two blocks of events ``idx``.

    Returns two (n, 6) float64 arrays, for the blocks of single 1 and single 2: angles (rad)
    about the block's current local axes, then its global translation (mm), the order of
    :class:`PoseUncertainty`.
    """
    from .objective import event_expectations, event_pose_jacobians

    pos, axes = (p.detach() for p in poses)
    fast = event_pose_jacobians(problem, idx, (pos, axes), gen)
    if fast is not None:  # the fused kernel's pose gradients, the same scores without autograd
        return _scores_from_jacobians(*fast, problem.ev_cr[idx].cpu().numpy() // problem.lut_centres.shape[0],
                                      axes.double().cpu().numpy(), floor)
    d1 = torch.zeros((idx.numel(), _N_PAR), dtype=pos.dtype, device=pos.device, requires_grad=True)
    d2 = torch.zeros_like(d1, requires_grad=True)
    mu = event_expectations(problem, idx, (pos, axes), gen, deltas=(d1, d2))
    # each event's mu depends on its own rows of d1, d2 only: the gradient of the sum is per event
    torch.log(mu + floor).sum().backward()
    return d1.grad.double().cpu().numpy(), d2.grad.double().cpu().numpy()


@functools.cache
def _euler_generators() -> np.ndarray:
    """(3, 3, 3): ``D[k] = d euler_to_matrix(delta) / d delta_k`` at ``delta = 0``."""
    from refsuite.geometry import euler_to_matrix

    jac = torch.autograd.functional.jacobian(lambda d: euler_to_matrix(d[None])[0], torch.zeros(3, dtype=torch.float64))
    return jac.permute(2, 0, 1).numpy()


def _scores_from_jacobians(mu, jac, blocks, axes, floor):
    """Per-event scores (two (n, 6) arrays, as :func:`event_scores`) from the expected counts
    ``mu`` (n,) and their gradients ``jac`` (n, 2, 12) with respect to the position ``P`` and the
    axis rows ``A`` of each event's blocks ``blocks`` (n, 2); ``axes`` (N, 3, 3) the current axes.

    The pose change of :func:`~refsuite.alignment.objective._points` moves ``P`` by ``t`` and
    ``A`` to ``E(r)^T A``, so ``d mu / d t = d mu / d P`` and
    ``d mu / d r_k = sum_(q,c) (D_k^T A)_(qc) (d mu / d A)_(qc)`` with ``D_k`` of :func:`_euler_generators`.
    """
    d = _euler_generators()
    out = []
    for e in range(2):
        a = axes[blocks[:, e]]
        ja = jac[:, e, 3:].reshape(-1, 3, 3)
        rot = np.einsum("nrc,kqr,nqc->nk", ja, d, a)
        out.append(np.concatenate([rot, jac[:, e, :3]], 1) / (mu + floor)[:, None])
    return out[0], out[1]


def _event_chunk(problem, chunk: int) -> int:
    """Events per chunk: ``chunk``, fewer when events have many candidate blobs (a tube: ~60 per
    event on ``thull_sim``), so that a chunk holds at most ~``4 chunk`` (event, blob) rows; point
    sources (<= 4 candidates per event on average) keep ``chunk`` and hence their random stream."""
    mean_k = float(problem.ev_cand.shape[0]) / max(1, problem.n_events)
    return int(chunk) if mean_k <= 4 else max(1, int(4 * chunk / mean_k))


def pose_fisher_information(problem, poses, n_blocks: int, *, gen, floor: float, chunk: int = 100_000,
                            n_samples: int | None = None, event_subset=None) -> tuple[np.ndarray, int]:
    """Fisher information (6N, 6N) of per-block pose changes at ``poses`` from the events of ``problem``.

    Parameters
    ----------
    problem : refsuite.alignment.objective.Problem
    poses : (positions (N, 3), axes (N, 3, 3)) torch tensors
        The solution (no gradient needed).
    n_blocks : int
    gen : torch.Generator
        For the sample points.
    floor : float
        The event background of :func:`~refsuite.alignment.objective.batch_nll`.
    chunk : int
        Events per backward pass (memory bound).
    n_samples : int, optional
        Points per crystal voxel for the scores (default: ``problem.n_samples``).
    event_subset : int array, optional
        Indices of a random subset of the events: the information of all ``problem.n_events``
        events is estimated as ``n_events / len(event_subset)`` times the subset's (the events
        are i.i.d. draws, so this is unbiased; its relative noise falls as ``1/sqrt(subset)``).
        Default: all events.

    Notes
    -----
    The scores come from sampled lines, and their sampling noise would add to ``sum g g^T``
    and overstate the information. Each event's score is therefore computed twice from
    independent points and the information is built from the cross products
    ``sum g_a g_b^T`` (symmetrised), whose expectation holds no sampling noise.

    Returns
    -------
    information : ndarray (6N, 6N), float64
    n_events : int
    """
    saved = problem.n_samples
    if n_samples is not None:
        problem.n_samples = int(n_samples)
    pos, axes = (p.detach() for p in poses)
    dim = _N_PAR * n_blocks
    outer = np.zeros((dim, dim))
    total_a, total_b = np.zeros(dim), np.zeros(dim)
    n_all = problem.n_events
    subset = None if event_subset is None else torch.as_tensor(np.sort(np.asarray(event_subset, np.int64)),
                                                                device=pos.device)
    if subset is not None and (subset.numel() == 0 or int(subset[0]) < 0 or int(subset[-1]) >= n_all):
        raise ValueError(f"event_subset must hold event indices in [0, {n_all}), got {subset.numel()} indices")
    n_ev = n_all if subset is None else int(subset.numel())
    m = problem.lut_centres.shape[0]

    def dense(g1, g2, b1, b2):
        # per-event scores over all parameters: two 6-blocks are non-zero per row
        g = np.zeros((g1.shape[0], dim))
        rows = np.arange(g1.shape[0])[:, None]
        g[rows, _N_PAR * b1[:, None] + np.arange(_N_PAR)] += g1
        g[rows, _N_PAR * b2[:, None] + np.arange(_N_PAR)] += g2
        return g

    ev_chunk = _event_chunk(problem, chunk)
    try:
        for s in range(0, n_ev, ev_chunk):
            idx = torch.arange(s, min(s + ev_chunk, n_ev), device=pos.device)
            if subset is not None:
                idx = subset[idx]
            cr = problem.ev_cr[idx]
            b1 = (cr[:, 0] // m).cpu().numpy()
            b2 = (cr[:, 1] // m).cpu().numpy()
            # two independent sets of sample points: the cross products of their scores do not
            # contain the sampling noise of either
            g_a = dense(*event_scores(problem, (pos, axes), idx, gen=gen, floor=floor), b1, b2)
            g_b = dense(*event_scores(problem, (pos, axes), idx, gen=gen, floor=floor), b1, b2)
            outer += g_a.T @ g_b
            total_a += g_a.sum(0)
            total_b += g_b.sum(0)
    finally:
        problem.n_samples = saved
    info = (outer - np.outer(total_a, total_b) / n_ev) * (n_all / n_ev)
    return 0.5 * (info + info.T), n_all


def full_nll_and_gradient(problem, pose_fn, rotations, translations, *, seed: int, floor: float,
                          chunk: int = 100_000) -> tuple[float, np.ndarray]:
    """Profiled Poisson NLL over *all* events and the whole support, and its gradient.

    Parameters
    ----------
    problem : refsuite.alignment.objective.Problem
    pose_fn : callable(rotations, translations) -> (positions, axes)
        :meth:`refsuite.alignment.PoseModel.poses`.
    rotations, translations : torch tensors (G, 3)
        rad, mm.
    seed : int
        The sample points are drawn from a generator seeded with this at every call (common
        random numbers: two calls at different poses compare the same sampled lines).
    floor : float
        The event background of :func:`~refsuite.alignment.objective.batch_nll`.

    Returns
    -------
    nll : float
        Up to the constant of :func:`~refsuite.alignment.objective.batch_nll`.
    gradient : ndarray (G, 6)
        d NLL / d (rotations, translations), per parameter set.
    """
    from .objective import event_expectations, support_expectations

    dev = rotations.device
    gen = torch.Generator(device=dev).manual_seed(int(seed))

    def chunked_sum(n, term, chunk):
        value, grad = 0.0, np.zeros((rotations.shape[0], _N_PAR))
        for s in range(0, n, chunk):
            r = rotations.detach().clone().requires_grad_(True)
            t = translations.detach().clone().requires_grad_(True)
            v = term(torch.arange(s, min(s + chunk, n), device=dev), pose_fn(r, t))
            v.backward()
            value += float(v.detach())
            grad += np.concatenate([r.grad.double().cpu().numpy(), t.grad.double().cpu().numpy()], 1)
        return value, grad

    def support_term(idx, poses):
        return support_expectations(problem, idx, poses, gen).sum()

    def event_term(idx, poses):
        return torch.log(event_expectations(problem, idx, poses, gen) + floor).sum()

    n_ev = problem.n_events
    total, g_total = chunked_sum(problem.sup.shape[0], support_term, chunk)
    data, g_data = chunked_sum(n_ev, event_term, _event_chunk(problem, chunk))
    return n_ev * math.log(total) - data, n_ev * g_total / total - g_data
