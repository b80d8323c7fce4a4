"""Which (bin, blob) combinations can have non-negligible expected counts.

The Poisson NLL runs over every bin ``(lambda1, lambda2, t)`` of the scanner, most of which
see no tracer at all. Summed over TOF bins the TOF kernel integrates to one, so the NLL is

    sum_bins mu_b - sum_b C_b log mu_b  =  sum_(lambda1, lambda2) mu_nonTOF - sum_events log mu_event

(Thull et al., sec. 2.4, regrouped). The first sum only needs crystal pairs whose line passes
within a few blob widths of a blob: :func:`pair_support` enumerates them once, for the
blueprint, with a margin for the misalignment; the solver samples it uniformly (zero-count
bins included, as the paper's random batches).
"""

from __future__ import annotations

import numpy as np

__all__ = ["line_point_distance", "pair_support", "event_candidates"]


def line_point_distance(a, b, x):
    """Distance (mm) of points ``x`` (m, 3) from the lines through ``a``, ``b`` (n, 3): (n, m)."""
    u = b - a
    u = u / np.linalg.norm(u, axis=-1, keepdims=True)
    w = x[None, :, :] - a[:, None, :]
    t = np.einsum("nmk,nk->nm", w, u)
    return np.sqrt(np.maximum(np.einsum("nmk,nmk->nm", w, w) - t * t, 0.0))


