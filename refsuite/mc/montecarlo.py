"""Vectorised photon-pair Monte Carlo writing GATE 10 coincidence columns.

Per decay: an annihilation point drawn from the phantom, an isotropic direction, the
second photon opposite (optionally with Gaussian acollinearity), survival through the
phantom material, exact transport into the blocks (:mod:`refsuite.geometry.tracing`), crystal-
voxel binning, Gaussian energy blur and window, Gaussian time blur and coincidence window.
Only true coincidences are formed (no randoms, scatter or multiples), so every event is one
decay with both photons detected.

Reproducibility: decays are drawn in seed blocks of :data:`SEED_BLOCK` decays, block ``k``
from its own generator ``SeedSequence(seed, spawn_key=(k,))``; the blocks' start times come
from a separate stream. The energy and time blur and the phantom-survival variates of a
block's decays whose photons both interact are drawn from its generator after the
transport (which depends only on the block's own draws). A chunk is a whole number of seed
blocks, so the events do not depend on the chunk size, nor on where the chunks run (with an
``executor`` on a Dask cluster, a few chunks per task, see :meth:`refsuite.execution.Executor.imap`).
"""

from __future__ import annotations

import math

import numpy as np

from refsuite._checks import check_finite, check_positive
from refsuite.constants import FWHM_PER_SIGMA as _FWHM
from refsuite.constants import SPEED_OF_LIGHT_MM_PER_NS
from refsuite.events import Events, column_names
from refsuite.geometry.tracing import IdealCylinder, trace_blocks, trace_cylinder, trace_pairs

__all__ = ["simulate", "iter_simulate", "SEED_BLOCK", "DEFAULT_CHUNK_SIZE"]

SEED_BLOCK = 4096
#: Default decays per vectorised pass: 2**16 keeps the per-pass arrays (0.5 MB each) near the
#: core's cache and ran 15-40 % faster than 2**18 on a shared 2-core machine; the events do
#: not depend on it.
DEFAULT_CHUNK_SIZE = 2**16


def _block_rng(seed: int, k: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(k,))))


def _block_schedule(seed, n_decays, activity_bq, blocks_per_chunk):
    """Seed blocks of a Poisson process of rate A, a chunk at a time.

    Yields ``(blocks, starts, durations, sizes)`` for ``blocks_per_chunk`` consecutive seed
    blocks: their indices, start times (ns), durations (ns, Gamma(size, 1/A) draws of one
    stream) and decay counts. Memory is O(blocks_per_chunk) whatever ``n_decays``; the draws
    and the running sum are the same, bit for bit, as for all blocks at once (the Gamma
    variates are drawn element by element from one stream, and the start times are one
    sequential sum carried from chunk to chunk).
    """
    n_blocks = -(-n_decays // SEED_BLOCK)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(2**31,))))
    t = 0.0
    for k0 in range(0, n_blocks, blocks_per_chunk):
        k1 = min(k0 + blocks_per_chunk, n_blocks)
        sizes = np.full(k1 - k0, SEED_BLOCK, dtype=np.int64)
        if k1 == n_blocks:
            sizes[-1] = n_decays - SEED_BLOCK * (n_blocks - 1)
        dur = rng.gamma(sizes, 1e9 / activity_bq)
        cum = np.cumsum(np.concatenate([[t], dur]))
        t = float(cum[-1])
        yield np.arange(k0, k1), cum[:-1], dur, sizes


def _perpendicular_basis(u):
    ref = np.where(np.abs(u[:, [2]]) < 0.9, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]])
    e1 = np.cross(u, ref)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    return e1, np.cross(u, e1)


