"""``align``: maximum-likelihood detector alignment from list-mode data (Thull et al., sec. 2.4).

Adam on the per-block (or per-group) rotations and translations, minimising the Poisson NLL of
:mod:`refsuite.alignment.objective` on random batches; checkpoints, resume, a progress bar with
the current NLL, and a clean stop on a non-finite NLL or parameter.

Learning rates are the Adam step sizes in the parameters' own units: ``lr_translation_mm`` (mm)
and ``lr_rotation_rad`` (rad). The paper uses 0.1 (R) and 1 (T) without stating units; on this
problem (1 mm / 1 deg misalignments, targets of 50 um / 0.25 deg) steps of 0.1 mm and 2 mrad,
decayed on a cosine to ``lr_final_fraction`` of their value, converge within 200 iterations.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from refsuite._checks import check_in_range, check_positive
from refsuite.devices import torch_device
from refsuite.events import CRYSTAL_ID_COLUMNS, canonical_pairs, canonical_row_order, crystal_ids, tof_offsets_mm
from refsuite.geometry import GroupMotion, Scanner
from refsuite.io.atomic import atomic_path
from refsuite.projectors import TOFParameters

from .model import blob_model
from .objective import Problem, attenuation_factors, batch_nll
from .poses import PoseModel
from .uncertainty import PoseUncertainty, full_nll_and_gradient, pose_fisher_information
from .support import event_candidates, pair_support

__all__ = ["align", "AlignmentResult", "AlignmentDiverged", "TOFMode", "prepare_events"]


class TOFMode(enum.Enum):
    """Where the TOF kernel of :func:`align` comes from when no :class:`TOFParameters` is given."""

    NONE = "none"  #: non-TOF likelihood
    FROM_EVENTS = "from_events"  #: CTR from ``events.attrs["ctr_ps"]`` (or ``ctr_ps=``), bins of ``tof_bin_ps``


@dataclass
class AlignmentResult:
    """Outcome of :func:`align`.

    Attributes
    ----------
    scanner : Scanner
        The aligned scanner (blueprint transformed by the found poses).
    rotations_rad, translations_mm : ndarray (N, 3)
        Per-block angles about the blueprint block axes (rad) and global translations (mm);
        ``blueprint.transform(rotations_rad, translations_mm)`` reproduces ``scanner``.
    parameters : dict
        The learnt parameters themselves (per block or per group), ``rotations_rad`` and
        ``translations_mm`` of shape (G, 3).
    nll_history : ndarray (n_iter,)
        Batch estimate of the profiled Poisson NLL at each iteration.
    timing : dict
        ``setup_s``, ``iterations_s``, ``per_iteration_s``, ``total_s`` (this call; resumed
        iterations are not re-timed), ``batch_events``, ``batch_support``.
    info : dict
        Sizes (events, support entries, blobs), TOF parameters, options.
    uncertainty : PoseUncertainty or None
        Covariance of the per-block parameters from the Fisher information of the events
        (:mod:`refsuite.alignment.uncertainty`); ``None`` for group-shared parameters or
        ``uncertainty=False``.
    """

    scanner: Scanner
    rotations_rad: np.ndarray
    translations_mm: np.ndarray
    parameters: dict
    nll_history: np.ndarray
    timing: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    uncertainty: PoseUncertainty | None = None


class AlignmentDiverged(RuntimeError):
    """The NLL or a parameter became non-finite; ``result`` holds the last good state and the
    checkpoint file (if any) was left at the last good checkpoint."""

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


def prepare_events(events, scanner: Scanner):
    """Validated global crystal indices (n, 2) of list-mode events on ``scanner``.

    Raises ``ValueError`` when a column is missing, or events do not map to the scanner's crystals
    (block or crystal id out of range, both singles in one block).
    """
    b1, c1, b2, c2 = crystal_ids(events, scanner).T
    n_c = scanner.n_crystals
    same = b1 == b2
    if same.any():
        raise ValueError(f"events do not map to the scanner's crystals: {int(same.sum())} coincidences have both "
                         "singles in the same block")
    if len(b1) == 0:
        raise ValueError("events must hold at least one coincidence, got 0")
    return np.stack([b1 * n_c + c1, b2 * n_c + c2], 1)


def _fov(scanner):
    cc = scanner.crystal_centres().reshape(-1, 3)
    return float(np.hypot(cc[:, 0], cc[:, 1]).min()), float(cc[:, 2].min()), float(cc[:, 2].max())


def _tensor_tree(obj):
    """``obj`` with numpy arrays as tensors and numpy scalars as Python numbers (for a checkpoint
    that ``torch.load(weights_only=True)`` reads: no pickled code runs when it is loaded)."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _tensor_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_tensor_tree(v) for v in obj)
    return obj