def event_candidates(a, b, centres, radius_mm, *, chunk=200_000):
    """Blobs within ``radius_mm`` of each line ``a``-``b``, nearest first, as a ragged array.

    A tube is ~2000 blobs and a line that runs along one of its segments is near hundreds of
    them (281 at most, 60 on average on ``thull_sim`` 2 mm): padded to the longest row, 5e6
    events would need 11 GB, so the rows are stored back to back (CSR).

    Parameters
    ----------
    a, b : ndarray, shape (n, 3)
        Line end points, mm.
    centres : ndarray, shape (m, 3)
        Blob centres, mm.
    radius_mm : float
    chunk : int
        (line, blob) distances per vectorised pass / 10 (memory ~ 100 bytes each).

    Returns
    -------
    ptr : ndarray of int64, shape (n + 1,)
        Row ``i``'s candidates are ``blobs[ptr[i]:ptr[i + 1]]``.
    blobs : ndarray of int32, shape (ptr[-1],)
        Blob indices, each row ordered by distance (ties by index).
    """
    n, m = a.shape[0], centres.shape[0]
    # blobs in groups of _GROUP consecutive ones (a tube's blobs are consecutive along its centre
    # line): a group whose bounding sphere is farther than radius_mm from a line is skipped whole
    n_groups = -(-m // _GROUP)
    grouped = np.full((n_groups * _GROUP, 3), np.nan)
    grouped[:m] = centres
    grouped = grouped.reshape(n_groups, _GROUP, 3)
    g_centre = np.nanmean(grouped, axis=1)
    g_radius = np.nanmax(np.linalg.norm(grouped - g_centre[:, None], axis=2), axis=1)
    u = (b - a) / np.linalg.norm(b - a, axis=1, keepdims=True)
    step = max(1, chunk * 10 // n_groups)
    counts, parts = np.zeros(n, np.int64), []
    for s in range(0, n, step):
        aa, uu = a[s:s + step], u[s:s + step]
        row, grp = np.nonzero(line_point_distance(aa, aa + uu, g_centre) <= radius_mm + g_radius)
        w = grouped[grp] - aa[row][:, None, :]  # (pairs, _GROUP, 3)
        t = np.einsum("pgk,pk->pg", w, uu[row])
        d = np.sqrt(np.maximum(np.einsum("pgk,pgk->pg", w, w) - t * t, 0.0))
        p, k = np.nonzero(d <= radius_mm)  # NaN (padding) is never near
        row, col, d = row[p], grp[p] * _GROUP + k, d[p, k]
        order = np.lexsort((col, d, row))  # by row, then distance, then index
        parts.append(col[order].astype(np.int32))
        counts[s:s + step] = np.bincount(row, minlength=aa.shape[0])
    ptr = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    return ptr, (np.concatenate(parts) if parts else np.zeros(0, np.int32))


#: blobs per bounding group of :func:`event_candidates`
_GROUP = 16


def pair_support(positions, axes, lut_centres, centres, radius_mm, *, max_per_blob=None, rng=None, n_shells=6):
    """Crystal pairs in different blocks whose centre line passes within ``radius_mm`` of a blob.

    Parameters
    ----------
    positions, axes : (N, 3), (N, 3, 3)
        Block poses (the blueprint), mm.
    lut_centres : (M, 3)
        Crystal-voxel centres in the block frame, mm.
    centres : (m, 3)
        Blob centres, mm.
    radius_mm : float
    max_per_blob : int, optional
        Keep a uniform random subset of at most this many entries per blob, each kept entry
        weighted by ``1 / fraction kept``: an unbiased estimate of the sum over the support that
        bounds memory at the paper's crystal binning.
    rng : numpy.random.Generator
        For the subset (needed with ``max_per_blob``).

    Returns
    -------
    entries : ndarray of int64, shape (n_entries, 3)
        ``(crystal1, crystal2, blob)`` with crystal index ``block * M + cr``, ``crystal1 <
        crystal2``; a pair near two blobs appears once per blob.
    weights : ndarray, shape (n_entries,)
        Inverse inclusion probability of each entry (1 without subsetting).
    """
    from scipy.spatial import cKDTree

    m_cr = lut_centres.shape[0]
    glob = (positions[:, None, :] + np.einsum("mi,dij->dmj", lut_centres, axes)).reshape(-1, 3)
    block = np.repeat(np.arange(positions.shape[0]), m_cr)
    out, weights = [], []
    for k, x in enumerate(np.asarray(centres, float)):
        per_blob = []
        v = glob - x
        r = np.linalg.norm(v, axis=1)
        v = v / r[:, None]
        # a line through c_i, c_j passing within d of x has angle(v_i, -v_j) <= asin(d/r_i) + asin(d/r_j):
        # crystals are bucketed by distance so that the angular search radius stays tight
        edges = np.quantile(r, np.linspace(0, 1, n_shells + 1))
        shell = np.clip(np.searchsorted(edges, r, side="right") - 1, 0, n_shells - 1)
        members = [np.flatnonzero(shell == s) for s in range(n_shells)]
        trees = [(cKDTree(v[mb]), cKDTree(-v[mb])) for mb in members]
        for a in range(n_shells):
            for b in range(a, n_shells):
                ra = max(r[members[a]].min() - radius_mm, radius_mm)
                rb = max(r[members[b]].min() - radius_mm, radius_mm)
                rho = 1.02 * (np.arcsin(min(1.0, radius_mm / ra)) + np.arcsin(min(1.0, radius_mm / rb)))
                sdm = trees[a][0].sparse_distance_matrix(trees[b][1], rho, output_type="ndarray")
                i, j = members[a][sdm["i"]], members[b][sdm["j"]]
                keep = (block[i] != block[j]) & ((i < j) | (a != b))
                i, j = i[keep], j[keep]
                keep = _pair_distance(glob[i], glob[j], x) <= radius_mm
                i, j = i[keep], j[keep]
                lo, hi = np.minimum(i, j), np.maximum(i, j)
                per_blob.append(np.stack([lo, hi, np.full(len(lo), k)], 1).astype(np.int64))
        e = np.concatenate(per_blob)
        w = 1.0
        if max_per_blob is not None and e.shape[0] > max_per_blob:
            w = e.shape[0] / max_per_blob
            e = e[rng.choice(e.shape[0], int(max_per_blob), replace=False)]
        out.append(e)
        weights.append(np.full(e.shape[0], w))
    if not out:
        return np.zeros((0, 3), np.int64), np.zeros(0)
    return np.concatenate(out), np.concatenate(weights)


def _pair_distance(a, b, x):
    u = b - a
    u = u / np.linalg.norm(u, axis=1, keepdims=True)
    w = x - a
    t = np.einsum("nk,nk->n", w, u)
    return np.sqrt(np.maximum(np.einsum("nk,nk->n", w, w) - t * t, 0.0))