def _isotropic(n, rng, out):
    """``n`` isotropic unit vectors into ``out`` (n, 3): Marsaglia's method (G. Marsaglia,
    Ann. Math. Statist. 43 (1972) 645): ``(u, v)`` uniform in the unit disc by rejection from
    the square, ``s = u^2 + v^2``, then ``(2u sqrt(1 - s), 2v sqrt(1 - s), 1 - 2s)``. No
    trigonometry; ~1.27 pairs of uniforms per direction."""
    done = 0
    while done < n:
        need = n - done
        uv = rng.random((int(1.274 * need + 4.0 * math.sqrt(need)) + 8, 2))
        uv *= 2.0
        uv -= 1.0
        s = np.einsum("ij,ij->i", uv, uv)
        ok = np.flatnonzero(s < 1.0)[:need]
        uv, s = np.take(uv, ok, axis=0), np.take(s, ok)
        f = 2.0 * np.sqrt(1.0 - s)
        m = len(ok)
        np.multiply(uv[:, 0], f, out=out[done:done + m, 0])
        np.multiply(uv[:, 1], f, out=out[done:done + m, 1])
        np.subtract(1.0, 2.0 * s, out=out[done:done + m, 2])
        done += m


def _rows(a, idx):
    """``a[idx]`` of a component-major (n, 3) array, gathered column by column (np.take of
    whole rows is slow for this layout, fancy indexing slower still)."""
    out = np.empty((len(idx), a.shape[1]), order="F")
    for c in range(a.shape[1]):
        np.take(a[:, c], idx, out=out[:, c])
    return out


def _decay_times(g, t0, dur, rng):
    """Decay times (ns) of a seed block: a Poisson process whose ``g``-th decay closes the
    block's Gamma(g)-distributed duration ``dur`` starting at ``t0``. Given the duration, the
    ``g`` spacings are Dirichlet(1, ..., 1), i.e. Exp(1) variates normalised by their sum."""
    cum = np.cumsum(rng.standard_exponential(g))
    return t0 + dur * (cum / cum[-1])


def _trace_separately(detector, x, d1, d2, depth):
    """Photon 1 for every decay, photon 2 where photon 1 interacted (acollinear pairs)."""
    todo = np.arange(len(x))
    hits = []
    for j, d in enumerate((d1, d2)):
        if isinstance(detector, IdealCylinder):
            hit, t = trace_cylinder(detector, _rows(x, todo), _rows(d, todo))
            p_i = np.flatnonzero(hit)
            t = t[hit]
            b = c = np.full(len(p_i), -1, np.int32)
        else:
            p_i, b, local, t = trace_blocks(detector, _rows(x, todo), _rows(d, todo),
                                            np.take(depth[j], todo))
            c = detector.crystals.locate(local)
        hits.append((b, c, t))
        keep1 = p_i  # indexes the decays still in play; realigns photon 1 below
        todo = todo[p_i]
    (b1, c1, t1), second = hits
    return todo, (b1[keep1], c1[keep1], t1[keep1]), second


