"""Azimuthal acceleration of the block culling for scanners arranged around the z axis.

Every block box lies in an annulus ``r_in <= sqrt(x^2 + y^2) <= r_out``, in its own azimuth
interval (as seen from the z axis) and its own z interval, all taken from the box corners of
the actual (possibly misaligned) scanner. A ray starting inside ``r_in`` is in that annulus
exactly on one segment ``t in [t(r_in), t(r_out)]`` of its path (the squared radius is a
convex quadratic in ``t``), on which its azimuth is monotonic (the segment cannot pass the
axis) and its z linear. So a block can only be crossed where the ray's azimuth arc and z
range on that segment overlap the block's. This bounding test is conservative (a superset
of the true crossings; the exact slab test of :mod:`refsuite.geometry.tracing` follows, so the
hits are the brute-force ones bit for bit) and only looks at the few blocks whose azimuth
interval starts in a window of the sorted starts (a cell table replaces the binary search).
Azimuths are "diamond" pseudo-angles (monotone, no trigonometry). Rays starting at or
beyond ``r_in``, and scanners where the axis passes through a block's projection, fall back
to the brute-force bounding-sphere test of :func:`refsuite.geometry.tracing._cull`.

The same segment bounds a photon's path through all blocks (its length within the blocks'
z range): a photon whose sampled depth exceeds it cannot interact and is dropped before the
candidate search (:func:`_path_bound`; not for scanners with overlapping blocks, whose chords
would count twice).

All bounds are widened by margins (:data:`_MARGIN_MM`, :data:`_MARGIN_RAD`) far larger than
float64 rounding, so no crossing is ever lost; they only add candidates. Checked against
brute force on random rays and perturbed scanners in ``tests/test_mc_accel.py``.
"""

from __future__ import annotations

import numpy as np

from .clearance import overlapping_blocks

_MARGIN_MM = 1e-3
_MARGIN_RAD = 1e-6  # pseudo-angle units (d pseudo / d azimuth is in [1/2, 1]: >= 1e-6 rad)
_TURN = 4.0  # one turn of the pseudo-angle
_CELLS = 2048  # lookup cells per turn
_DENSE_SLACK = 1024  # dense candidate table unless it is over twice the ragged one (+ this)


def _pseudo_angle(x, y):
    """Azimuth of (x, y) as a cheap monotone "diamond angle" in [0, 4) (no trigonometry).

    Increases with the true azimuth atan2(y, x) mod 2 pi, and a half turn adds exactly 2, so
    arcs, their order and "shorter than half a turn" carry over; only lengths are distorted.
    """
    ax, ay = np.abs(x), np.abs(y)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = y / (ax + ay)  # in [-1, 1]: (-1 .. 1) from -y axis through +x to +y axis
    return np.where(x >= 0, np.where(r < 0, 4.0 + r, r), 2.0 - r)