def _final_from_checkpoint(final):
    """The ``final`` entry of a checkpoint as the solver keeps it: poses as tensors, the rest numpy."""
    if final is None:
        return None

    def numpy_tree(obj):
        if isinstance(obj, torch.Tensor):
            return obj.cpu().numpy()
        if isinstance(obj, dict):
            return {k: numpy_tree(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(numpy_tree(v) for v in obj)
        return obj

    return {k: v if k in ("rotations", "translations") else numpy_tree(v) for k, v in final.items()}


def _fingerprint(**items) -> str:
    h = hashlib.sha256()
    for k in sorted(items):
        v = items[k]
        h.update(k.encode())
        h.update(np.ascontiguousarray(v).tobytes() if isinstance(v, np.ndarray) else json.dumps(v, default=str).encode())
    return h.hexdigest()


def align(events, blueprint: Scanner, phantom, *, efficiencies=None, tof=TOFMode.FROM_EVENTS, groups=None,
          group_motion=GroupMotion.RIGID, n_iter: int = 200, batch_size: int = 1_000_000, n_samples: int = 5,
          lr_translation_mm: float = 0.1, lr_rotation_rad: float = 2e-3, lr_final_fraction: float = 0.02,
          model_sigma_mm: float = 0.25, support_radius_mm: float = 4.0, max_support: int = 2_000_000,
          max_support_blobs: int = 64, tof_bin_ps: float = 25.0, ctr_ps: float | None = None, attenuation: bool = True,
          depth_sampling: bool = True, pair_sensitivity: bool = True, uncertainty: bool = True,
          uncertainty_samples: int = 10, information_events: int = 1_000_000, polish_steps: int = 2, checkpoint=None, checkpoint_every: int = 10,
          resume: bool = False, progress: bool = True,
          callback=None, device=None, seed: int = 0, dtype=torch.float32) -> AlignmentResult:
    """Maximum-likelihood alignment of detector blocks from list-mode data (Thull et al.).

    Parameters
    ----------
    events : mapping of columns
        Coincidences with ``BlockID1/2``, ``CrystalID1/2`` (indices of ``blueprint``'s blocks and
        LUT) and, for TOF, ``GlobalTime1/2`` (ns) (GATE 10 names, as :mod:`refsuite.io` reads).
    blueprint : Scanner
        Design geometry; also the initialisation (Thull et al., sec. 2.8).
    phantom : PointSources or Tube
        Known tracer distribution F (its placement may be off by a global rigid motion: the
        blocks then follow it, which Procrustes evaluation removes).
    efficiencies : ndarray (N, M), optional
        Crystal-voxel efficiencies, e.g. :func:`refsuite.alignment.fan_sum_efficiencies`;
        default 1.
    tof : TOFParameters or TOFMode
        TOF kernel; ``TOFMode.FROM_EVENTS`` uses ``ctr_ps`` or ``events.attrs["ctr_ps"]``.
    groups : None, True or int array (N,)
        Shared parameters: ``True`` = ``blueprint.groups``; ``None``: one set per block.
    group_motion : GroupMotion
        How a group's shared parameters move its blocks (:mod:`refsuite.alignment.poses`).
    n_iter : int
        Adam iterations (paper: 200).
    batch_size : int
        Bins per iteration: half events (all of them if fewer), half support entries.
    n_samples : int
        Points drawn per crystal voxel and bin (paper: 5).
    lr_translation_mm, lr_rotation_rad, lr_final_fraction : float
        Adam step sizes (mm, rad) and the cosine-decayed final fraction.
    model_sigma_mm : float
        Blob smoothing of the tracer model (:func:`refsuite.alignment.blob_model`), mm. It
        biases the radial (DOI) block positions outwards roughly as ``0.37 mm^-1 sigma^2``,
        while too small a blob makes the 5-line estimates noisy; 0.25 mm is the optimum found
        on ``thull_sim`` (docs/studies/alignment.md).
    support_radius_mm : float
        Crystal pairs whose blueprint line passes within this distance of a blob enter the
        normalisation (:func:`refsuite.alignment.support.pair_support`), mm.
    max_support : int
        Support entries kept in memory (a weighted random subset per blob above this).
    max_support_blobs : int
        Blobs the support is enumerated for. A tube is hundreds of blobs (one per
        ``model_sigma_mm`` of its length) and enumerating each blob's crystal pairs costs ~3 s on
        ``thull_sim``, so above this count a systematic sample along the blob order (the tube's
        centre line) stands for all, each entry weighted by ``n_blobs / n_sampled``: an unbiased
        estimate of the normalisation sum (the events' own expectations use every blob).
    tof_bin_ps : float
        TOF bin width, ps.
    ctr_ps : float, optional
        Coincidence time resolution FWHM, ps (overrides ``events.attrs``).
    attenuation : bool
        Include ``exp(-mu L)`` of the phantom material (computed once on the blueprint lines).
    depth_sampling : bool
        Sample depths in a voxel from the first-interaction density ``exp(-mu t)`` of the
        scanner's crystal material rather than uniformly (:mod:`refsuite.alignment.objective`).
    pair_sensitivity : bool
        Weight every sampled line by ``1 / |p1 - p2|^2``, which turns the mean line integral
        into the detection probability of the crystal pair (:mod:`refsuite.alignment.objective`).
    uncertainty : bool
        Estimate the covariance of the per-block parameters at the solution from the Fisher
        information of the events (:mod:`refsuite.alignment.uncertainty`; one pass over the
        events with ``uncertainty_samples`` points per crystal voxel). Per-block fits only.
    uncertainty_samples : int
        Points per crystal voxel for the per-event scores of the Fisher information.
    information_events : int
        The Fisher information (for the uncertainty and the polish's metric) is estimated from
        a random subset of at most this many events, scaled to all events (relative noise
        ~``1/sqrt(events per block)``, under 1 % at 1e6 events on 24 blocks), a fifth of the
        score passes over 5e6 events.
    polish_steps : int
        Fisher-scoring steps on all events and the whole support after the stochastic phase
        (per-block fits; 0: none). The stochastic phase stops where the noise of its last
        batches froze it, above the statistical floor; the polish steps reach it.
    checkpoint : path, optional
        File written (atomically) every ``checkpoint_every`` iterations and at the end.
    resume : bool
        Continue from ``checkpoint`` if it exists (same data and options, else ``ValueError``).
    progress : bool
        tqdm bar with the current NLL.
    callback : callable(iteration, nll, rotations, translations), optional
        Called after every iteration with numpy copies of the parameters (G, 3); it may raise
        (e.g. ``KeyboardInterrupt``) to stop, the last checkpoint staying valid.
    device : str or torch.device, optional
        Default CUDA when available.
    seed : int
        Batches and crystal samples.
    dtype : torch dtype
        Of poses and line integrals. float32 (default) is about twice as fast as float64 and
        ample here: 1e-7 relative of 100 mm is 0.01 um, and the blob distance ``d^2 = |r|^2 -
        s0^2`` loses ~1e-3 mm^2 to cancellation, i.e. ~1e-3 of the exponent for sigma = 1 mm.

    Returns
    -------
    AlignmentResult

    Raises
    ------
    AlignmentDiverged
        When the NLL or a parameter becomes non-finite (its ``result`` is the last good state).

    Notes
    -----
    A checkpoint holds a state whose NLL has been evaluated finite (parameters, Adam and
    scheduler state, random streams, NLL history), so resuming reproduces an uninterrupted run
    exactly and a run that diverges leaves the last good checkpoint in place.
    """
    t_start = time.perf_counter()
    if not isinstance(blueprint, Scanner):
        raise TypeError(f"blueprint must be a refsuite.geometry.Scanner, got {type(blueprint).__name__}")
    if int(polish_steps) != polish_steps or polish_steps < 0:
        raise ValueError(f"polish_steps must be an integer >= 0, got {polish_steps!r}")
    for name, v in (("n_iter", n_iter), ("batch_size", batch_size), ("n_samples", n_samples),
                    ("uncertainty_samples", uncertainty_samples), ("information_events", information_events),
                    ("checkpoint_every", checkpoint_every), ("max_support", max_support),
                    ("max_support_blobs", max_support_blobs)):
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    for name, v, unit in (("lr_translation_mm", lr_translation_mm, "mm"), ("lr_rotation_rad", lr_rotation_rad, "rad"),
                          ("model_sigma_mm", model_sigma_mm, "mm"), ("support_radius_mm", support_radius_mm, "mm"),
                          ("tof_bin_ps", tof_bin_ps, "ps")):
        check_positive(name, v, unit=unit)
    check_in_range("lr_final_fraction", lr_final_fraction, 0.0, 1.0, low_inclusive=False)
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    dev = torch_device(device, purpose="align")
    ev_cr, tof_par, ev_tof = _event_arrays(events, blueprint, tof, ctr_ps, tof_bin_ps)
    model = blob_model(phantom, sigma_mm=model_sigma_mm)
    r_fov, z_lo, z_hi = _fov(blueprint)
    c = model.centres
    outside = (np.hypot(c[:, 0], c[:, 1]) >= r_fov) | (c[:, 2] < z_lo) | (c[:, 2] > z_hi)
    if outside.any():
        raise ValueError(f"phantom lies outside the scanner's field of view: {int(outside.sum())} of {len(c)} "
                         f"tracer points beyond r = {r_fov:.1f} mm or z in [{z_lo:.1f}, {z_hi:.1f}] mm "
                         f"(first at {c[outside][0].round(2).tolist()} mm)")
    eff = np.ones((blueprint.n_blocks, blueprint.n_crystals)) if efficiencies is None else np.asarray(efficiencies, float)
    if eff.shape != (blueprint.n_blocks, blueprint.n_crystals):
        raise ValueError(f"efficiencies must have shape {(blueprint.n_blocks, blueprint.n_crystals)}, got {eff.shape}")
    if not np.all(np.isfinite(eff)) or np.any(eff < 0):
        raise ValueError("efficiencies must be finite and >= 0")
    dead = (eff.reshape(-1)[ev_cr] == 0).any(1)
    if dead.any():
        raise ValueError(f"{int(dead.sum())} events were recorded by crystals whose efficiency is 0; the efficiency "
                         "acquisition is too short for this binning (fan sums need many counts per crystal voxel)")
    groups_arr = None if groups is None else (blueprint.groups if groups is True else np.asarray(groups))

    # ---- static problem: candidates of every event, support of the normalisation
    cc = blueprint.crystal_centres().reshape(-1, 3)
    a, b = cc[ev_cr[:, 0]], cc[ev_cr[:, 1]]
    cand_ptr, cand = event_candidates(a, b, model.centres, support_radius_mm)
    has = np.diff(cand_ptr) > 0
    if has.mean() < 0.5:
        raise ValueError(f"only {100 * has.mean():.1f} % of the events pass within {support_radius_mm} mm of the "
                         "phantom on the blueprint: wrong phantom, or a misplacement larger than the support radius")
    rng = np.random.default_rng(seed)
    sup_blobs = np.arange(model.n_blobs)
    if model.n_blobs > int(max_support_blobs):
        # systematic sample, random start: stratified along the tube's centre line
        sup_blobs = np.floor((np.arange(int(max_support_blobs)) + rng.random()) * model.n_blobs
                             / int(max_support_blobs)).astype(np.int64)
    sup, sup_w = _support(blueprint, model.centres[sup_blobs], support_radius_mm,
                          max(1, max_support // sup_blobs.size), rng)
    sup = np.column_stack([sup[:, :2], sup_blobs[sup[:, 2]]])
    sup_w = sup_w * (model.n_blobs / sup_blobs.size)
    att_ev = attenuation_factors(phantom, a, b) if attenuation else np.ones(len(a))
    att_sup = attenuation_factors(phantom, cc[sup[:, 0]], cc[sup[:, 1]]) if attenuation else np.ones(len(sup))
    T = lambda x, dt=dtype: torch.as_tensor(np.array(x), dtype=dt, device=dev)  # noqa: E731
    problem = Problem(
        lut_centres=T(blueprint.crystals.centres), lut_half=T(blueprint.crystals.half_sizes),
        eff=T(eff.reshape(-1)), ev_cr=T(ev_cr, torch.long), ev_tof=None if ev_tof is None else T(ev_tof),
        ev_cand_ptr=T(cand_ptr, torch.long), ev_cand=torch.from_numpy(cand).to(dev), ev_att=T(att_ev), sup=T(sup, torch.long), sup_att=T(att_sup),
        sup_weight=T(sup_w), centres=T(model.centres), sigmas=T(model.sigmas), activities=T(model.activities),
        tof=tof_par, n_samples=int(n_samples), depth_mu=blueprint.mu_per_mm if depth_sampling else 0.0,
        inverse_square=bool(pair_sensitivity), length_ref=2.0 * r_fov)
    poses = PoseModel(blueprint, groups_arr, group_motion, dtype=dtype, device=dev)
    rot = torch.zeros((poses.n_params, 3), dtype=dtype, device=dev, requires_grad=True)
    trans = torch.zeros((poses.n_params, 3), dtype=dtype, device=dev, requires_grad=True)
    opt = torch.optim.Adam([{"params": [rot], "lr": lr_rotation_rad}, {"params": [trans], "lr": lr_translation_mm}])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: lr_final_fraction + (1 - lr_final_fraction) * 0.5 * (
        1 + math.cos(math.pi * min(k, n_iter) / n_iter)))
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    n_ev = problem.n_events
    b_ev = min(n_ev, max(1, batch_size // 2))
    b_sup = min(sup.shape[0], max(1, batch_size - b_ev))
    fp = _fingerprint(ev_cr=ev_cr, ev_tof=np.zeros(0) if ev_tof is None else ev_tof, pos=blueprint.positions,
                      axes=blueprint.axes, blobs=model.centres, sig=model.sigmas, eff=eff,
                      opts=[groups_arr is None or np.asarray(groups_arr).tolist(), GroupMotion(group_motion).value,
                            n_iter, batch_size, n_samples, lr_translation_mm, lr_rotation_rad, lr_final_fraction,
                            support_radius_mm, max_support, int(max_support_blobs), None if tof_par is None else repr(tof_par), seed,
                            model_sigma_mm, bool(depth_sampling), bool(pair_sensitivity), int(polish_steps),
                            int(uncertainty_samples), int(information_events)])
    history: list[float] = []
    start_it = 0
    resumed_final = None  # the polished solution and its information, once a run has completed
    ckpt = None if checkpoint is None else Path(checkpoint)
    if resume and ckpt.exists():
        state = load_checkpoint(ckpt, dev)
        if state.get("fingerprint") != fp:
            raise ValueError(f"checkpoint {ckpt} belongs to other data or options; remove it or resume=False")
        with torch.no_grad():
            rot.copy_(state["rotations"])
            trans.copy_(state["translations"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"].cpu() if dev.type == "cpu" else state["generator"])
        rng.bit_generator.state = state["numpy_rng"]
        history = list(state["nll_history"])
        start_it = int(state["iteration"])
        resumed_final = _final_from_checkpoint(state.get("final"))

    def save_state(it, rng_state, gen_state, final=None):
        if ckpt is None:
            return
        state = {"fingerprint": fp, "iteration": it, "rotations": rot.detach().clone(),
                 "translations": trans.detach().clone(), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict(), "generator": gen_state, "numpy_rng": rng_state,
                 "nll_history": list(history), "final": _tensor_tree(final)}
        with atomic_path(ckpt, suffix=".pt") as tmp:
            torch.save(state, tmp)

    good = (rot.detach().clone(), trans.detach().clone())
    setup_s = time.perf_counter() - t_start
    # a constant background ~1e-12 of the densest blob's peak line integral: keeps log finite for an
    # event whose sampled lines all miss the tracer, negligible otherwise
    floor = 1e-12 * float(np.max(model.activities / (2 * np.pi * model.sigmas**2)))
    t_it = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_iter, initial=start_it, desc="refsuite align", unit="it")
    failure = None
    try:
        for it in range(start_it, n_iter):
            rng_state, gen_state = rng.bit_generator.state, gen.get_state()
            ev_idx = T(rng.choice(n_ev, b_ev, replace=False) if b_ev < n_ev else np.arange(n_ev), torch.long)
            sup_idx = T(rng.choice(sup.shape[0], b_sup, replace=False), torch.long)
            opt.zero_grad(set_to_none=True)
            nll, _ = batch_nll(problem, poses.poses(rot, trans), ev_idx=ev_idx, sup_idx=sup_idx, gen=gen, floor=floor)
            value = float(nll.detach())
            if not math.isfinite(value):
                failure = f"the NLL became {value} at iteration {it + 1}"
                break
            # the current parameters gave a finite NLL: they are the last good state, and the
            # checkpoint is written only for such validated states
            good = (rot.detach().clone(), trans.detach().clone())
            if it > start_it and it % checkpoint_every == 0:
                save_state(it, rng_state, gen_state)
            nll.backward()
            opt.step()
            sched.step()
            if not (torch.isfinite(rot).all() and torch.isfinite(trans).all()):
                failure = f"the alignment parameters became non-finite at iteration {it + 1}"
                break
            history.append(value)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(nll=f"{value:.6g}")
            if callback is not None:
                callback(it + 1, value, rot.detach().cpu().numpy().copy(), trans.detach().cpu().numpy().copy())
    finally:
        if bar is not None:
            bar.close()
    if failure is None:
        good = (rot.detach().clone(), trans.detach().clone())
        save_state(n_iter, rng.bit_generator.state, gen.get_state())
    iter_s = time.perf_counter() - t_it
    n_done = len(history) - start_it
    cov, polish = None, []
    t_unc = time.perf_counter()
    if failure is None and groups_arr is None and (uncertainty or polish_steps):
        if resumed_final is not None and start_it == n_iter:
            f = resumed_final
            good, info, n_used, polish = (f["rotations"].to(dev), f["translations"].to(dev)), f["information"], \
                f["n_events"], f["polish"]
        else:
            gen_f = torch.Generator(device=dev).manual_seed(int(seed) + 7919)  # the run's streams stay untouched
            subset = None
            if n_ev > int(information_events):
                subset = np.random.default_rng([int(seed), 7919]).choice(n_ev, int(information_events), replace=False)
            info, n_used = pose_fisher_information(problem, poses.poses(*good), blueprint.n_blocks, gen=gen_f,
                                                   floor=floor, n_samples=uncertainty_samples, event_subset=subset)
            if polish_steps:
                good, polish = _polish(problem, poses, good, info, polish_steps, seed, floor)
            save_state(n_iter, rng.bit_generator.state, gen.get_state(),
                       final={"rotations": good[0].cpu(), "translations": good[1].cpu(), "information": info,
                              "n_events": n_used, "polish": polish})
        if uncertainty:
            cov = _covariance(info, n_used, uncertainty_samples)
    timing = {"setup_s": setup_s, "iterations_s": iter_s, "per_iteration_s": iter_s / max(1, n_done),
              "uncertainty_s": time.perf_counter() - t_unc, "polish": polish, "total_s": time.perf_counter() - t_start,
              "batch_events": b_ev, "batch_support": b_sup}
    info = {"n_events": n_ev, "n_support": int(sup.shape[0]), "support_entries_represented": float(sup_w.sum()), "n_blobs": model.n_blobs,
            "tof": None if tof_par is None else {"sigma_mm": tof_par.sigma_mm, "bin_width_mm": tof_par.bin_width_mm},
            "events_without_candidate": int((~has).sum()), "device": str(dev), "iterations_done": len(history)}
    result = _result(blueprint, poses, good[0], good[1], history, timing, info)
    result.uncertainty = cov
    if failure is not None:
        where = f"; checkpoint {ckpt} holds the last good state" if ckpt is not None else ""
        raise AlignmentDiverged(f"alignment stopped: {failure}{where}", result)
    return result


def _result(blueprint, poses, rot, trans, history, timing, info):
    r_blk, t_blk = poses.block_parameters(rot, trans)
    scanner = replace(blueprint.transform(r_blk, t_blk), name=f"{blueprint.name} (aligned)")
    return AlignmentResult(scanner, r_blk, t_blk, {"rotations_rad": rot.cpu().numpy(),
                                                   "translations_mm": trans.cpu().numpy()},
                           np.asarray(history, float), timing, info)


#: the last few supports (pair_support is most of the set-up: ~30 s for thull_sim 2 mm and 10
#: blobs); repeated alignments on one blueprint and phantom (acceptance baselines) reuse them
_SUPPORT_CACHE: dict = {}
_SUPPORT_CACHE_SIZE = 2


def load_checkpoint(path, device="cpu") -> dict:
    """The state saved in an alignment checkpoint ``path``; ValueError naming the file if it is not one
    (truncated by a killed run, another kind of file). Loaded with ``weights_only=True``: no
    pickled code runs."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 (torch raises RuntimeError, EOFError, UnpicklingError, OSError...)
        raise ValueError(f"checkpoint {path}: not a readable alignment checkpoint ({type(exc).__name__}); "
                         "remove it to start afresh") from None
    if not isinstance(state, dict) or "fingerprint" not in state:
        raise ValueError(f"checkpoint {path}: not an alignment checkpoint (no fingerprint); remove it to start afresh")
    return state


def _support(blueprint, centres, radius_mm, max_per_blob, rng):
    """:func:`pair_support` of the blueprint, memoised on every input including the random state
    (a hit also leaves ``rng`` in the state the call would have left it)."""
    key = _fingerprint(pos=blueprint.positions, axes=blueprint.axes, lut=blueprint.crystals.centres, blobs=centres,
                       opts=[float(radius_mm), int(max_per_blob)], state=rng.bit_generator.state)
    hit = _SUPPORT_CACHE.get(key)
    if hit is None:
        sup, w = pair_support(blueprint.positions, blueprint.axes, blueprint.crystals.centres, centres, radius_mm,
                              max_per_blob=max_per_blob, rng=rng)
        hit = (sup, w, rng.bit_generator.state)
        while len(_SUPPORT_CACHE) >= _SUPPORT_CACHE_SIZE:
            _SUPPORT_CACHE.pop(next(iter(_SUPPORT_CACHE)))
        _SUPPORT_CACHE[key] = hit
    rng.bit_generator.state = hit[2]
    return hit[0], hit[1]


def _covariance(info, n_events, n_samples):
    """:class:`PoseUncertainty` from the Fisher information (6N, 6N)."""
    # a block without events leaves the information singular: no finite covariance then
    w = np.linalg.eigvalsh(info)
    if w[0] <= 1e-12 * max(w[-1], 1e-300):
        cov = np.full_like(info, np.inf)
    else:
        cov = np.linalg.inv(info)
        cov = 0.5 * (cov + cov.T)
    return PoseUncertainty(cov, n_events, int(n_samples))


def _polish(problem, poses, good, info, n_steps, seed, floor):
    """Fisher-scoring steps ``theta -= I^-1 grad NLL`` on all events and the whole support.

    The stochastic phase ends where its last batches froze it (the decayed step size keeps
    their noise); a Newton-type step with the full-data gradient moves to the full-data
    optimum. The information ``I`` is the expected Hessian of the profiled NLL (evaluated at the
    stochastic solution, about block-local angles: first-order equal to the model's angles
    there). A step that does not lower the full NLL (same sampled lines, common random numbers)
    is halved, up to three times, else the polish stops.

    Returns the polished ``(rotations, translations)`` and a list of per-step records.
    """
    rot, trans = (x.detach().clone() for x in good)
    n = rot.shape[0]
    try:
        chol = np.linalg.cholesky(info)
    except np.linalg.LinAlgError:
        return good, [{"skipped": "Fisher information not positive definite"}]
    value, grad = full_nll_and_gradient(problem, poses.poses, rot, trans, seed=seed + 104729, floor=floor)
    records = []
    for _ in range(n_steps):
        step = np.linalg.solve(chol.T, np.linalg.solve(chol, grad.reshape(-1))).reshape(n, 6)
        for _half in range(4):
            d = torch.as_tensor(step, dtype=rot.dtype, device=rot.device)
            r_new, t_new = rot - d[:, :3], trans - d[:, 3:]
            v_new, g_new = full_nll_and_gradient(problem, poses.poses, r_new, t_new, seed=seed + 104729, floor=floor)
            if v_new <= value:
                break
            step = step / 2
        else:
            records.append({"nll": value, "stopped": "no step lowered the full NLL"})
            break
        records.append({"nll_before": value, "nll_after": v_new, "max_translation_step_um": 1000 * float(
            np.abs(step[:, 3:]).max()), "max_rotation_step_deg": float(np.degrees(np.abs(step[:, :3]).max()))})
        rot, trans, value, grad = r_new, t_new, v_new, g_new
    return (rot, trans), records


def _event_arrays(events, blueprint, tof, ctr_ps, bin_ps):
    """Global crystal pairs (n, 2), TOF parameters and signed TOF bins (n,) or None, in canonical form.

    Pairs in the canonical order (lower detection id first, the TOF sign with it) and rows
    sorted by ids and TOF bin (:func:`refsuite.events.canonical_pairs`): the alignment depends on
    the set of coincidences only, so a ROOT file (earlier single first) and a PETSIRD file of the
    same events (its own pair and row order) give identical inputs.
    """
    cols = [c for c in (*CRYSTAL_ID_COLUMNS, "GlobalTime1", "GlobalTime2") if c in events]
    ev = canonical_pairs(events, columns=cols)
    ev_cr = prepare_events(ev, blueprint)
    tof_par, ev_tof = _tof(ev, tof, ctr_ps, bin_ps)
    order = canonical_row_order(crystal_ids(ev), ev_tof)
    return ev_cr[order], tof_par, None if ev_tof is None else ev_tof[order]


def _tof(events, tof, ctr_ps, bin_ps):
    """(TOFParameters or None, signed TOF bin per event or None)."""
    if isinstance(tof, TOFMode) and tof is TOFMode.NONE:
        return None, None
    if isinstance(tof, TOFParameters):
        par = tof
    elif isinstance(tof, TOFMode):
        ctr = ctr_ps if ctr_ps is not None else getattr(events, "attrs", {}).get("ctr_ps")
        if ctr is None:
            raise ValueError("tof=TOFMode.FROM_EVENTS needs ctr_ps= or events.attrs['ctr_ps'] (CTR FWHM, ps); "
                             "or pass tof=TOFMode.NONE")
        check_positive("ctr_ps", ctr, unit="ps")
        par = TOFParameters.from_ctr(num_bins=1, bin_width_ps=bin_ps, ctr_fwhm_ps=float(ctr))
    else:
        raise TypeError(f"tof must be a TOFParameters or a TOFMode, got {tof!r}")
    for k in ("GlobalTime1", "GlobalTime2"):
        if k not in events:
            raise ValueError(f"TOF alignment needs the column {k} (ns); pass tof=TOFMode.NONE for non-TOF")
    # signed distance from the LOR midpoint towards single 2 (= xend): c (t1 - t2) / 2
    s = tof_offsets_mm(events) * float(par.sign.value)
    k = np.round(s / par.bin_width_mm)
    n_bins = int(2 * np.abs(k).max(initial=0) + 1)
    return replace(par, num_bins=n_bins), k