def _simulate_chunk(detector, phantom, blocks, starts, durations, sizes, seed, opt):
    n = int(np.sum(sizes))
    acol = opt["acollinearity_sigma"] > 0
    # component-major storage: the transport works on contiguous x, y, z columns
    x, d1 = np.empty((n, 3), order="F"), np.empty((n, 3), order="F")
    # Exp(1) variates of the interaction depths in the blocks (mu_LYSO * depth), per photon
    expo = np.empty((2, n))
    nrm_acol = np.empty((2, n)) if acol else None
    t_decay, event_id = np.empty(n), np.empty(n, np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    rngs = []
    for k, t0, dur, g, o in zip(blocks, starts, durations, sizes, offsets):
        rng = _block_rng(seed, int(k))
        g = int(g)
        x[o:o + g] = phantom.sample(g, rng)
        _isotropic(g, rng, d1[o:o + g])
        for r in range(2):
            rng.standard_exponential(out=expo[r, o:o + g])
        t_decay[o:o + g] = _decay_times(g, t0, dur, rng)
        if acol:
            for r in range(2):
                rng.standard_normal(out=nrm_acol[r, o:o + g])
        event_id[o:o + g] = np.arange(SEED_BLOCK * k, SEED_BLOCK * k + g)
        rngs.append(rng)  # continued below for this block's interacting decays
    d2 = None  # back to back: -d1, formed only where needed
    if acol:
        e1, e2 = _perpendicular_basis(d1)
        d2 = -d1 + opt["acollinearity_sigma"] * (nrm_acol[0][:, None] * e1 + nrm_acol[1][:, None] * e2)
        d2 /= np.linalg.norm(d2, axis=1, keepdims=True)

    def direction(j, idx):  # np.take: several times faster than fancy indexing of (n, 3)
        d = _rows(d1 if (j == 0 or d2 is None) else d2, idx)
        return -d if (j == 1 and d2 is None) else d
    if isinstance(detector, IdealCylinder) or acol:
        depth = expo / detector.mu_per_mm if not isinstance(detector, IdealCylinder) else None
        todo, (b1, c1, t1), (b2, c2, t2) = _trace_separately(detector, x, d1, -d1 if d2 is None else d2, depth)
    else:
        # interaction depths (Exp(mu) along the block path)
        depth = expo / detector.mu_per_mm
        todo, (b1, l1, t1), (b2, l2, t2) = trace_pairs(detector, x, d1, depth[0], depth[1])
        c1, c2 = detector.crystals.locate(l1), detector.crystals.locate(l2)
    # energy and time blur (normal) and phantom survival (Exp(1): a photon survives iff
    # E > mu L) only for decays whose photons both interact, each from its own block's
    # stream (in decay order: ``todo`` is ascending), so the events still do not depend on
    # the chunking; attenuation only removes events of the same seed
    nrm, surv = np.empty((len(todo), 4)), np.empty((len(todo), 2))
    cut = np.searchsorted(todo, offsets)
    for rng, i0, i1 in zip(rngs, cut[:-1], cut[1:]):
        rng.standard_normal(out=nrm[i0:i1])
        rng.standard_exponential(out=surv[i0:i1])
    ok = np.ones(len(todo), bool)
    if opt["attenuation"] and phantom.mu_per_mm > 0:
        for j in range(2):
            length = phantom.attenuation_length(_rows(x, todo), direction(j, todo))
            ok &= surv[:, j] > phantom.mu_per_mm * length
    n_reached = len(todo)
    todo, b1, c1, t1, b2, c2, t2 = (np.compress(ok, v) for v in (todo, b1, c1, t1, b2, c2, t2))
    nrm = np.compress(ok, nrm, axis=0)
    n_both = len(todo)
    # per photon j = 0, 1: energy (keV), true and measured detection times (ns)
    t_dec = np.take(t_decay, todo)
    energy = [511.0 * (1.0 + opt["energy_sigma_rel"] * nrm[:, j]) for j in range(2)]
    t_true = [t_dec + t / SPEED_OF_LIGHT_MM_PER_NS for t in (t1, t2)]
    t_meas = [t_true[j] + opt["time_sigma_ns"] * nrm[:, 2 + j] for j in range(2)]
    lo, hi = opt["energy_window_kev"]
    keep = (energy[0] >= lo) & (energy[0] <= hi) & (energy[1] >= lo) & (energy[1] <= hi)
    keep &= np.abs(t_meas[0] - t_meas[1]) <= opt["coincidence_window_ns"]
    sel = np.flatnonzero(keep)
    ev = np.take(todo, sel)
    xs = _rows(x, ev)
    pos = [xs + np.take(t, sel)[:, None] * direction(j, ev) for j, t in enumerate((t1, t2))]
    # the sorter's first single is the earlier one
    t_meas = [np.take(t, sel) for t in t_meas]
    swap = t_meas[0] > t_meas[1]
    cols = {}
    for name, (v1, v2) in {"GlobalTime": t_meas,
                           "TotalEnergyDeposit": [np.take(e, sel) / 1000.0 for e in energy],
                           "TrueGlobalTime": [np.take(t, sel) for t in t_true],
                           "BlockID": [np.take(b, sel).astype(np.int32) for b in (b1, b2)],
                           "CrystalID": [np.take(c, sel).astype(np.int32) for c in (c1, c2)]}.items():
        cols[f"{name}1"], cols[f"{name}2"] = np.where(swap, v2, v1), np.where(swap, v1, v2)
    cols["EventID1"] = cols["EventID2"] = np.take(event_id, ev)
    for a, axis in enumerate("XYZ"):
        p1, p2 = pos[0][:, a], pos[1][:, a]
        cols[f"PostPosition_{axis}1"], cols[f"PostPosition_{axis}2"] = np.where(swap, p2, p1), np.where(swap, p1, p2)
        cols[f"TrackVertexPosition_{axis}1"] = cols[f"TrackVertexPosition_{axis}2"] = xs[:, a]
    counts = {"decays": n, "both_reached_detectors": n_reached, "both_detected": n_both,
              "coincidences": len(sel)}
    return {c: cols[c] for c in column_names()}, counts


def _options(detector, *, n_decays, seed, chunk_size, acollinearity_fwhm_deg, attenuation, energy_resolution,
             energy_window_kev, ctr_ps, coincidence_window_ps, activity_bq):
    from refsuite.geometry import Scanner

    if not isinstance(detector, (Scanner, IdealCylinder)):
        raise TypeError(f"scanner must be a refsuite.geometry.Scanner or IdealCylinder, got {type(detector).__name__}")
    if not (np.isfinite(n_decays) and n_decays >= 1 and int(n_decays) == n_decays):
        raise ValueError(f"n_decays must be a finite integer >= 1, got {n_decays!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
    check_finite("acollinearity_fwhm_deg", acollinearity_fwhm_deg)
    if acollinearity_fwhm_deg < 0:
        raise ValueError(f"acollinearity_fwhm_deg must be >= 0 deg, got {acollinearity_fwhm_deg!r}")
    check_positive("energy_resolution", energy_resolution)
    lo, hi = check_finite("energy_window_kev", energy_window_kev).reshape(2)
    if not lo < hi:
        raise ValueError(f"energy_window_kev must be (low, high) with low < high keV, got {energy_window_kev!r}")
    check_positive("ctr_ps", ctr_ps, unit="ps")
    check_positive("coincidence_window_ps", coincidence_window_ps, unit="ps")
    check_positive("activity_bq", activity_bq, unit="Bq")
    return {
        "acollinearity_sigma": math.radians(acollinearity_fwhm_deg) / _FWHM,
        "attenuation": bool(attenuation),
        "energy_sigma_rel": energy_resolution / _FWHM,
        "energy_window_kev": (float(lo), float(hi)),
        # each single gets sigma_t so that t1 - t2 has FWHM = CTR
        "time_sigma_ns": ctr_ps / _FWHM / math.sqrt(2.0) / 1000.0,
        "coincidence_window_ns": coincidence_window_ps / 1000.0,
    }


def iter_simulate(scanner, phantom, *, n_decays: int, seed: int, chunk_size: int = DEFAULT_CHUNK_SIZE,
                  acollinearity_fwhm_deg: float = 0.0, attenuation: bool = True, energy_resolution: float = 0.12,
                  energy_window_kev=(450.0, 650.0), ctr_ps: float = 250.0, coincidence_window_ps: float = 5000.0,
                  activity_bq: float | None = None, progress: bool = False, allow_overlap: bool = False,
                  executor=None):
    """Run the Monte Carlo chunk by chunk; yields ``(columns, counts)`` per chunk.

    Same parameters as :func:`simulate` (the checks run at the first chunk). Memory is
    bounded by ``chunk_size`` (a few hundred bytes per decay), whatever ``n_decays``; on a
    cluster, by ``chunk_size`` times the chunks in flight (:func:`_cluster_chunks`).
    """
    act = phantom.total_activity if activity_bq is None else activity_bq
    opt = _options(scanner, n_decays=n_decays, seed=seed, chunk_size=chunk_size,
                   acollinearity_fwhm_deg=acollinearity_fwhm_deg, attenuation=attenuation,
                   energy_resolution=energy_resolution, energy_window_kev=energy_window_kev, ctr_ps=ctr_ps,
                   coincidence_window_ps=coincidence_window_ps, activity_bq=act)
    if not allow_overlap and not isinstance(scanner, IdealCylinder):
        from refsuite.geometry import check_block_clearance

        check_block_clearance(scanner, hint="pass allow_overlap=True to simulate it anyway (each block then "
                                            "counts the shared volume)")
    per_chunk = max(1, -(-int(chunk_size) // SEED_BLOCK))
    if executor is not None and executor.kind != "in-process":
        yield from _cluster_chunks(executor, scanner, phantom, int(seed), int(n_decays), act, per_chunk, opt,
                                   progress=progress)
        return
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=int(n_decays), unit="decays", desc="refsuite mc")
    try:
        for blocks, starts, durations, sizes in _block_schedule(int(seed), int(n_decays), act, per_chunk):
            out = _simulate_chunk(scanner, phantom, blocks, starts, durations, sizes, int(seed), opt)
            if bar is not None:
                bar.update(int(sizes.sum()))
            yield out
    finally:
        if bar is not None:
            bar.close()


#: decays per cluster task (whole chunks): large enough that a task outweighs its scheduling
_TASK_DECAYS = 2**20


def _cluster_chunks(executor, scanner, phantom, seed, n_decays, activity_bq, per_chunk, opt, *, progress):
    """The chunks of :func:`iter_simulate` computed as tasks of ``executor``, yielded in order.

    The seed-block schedule is drawn here, a chunk at a time, exactly as in-process; each task
    simulates a few consecutive chunks (at least four tasks per worker) from their own seed
    blocks, so the events are those of the in-process run, bit for bit, whatever the workers.
    """
    chunk_decays = per_chunk * SEED_BLOCK
    n_chunks = -(-n_decays // chunk_decays)
    per_task = max(1, min(_TASK_DECAYS // chunk_decays, n_chunks // (4 * executor.n_workers)))
    schedule = _block_schedule(seed, n_decays, activity_bq, per_chunk)

    def tasks():
        while True:
            group = [c for _, c in zip(range(per_task), schedule)]
            if not group:
                return
            yield scanner, phantom, group, seed, opt

    for outs in executor.imap(_chunks_task, tasks(), key="mc-chunks", progress=progress, desc="refsuite mc",
                              unit="task"):
        yield from outs


def _chunks_task(job) -> list:
    """Simulate consecutive chunks of the schedule (a task): ``[(columns, counts)]`` in order."""
    scanner, phantom, group, seed, opt = job
    return [_simulate_chunk(scanner, phantom, *chunk, seed, opt) for chunk in group]


def simulate(scanner, phantom, *, n_decays: int, seed: int, chunk_size: int = DEFAULT_CHUNK_SIZE,
             acollinearity_fwhm_deg: float = 0.0, attenuation: bool = True, energy_resolution: float = 0.12,
             energy_window_kev=(450.0, 650.0), ctr_ps: float = 250.0, coincidence_window_ps: float = 5000.0,
             activity_bq: float | None = None, progress: bool = False, allow_overlap: bool = False,
             executor=None) -> Events:
    """Simulate back-to-back 511 keV pairs from a phantom into a scanner (built-in MC).

    Parameters
    ----------
    scanner : refsuite.geometry.Scanner or IdealCylinder
        Detector. Blocks are uniform boxes of ``scanner.mu_per_mm`` (LYSO 0.087 /mm at
        511 keV); the first interaction depth is exponential along the photon's path in the
        blocks it crosses. Neglected: Compton scatter in the crystals (full 511 keV
        deposit), inter-crystal scatter, scatter in the phantom (attenuation only removes
        photons), positron range, randoms, dead time.
    phantom : refsuite.phantoms.Phantom
        Emission distribution (``sample``) and attenuating material.
    n_decays : int
        Number of annihilations (pairs) to simulate.
    seed : int
        Same seed, same events, whatever ``chunk_size``.
    chunk_size : int
        Decays per vectorised pass (rounded up to a multiple of :data:`SEED_BLOCK`).
    acollinearity_fwhm_deg : float
        FWHM of the angle between the photons' deviation from 180 deg, degrees (0.5 is the
        usual value for water; 0 = exactly back to back, as Thull et al.'s GATE source).
        Each of the two perpendicular deviation components is Gaussian with sigma = FWHM / 2.355.
    attenuation : bool
        Apply ``exp(-mu L)`` survival in the phantom material (``phantom.mu_per_mm``).
    energy_resolution : float
        Energy FWHM / 511 keV (Thull et al.: 12 %).
    energy_window_kev : (float, float)
        Accepted deposited energies, keV (Thull et al.: 450-650 keV).
    ctr_ps : float
        Coincidence time resolution, FWHM of ``t1 - t2``, ps (Thull et al. simulation: 250 ps).
    coincidence_window_ps : float
        Maximum ``|t1 - t2|``, ps (Thull et al.: 5 ns).
    activity_bq : float, optional
        Decay rate for the time stamps; default ``phantom.total_activity``.
    progress : bool
        Show a tqdm progress bar.
    allow_overlap : bool
        Simulate a scanner whose blocks interpenetrate. Default: ValueError naming the
        deepest pair (:func:`refsuite.geometry.check_block_clearance`), since a photon in the
        shared volume would count for both blocks and GATE rejects such a geometry.
    executor : refsuite.execution.Executor, optional
        A local or running Dask cluster: the chunks are simulated as its tasks (a few chunks
        each), the events are the same, bit for bit. Default (or in-process): this process.

    Returns
    -------
    Events
        Dict of columns, one row per coincidence (GATE 10 names and units, see
        :data:`refsuite.events.COLUMNS`): ``EventID1/2``, ``GlobalTime1/2`` (ns), ``TotalEnergyDeposit1/2``
        (MeV), ``PostPosition_X1`` ... ``_Z2`` (mm), the truth ``TrackVertexPosition_X1`` ...
        (mm, annihilation point), ``TrueGlobalTime1/2`` (ns) and ``BlockID1/2``,
        ``CrystalID1/2``. Single 1 is the earlier one. ``attrs`` holds the settings and the
        counts (``decays``, ``coincidences``, ...).

    Notes
    -----
    The returned table grows with the number of coincidences (~200 bytes each); for runs
    of 1e8 decays stream :func:`iter_simulate` into :class:`refsuite.io.CoincidenceWriter`
    (as ``refsuite simulate`` does), whose memory is bounded by ``chunk_size``.
    """
    chunks, totals = [], {}
    for cols, counts in iter_simulate(scanner, phantom, n_decays=n_decays, seed=seed, chunk_size=chunk_size,
                                      acollinearity_fwhm_deg=acollinearity_fwhm_deg, attenuation=attenuation,
                                      energy_resolution=energy_resolution, energy_window_kev=energy_window_kev,
                                      ctr_ps=ctr_ps, coincidence_window_ps=coincidence_window_ps,
                                      activity_bq=activity_bq, progress=progress, allow_overlap=allow_overlap,
                                      executor=executor):
        chunks.append(cols)
        for key, v in counts.items():
            totals[key] = totals.get(key, 0) + v
    events = {c: np.concatenate([ch[c] for ch in chunks]) for c in column_names()}
    attrs = {"engine": "refsuite", "seed": int(seed), "n_decays": int(n_decays), "counts": totals,
             "acollinearity_fwhm_deg": acollinearity_fwhm_deg, "attenuation": bool(attenuation),
             "energy_resolution": energy_resolution, "energy_window_kev": list(energy_window_kev),
             "ctr_ps": ctr_ps, "coincidence_window_ps": coincidence_window_ps,
             "activity_bq": phantom.total_activity if activity_bq is None else activity_bq}
    return Events(events, attrs=attrs)
