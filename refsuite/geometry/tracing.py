"""Photon transport to the detectors: exact ray-box intersection in each block's frame.

A photon leaves ``origin`` along the unit vector ``direction`` and crosses blocks (boxes of
``scanner.block_size`` in each block's local frame, uniform material of attenuation
``scanner.mu_per_mm``). Its first interaction is at an LYSO path length ``s ~ Exp(mu)``
accumulated over the blocks it crosses, in order: a photon that passes through one block
without interacting can interact in the next (penetration). Neglected, as stated in
:mod:`refsuite.mc`: Compton scatter in the crystals (every interaction deposits 511 keV),
inter-crystal scatter, and any material between blocks; overlapping blocks are assumed not
to occur.

Candidate blocks of each ray come from the azimuth index of :mod:`refsuite.geometry.accel` (ring
scanners, rays from inside the ring) or from bounding spheres (:func:`_cull`, everything
else); both keep every crossed block, and the exact float64 slab test decides. The index
also drops photons whose sampled depth exceeds a bound of their path through all blocks
(they cannot interact; only for scanners without overlapping blocks), so the hits are the
same as without it, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refsuite._checks import check_positive

from .accel import RingIndex

__all__ = ["IdealCylinder", "trace_blocks", "trace_pairs", "trace_cylinder"]


@dataclass(frozen=True)
class IdealCylinder:
    """An ideal, perfectly absorbing cylindrical detector wall (Lin et al., sec. II).

    ``x^2 + y^2 = radius_mm^2``, ``|z| <= half_length_mm``; a photon is detected where its ray
    meets the wall. Used to check the Monte Carlo against
    :func:`refsuite.sensitivity.geometric_sensitivity`.
    """

    radius_mm: float
    half_length_mm: float

    def __post_init__(self):
        check_positive("radius_mm", self.radius_mm, unit="mm")
        check_positive("half_length_mm", self.half_length_mm, unit="mm")


def trace_cylinder(cyl: IdealCylinder, origin, direction):
    """Wall hits of rays starting inside the cylinder.

    Returns
    -------
    hit : bool (n,)
    distance : float (n,)
        Path length from ``origin`` to the wall, mm (NaN where there is no hit).
    """
    o, d = origin, direction
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    b = o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1]
    c = o[:, 0] ** 2 + o[:, 1] ** 2 - cyl.radius_mm**2
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-b + np.sqrt(np.maximum(b * b - a * c, 0.0))) / a
    z = o[:, 2] + t * d[:, 2]
    hit = (a > 0) & (c < 0) & (np.abs(z) <= cyl.half_length_mm)
    return hit, np.where(hit, t, np.nan)


def _cull(origin, direction, pos, radius, *, both_ways=False, step=8192):
    """Candidate (photon, block) pairs: rays passing within a block's bounding sphere.

    float32, cache-sized sub-batches, plain broadcasting (a K = 3 matrix product is slower
    and its threads compete with the other workers). The margin (1 mm^2 on the squared
    distance, 1 mm behind the origin) covers float32 rounding, so no true crossing is lost;
    the exact test follows in float64. With ``both_ways`` the line is tested once and the
    candidates of the ray along ``-direction`` are returned too (the distance of a centre to
    the line does not depend on the sense; ``t`` changes sign exactly).
    """
    p = pos.astype(np.float32)
    px, py, pz = p[None, :, 0], p[None, :, 1], p[None, :, 2]
    r2 = np.float32(radius**2 + 1.0)
    rb = np.float32(-radius - 1.0)
    fwd, bwd = ([], []), ([], [])
    for s0 in range(0, origin.shape[0], step):
        o = origin[s0:s0 + step].astype(np.float32)
        d = direction[s0:s0 + step].astype(np.float32)
        rx, ry, rz = px - o[:, 0:1], py - o[:, 1:2], pz - o[:, 2:3]
        # t of closest approach to each centre, then squared distance of the centre to the line
        tc = rx * d[:, 0:1]
        tc += ry * d[:, 1:2]
        tc += rz * d[:, 2:3]
        d2 = rx * rx
        d2 += ry * ry
        d2 += rz * rz
        d2 -= tc * tc
        near = d2 <= r2
        tests = [(fwd, near & (tc >= rb))] + ([(bwd, near & (tc <= -rb))] if both_ways else [])
        for out, mask in tests:
            i, b = np.nonzero(mask)
            out[0].append(i + s0)
            out[1].append(b)
    fwd = tuple(np.concatenate(x) for x in fwd)
    return (fwd, tuple(np.concatenate(x) for x in bwd)) if both_ways else fwd


def _candidates(scanner, origin, direction, *, both_ways=False, accelerate=True, pairs_only=False, depths=None):
    """Candidate (photon, block) pairs, photon-major: the azimuth index of
    :mod:`refsuite.geometry.accel` where it applies, the brute-force :func:`_cull` elsewhere.

    Both are supersets of the true crossings, so the exact tests that follow give the same
    hits whichever produced them (``accelerate=False`` forces brute force). ``pairs_only``
    allows leaving out photons whose partner (other sense) cannot reach any block;
    ``depths`` (per sense) those that cannot interact (their depth exceeds a bound of
    their path in the blocks).
    """
    half_norm = float(np.linalg.norm(scanner.block_size / 2))
    index = RingIndex(scanner) if accelerate else None
    if index is None or not index.usable:
        return _cull(origin, direction, scanner.positions, half_norm, both_ways=both_ways)
    inside = index.inside(origin)
    if inside.all():
        return index.candidates(origin, direction, both_ways=both_ways, pairs_only=pairs_only, depths=depths)
    ins, outs = np.flatnonzero(inside), np.flatnonzero(~inside)
    if depths is not None:
        depths = [(lambda j, f=f: f(ins[j])) if callable(f) else f[ins] for f in depths]
    fast = index.candidates(origin[ins], direction[ins], both_ways=True, pairs_only=pairs_only, depths=depths)
    slow = _cull(origin[outs], direction[outs], scanner.positions, half_norm, both_ways=True)
    merged = []
    for (i_f, b_f), (i_s, b_s) in zip(fast, slow):
        i = np.concatenate([ins[i_f], outs[i_s]])
        order = np.argsort(i, kind="stable")
        merged.append((i[order], np.concatenate([b_f, b_s])[order]))
    return tuple(merged) if both_ways else merged[0]


def trace_pairs(scanner, origin, direction, path_lyso_1, path_lyso_2, *, accelerate=True):
    """Both photons of collinear pairs (photon 2 along ``-direction``), one culling pass.

    Decays without a candidate block on both sides are dropped before the exact tests.
    ``path_lyso_1/2`` are arrays (n,) as in :func:`trace_blocks`, or callables mapping photon
    indices to their depths (evaluated only for photons that cross a block).
    Returns ``(decay, (block1, local1, dist1), (block2, local2, dist2))`` for the decays where
    both photons interact, with the meaning of :func:`trace_blocks`; identical to calling
    :func:`trace_blocks` for each photon.
    """
    (i1, b1), (i2, b2) = _candidates(scanner, origin, direction, both_ways=True, accelerate=accelerate,
                                     pairs_only=True, depths=(path_lyso_1, path_lyso_2))
    n = origin.shape[0]
    both = (np.bincount(i1, minlength=n) > 0) & (np.bincount(i2, minlength=n) > 0)
    k1 = np.take(both, i1)
    h1 = _exact(scanner, origin, direction, path_lyso_1, np.compress(k1, i1), np.compress(k1, b1))
    # photon 2 only where photon 1 interacted (each photon's result is independent of others)
    hit1 = np.zeros(n, bool)
    hit1[h1[0]] = True
    k2 = np.take(hit1, i2)
    h2 = _exact(scanner, origin, -direction, path_lyso_2, np.compress(k2, i2), np.compress(k2, b2))
    decays, s1, s2 = np.intersect1d(h1[0], h2[0], assume_unique=True, return_indices=True)
    return decays, tuple(np.take(x, s1, axis=0) for x in h1[1:]), tuple(np.take(x, s2, axis=0) for x in h2[1:])


def trace_blocks(scanner, origin, direction, path_lyso, *, accelerate=True):
    """First interaction of photons in the blocks of ``scanner``.

    Parameters
    ----------
    scanner : refsuite.geometry.Scanner
    origin : ndarray (n, 3)
        Emission points, mm.
    direction : ndarray (n, 3)
        Unit directions.
    path_lyso : ndarray (n,)
        Sampled interaction depth, mm of block material (``Exp(mu)`` variates): the photon
        interacts after this much cumulative path inside blocks. Or a callable mapping photon indices
        to their depths, evaluated only for photons that cross a block.

    Returns
    -------
    photon : int64 (m,)
        Indices of the photons that interact.
    block : int64 (m,)
        Block of the interaction.
    local : float (m, 3)
        Interaction point in that block's frame, mm.
    distance : float (m,)
        Path length from the emission point to the interaction, mm.
    """
    i, b = _candidates(scanner, origin, direction, accelerate=accelerate, depths=(path_lyso,))
    return _exact(scanner, origin, direction, path_lyso, i, b)


def _slab(origin, direction, pos, axes, half, i, b):
    """Slab test of pairs (i, b) in each block's own frame (float64), crossings only.

    Written per component so that every photon's arithmetic is independent of the batch
    (bitwise chunk-size invariance); called on cache-sized slices. Returns ``i, b, t_in,
    t_out`` and the local origin and direction as lists of 3 component arrays.
    """
    # per-component contiguous gathers (same products and sums, in the same order); np.take
    # is several times faster than fancy indexing here
    cols = [[np.take(axes[:, r, c], b) for c in range(3)] for r in range(3)]
    rel = [np.take(origin[:, k], i) - np.take(pos[:, k], b) for k in range(3)]
    dk = [np.take(direction[:, k], i) for k in range(3)]
    o_loc, d_loc = [], []
    t_in = np.zeros(len(i))
    t_out = np.full(len(i), np.inf)
    for ax in range(3):
        a0, a1, a2 = cols[ax]
        o_ax = a0 * rel[0] + a1 * rel[1] + a2 * rel[2]
        d_ax = a0 * dk[0] + a1 * dk[1] + a2 * dk[2]
        # |d| < 1e-300 (parallel to the slab, or subnormal): 1/d would overflow to inf and
        # 0 * inf = NaN would drop a ray lying in the mid-plane; 1e300 is as good as inf here
        inv = 1.0 / np.where(np.abs(d_ax) < 1e-300, 1e-300, d_ax)
        mid = -o_ax * inv
        hw = half[ax] * np.abs(inv)
        np.maximum(t_in, mid - hw, out=t_in)
        np.minimum(t_out, mid + hw, out=t_out)
        o_loc.append(o_ax)
        d_loc.append(d_ax)
    ok = t_out > t_in
    return [np.compress(ok, v) for v in (i, b, t_in, t_out)] + [[np.compress(ok, v) for v in o_loc],
                                                               [np.compress(ok, v) for v in d_loc]]


def _exact(scanner, origin, direction, path_lyso, i, b):
    """Exact slab tests of candidate pairs (i, b) and the depth walk; see :func:`trace_blocks`."""
    pos = scanner.positions
    axes = scanner.axes
    half = scanner.block_size / 2
    parts = [_slab(origin, direction, pos, axes, half, i[s0:s0 + 16384], b[s0:s0 + 16384])
             for s0 in range(0, len(i), 16384)] or [_slab(origin, direction, pos, axes, half, i, b)]
    if len(parts) == 1:
        i, b, t_in, t_out, o_loc, d_loc = parts[0]
    else:
        i, b, t_in, t_out = (np.concatenate([p[k] for p in parts]) for k in range(4))
        o_loc, d_loc = ([np.concatenate([p[k][c] for p in parts]) for c in range(3)] for k in (4, 5))
    i, b = i.astype(np.int64), b.astype(np.int64)
    # order the crossings of each photon by entry distance and accumulate block path length;
    # ``i`` is already ascending and most photons cross one block: sort only the others
    seg = t_out - t_in
    first = np.ones(len(i), bool)
    first[1:] = i[1:] != i[:-1]
    starts = np.flatnonzero(first)
    sizes = np.diff(np.append(starts, len(i)))
    sub = np.flatnonzero(np.repeat(sizes > 1, sizes))
    cum_before = np.zeros(len(i))
    if len(sub):
        # ties in entry distance (blocks sharing a face) by block: the candidate order
        # within a photon then does not matter
        order = sub[np.lexsort((b[sub], t_in[sub], i[sub]))]
        for arr in (b, t_in, t_out, seg, *o_loc, *d_loc):
            arr[sub] = arr[order]
        head = first[sub]
        rank = np.arange(len(sub)) - np.maximum.accumulate(np.where(head, np.arange(len(sub)), 0))
        cb = np.zeros(len(sub))
        sg = seg[sub]
        for r in range(1, int(rank.max()) + 1):
            at = np.flatnonzero(rank == r)
            cb[at] = cb[at - 1] + sg[at - 1]
        cum_before[sub] = cb
    s = path_lyso(i) if callable(path_lyso) else np.take(path_lyso, i)
    hit = (s >= cum_before) & (s < cum_before + seg)
    t_hit = np.compress(hit, t_in) + (np.compress(hit, s) - np.compress(hit, cum_before))
    local = np.empty((len(t_hit), 3))
    for c in range(3):
        np.add(np.compress(hit, o_loc[c]), t_hit * np.compress(hit, d_loc[c]), out=local[:, c])
    return np.compress(hit, i), np.compress(hit, b), local, t_hit