class RingIndex:
    """Azimuth-sorted blocks of a scanner (built once per scanner and call).

    Attributes
    ----------
    usable : bool
        False when some block's xy projection contains (or nearly touches) the z axis: then
        every ray uses the brute-force culling.
    r_in, r_out : float
        Annulus containing every block (mm), ``r_in`` shrunk and ``r_out`` grown by the margin.
    """

    def __init__(self, scanner):
        corners = scanner.block_corners()  # (B, 8, 3), mm
        xy = corners[..., :2]
        z = corners[..., 2]
        self.n_blocks = corners.shape[0]
        self.zlo = z.min(1) - _MARGIN_MM
        self.zhi = z.max(1) + _MARGIN_MM
        self.zlo_all, self.zhi_all = float(self.zlo.min()), float(self.zhi.max())
        phi = np.sort(_pseudo_angle(xy[..., 0], xy[..., 1]), axis=1)
        gaps = np.diff(np.concatenate([phi, phi[:, :1] + _TURN], 1), axis=1)
        big = np.argmax(gaps, 1)
        rows = np.arange(self.n_blocks)
        # the axis is outside a block's projection iff its corners leave an azimuth gap > pi;
        # the block then lies in the cone after that gap (its hull is inside the convex cone)
        start = phi[rows, (big + 1) % 8] + np.where(big == 7, _TURN, 0.0)
        width = _TURN - gaps[rows, big]
        self.usable = bool(np.all(gaps[rows, big] > _TURN / 2 + 1e-9))
        r_min = _axis_distance(xy)
        self.r_in = float(r_min.min()) - _MARGIN_MM
        self.r_out = float(np.sqrt((xy**2).sum(-1)).max()) + _MARGIN_MM
        # (a ray segment in the annulus then subtends clearly less than half a turn)
        self.usable &= self.r_in > 10 * _MARGIN_MM and self.r_in > 1e-6 * self.r_out
        if not self.usable:
            return
        # depth pruning bounds the summed block chords by the geometric path: only valid if
        # no two blocks overlap (misaligned scanners can make neighbours overlap)
        self.prunable = not _blocks_overlap(scanner)
        start = np.mod(start - _MARGIN_RAD, _TURN)
        self.width = width + 2 * _MARGIN_RAD
        self.w_max = float(self.width.max())
        # blocks sorted by azimuth start, unrolled over three turns so that an arc starting in
        # the first turn [0, 4) finds its blocks in one contiguous, unwrapped slot range
        order = np.argsort(start, kind="stable")
        n_slots = 3 * self.n_blocks
        pad = 2 * self.n_blocks  # sentinels for the dense table in _side (start = end = +inf)
        self.slot_block = np.concatenate([np.tile(order, 3), np.zeros(pad, np.int64)])
        self.slot_start = np.concatenate([start[order] + m * _TURN for m in (-1, 0, 1)] + [np.full(pad, np.inf)])
        self.slot_end = self.slot_start + self.width[self.slot_block]
        self.slot_zlo = np.where(np.isinf(self.slot_start), np.inf, self.zlo[self.slot_block])
        self.slot_zhi = np.where(np.isinf(self.slot_start), -np.inf, self.zhi[self.slot_block])
        # searchsorted through a table: slot ranges for pseudo-angle cells of 1/_CELLS turn,
        # widened to whole cells (the extra slots fail the interval test below)
        edges = np.arange(-_TURN, 2 * _TURN + 1e-12, _TURN / _CELLS)
        self.cell_lo = np.searchsorted(self.slot_start[:n_slots], edges[:-1])
        self.cell_hi = np.searchsorted(self.slot_start[:n_slots], edges[1:], side="right")

    def inside(self, origin):
        """Rays that may use the index: origin strictly inside ``r_in`` (bool (n,))."""
        return origin[:, 0] ** 2 + origin[:, 1] ** 2 < self.r_in**2

    def candidates(self, origin, direction, *, both_ways=False, pairs_only=False, depths=None):
        """Candidate (photon, block) pairs of rays starting inside ``r_in``, photon-major.

        Same contract as :func:`refsuite.geometry.tracing._cull`: every block the ray crosses is a
        candidate (plus a few it does not cross); with ``both_ways`` also those of the ray
        along ``-direction``. Within one photon, blocks are not in ascending order. With
        ``pairs_only`` (and ``both_ways``), rays that cannot reach the blocks' z range in
        both senses are left out altogether (their pair cannot be detected).

        ``depths`` (one per sense, or only the first: array (n,) or callable of photon
        indices, in units of ``t``) prunes photons that cannot interact: their depth exceeds the ray's path in
        the annulus within the blocks' z range, which bounds its path through all blocks
        (see :func:`_path_bound`). Their (or, with ``pairs_only``, their pair's) candidates
        are left out; a photon that can interact keeps all of its candidates. Not applied
        when blocks overlap (``prunable`` False): overlaps count twice in the chord sum.
        """
        ox, oy, oz = origin[:, 0], origin[:, 1], origin[:, 2]
        dx, dy, dz = direction[:, 0], direction[:, 1], direction[:, 2]
        # (in place where possible: these passes run over every photon)
        a = dx * dx
        a += dy * dy
        b = ox * dx
        b += oy * dy
        c0 = ox * ox
        c0 += oy * oy
        bb = b * b
        roots = []
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            for r in (self.r_in, self.r_out):
                c = c0 - r * r  # < 0 inside
                # stable roots q / a, c / q with q = -(b + sign(b) sqrt(b^2 - a c))
                q = a * c
                np.subtract(bb, q, out=q)
                np.sqrt(q, out=q)
                np.copysign(q, b, out=q)
                q += b
                np.negative(q, out=q)
                t1 = q / a
                t2 = np.divide(c, q, out=c)
                roots.append((np.maximum(t1, t2), np.minimum(t1, t2, out=t1)))
            sides = []
            for k in range(2 if both_ways else 1):
                t_a, t_b = roots[0][k], roots[1][k]
                za = t_a * dz
                za += oz
                zb = t_b * dz
                zb += oz
                z0 = np.minimum(za, zb)
                z0 -= _MARGIN_MM
                z1 = np.maximum(za, zb, out=za)
                z1 += _MARGIN_MM
                # NaN roots (axis-parallel rays, which keep a radius < r_in) are not live
                live = z1 >= self.zlo_all
                live &= z0 <= self.zhi_all
                sides.append([t_a, t_b, z0, z1, live])
        n_sides = len(sides)
        if both_ways and pairs_only:
            live = sides[0][4] & sides[1][4]
            sel = np.flatnonzero(live)
            if depths is not None and self.prunable:
                keep = self._reachable(sel, sides[0], dz, depths[0])
                keep &= self._reachable(sel, sides[1], dz, depths[1])
                sel = np.compress(keep, sel)
            sels = [sel, None]
        else:
            sels = []
            for k in range(n_sides):
                sel = np.flatnonzero(sides[k][4])
                if depths is not None and self.prunable and k < len(depths):
                    sel = np.compress(self._reachable(sel, sides[k], dz, depths[k]), sel)
                sels.append(sel)
        out = []
        for k, (t_a, t_b, z0, z1, _) in enumerate(sides):
            if k == 1 and pairs_only:  # the other sense only for rays with a candidate in this one
                r = out[0][0]  # photon-major: distinct rays where the index changes
                sel = r[np.concatenate([[True], r[1:] != r[:-1]])] if len(r) else r
            else:
                sel = sels[k]
            ray, blk = self._side(*(np.take(v, sel) for v in (t_a, t_b, z0, z1, ox, oy, dx, dy)))
            out.append((np.take(sel, ray), blk))
        return tuple(out) if both_ways else out[0]

    def _reachable(self, sel, side, dz, depth):
        """Which rays ``sel`` of one sense may interact: depth <= :func:`_path_bound`."""
        t_a, t_b, z0, z1, _ = side
        s = depth(sel) if callable(depth) else np.take(depth, sel)
        # (z ranges widened by the margins: a larger overlap, still a bound)
        bound = _path_bound(*(np.take(v, sel) for v in (t_a, t_b, z0, z1)), np.abs(np.take(dz, sel)),
                            self.zlo_all, self.zhi_all)
        return s < bound

    def _side(self, t_a, t_b, z0, z1, ox, oy, dx, dy):
        """Candidates along one sense of live rays: ``t_a``, ``t_b`` the r_in and r_out
        crossings, ``[z0, z1]`` the z range between them."""
        pa = _pseudo_angle(ox + t_a * dx, oy + t_a * dy)
        pb = _pseudo_angle(ox + t_b * dx, oy + t_b * dy)
        # the segment subtends less than half a turn: the short arc is the right one
        delta = pb - pa
        delta = np.where(delta > _TURN / 2, delta - _TURN, np.where(delta < -_TURN / 2, delta + _TURN, delta))
        s = np.where(delta >= 0, pa, pb) - _MARGIN_RAD
        span = np.abs(delta) + 2 * _MARGIN_RAD
        e = s + span
        # cells of s - w_max and s + span (s in [-margin, 4): both inside the three turns)
        scale = _CELLS / _TURN
        lo = self.cell_lo[((s - self.w_max + _TURN) * scale).astype(np.int64)]
        n_c = self.cell_hi[((e + _TURN) * scale).astype(np.int64)] - lo
        k_max = int(n_c.max()) if len(n_c) else 0
        fits = int(lo.max(initial=0)) + k_max <= len(self.slot_start)
        if fits and k_max * len(n_c) <= 2 * int(n_c.sum()) + _DENSE_SLACK:
            # dense (ray, k) table: no repeat/cumsum; slots past a ray's range are either real
            # blocks failing the interval test or sentinels (start = +inf) that fail it too
            slot = lo[:, None] + np.arange(k_max)
            keep = np.take(self.slot_end, slot) >= s[:, None]
            keep &= np.take(self.slot_start, slot) <= e[:, None]
            keep &= np.take(self.slot_zlo, slot) <= z1[:, None]
            keep &= np.take(self.slot_zhi, slot) >= z0[:, None]
            flat = np.flatnonzero(keep)
            return flat // k_max, np.take(self.slot_block, np.take(slot, flat))
        ray = np.repeat(np.arange(len(s)), n_c)
        slot = np.repeat(lo - (np.cumsum(n_c) - n_c), n_c) + np.arange(len(ray))
        blk = self.slot_block[slot]
        keep = self.slot_end[slot] >= s[ray]
        keep &= self.slot_start[slot] <= e[ray]
        keep &= z1[ray] >= self.zlo[blk]
        keep &= z0[ray] <= self.zhi[blk]
        return ray[keep], blk[keep]


def _path_bound(t_a, t_b, z0, z1, adz, zlo, zhi):
    """Upper bound of a ray's path (units of ``t``) inside all blocks: its segment
    ``[t_a, t_b]`` in the annulus (which contains every block), times the fraction of that
    segment in the blocks' z range ``[zlo, zhi]`` (``[z0, z1]``: the segment's own z range).

    The first interaction is at block-material depth ``s``; :func:`refsuite.geometry.tracing._exact`
    gives a hit only when ``s`` is less than the sum of the ray's block chords, which is at
    most this bound. Widened by far more than float64 rounding, so no interacting photon is
    ever pruned.
    """
    length = np.abs(t_b - t_a)
    with np.errstate(divide="ignore", invalid="ignore"):
        in_z = (np.minimum(z1, zhi) - np.maximum(z0, zlo)) / adz  # path within the z range
    # NaN (dz = 0: a z range of zero width) keeps the annulus length
    bound = np.fmin(length, in_z)
    return bound * (1.0 + 1e-9) + _MARGIN_MM


def _blocks_overlap(scanner, tol_mm=1e-9):
    """Whether any two blocks overlap by more than ``tol_mm`` (exact penetration depth,
    :func:`refsuite.geometry.overlapping_blocks`).

    Boxes that merely touch (shared faces, up to rounding) do not count: a ray can only run
    along a shared face on a set of measure zero.
    """
    return len(overlapping_blocks(scanner, tolerance_mm=tol_mm)) > 0


def _axis_distance(xy):
    """Distance (mm) from the z axis to the convex hull of each block's projected corners.

    The minimum over all 28 corner-to-corner segments: hull edges are among them and the
    other segments lie inside the hull (valid when the axis is outside the hull).
    """
    i, j = np.triu_indices(8, 1)
    p, q = xy[:, i], xy[:, j]
    e = q - p
    ee = (e * e).sum(-1)
    s = np.clip(-(p * e).sum(-1) / np.where(ee > 0, ee, 1.0), 0.0, 1.0)
    d = p + s[..., None] * e
    return np.sqrt((d * d).sum(-1)).min(1)
