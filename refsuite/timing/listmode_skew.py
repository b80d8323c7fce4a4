"""First-order time-skew calibration and CTR of a whole scanner from its list-mode coincidences.

The detector-pair workflow of this package (Naunheim et al. 2025) calibrates two detectors; a
ring scanner after a hardware change needs the same first-order (analytic) step over all its
readout channels. A coincidence from a source at a known position ``x_s`` recorded by channels
``i`` (single 1) and ``j`` (single 2) measures

    t_1 - t_2 - (|p_1 - x_s| - |p_2 - x_s|) / c = delta_i - delta_j + noise,

``p`` the centres of the recorded crystal voxels; the per-pair means give the over-determined
system of :func:`refsuite.timing.skew.solve_pair_offsets` (Mann et al. 2009; Naunheim et al.
2025, ref. 59). The offsets are fixed up to a common constant, set to a zero mean.

A single centred source only pairs mirror-image channels (block ``k`` of ring ``r`` with block
``k + N/2`` of the mirrored ring), which leaves the system disconnected; the timing scan
therefore holds several point sources at known positions (one at the iso-centre for the CTR,
others off-centre to connect the channels), and every coincidence is attributed to the source
nearest its line of response (unambiguously, within ``max_source_distance_mm``).

Sign convention: a channel with offset ``delta`` reports ``t_true + delta``; calibrated
timestamps are ``t - delta``. Times in the event columns are ns (GATE), offsets in ps.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from refsuite._checks import check_finite, check_positive
from refsuite.constants import SPEED_OF_LIGHT_MM_PER_PS
from refsuite.events import crystal_ids

from .skew import SkewMethod, solve_pair_offsets

__all__ = ["ChannelGranularity", "ListmodeSkew", "apply_channel_skews", "channel_map", "listmode_ctr",
           "listmode_skew_calibration"]


class ChannelGranularity(enum.Enum):
    """Which crystal voxels share one time offset (one readout channel)."""

    BLOCK = "block"  #: one offset per detector block (a block-level trigger/TDC channel)
    CRYSTAL = "crystal"  #: one per planar crystal position (the DOI voxels of a column share it)


def channel_map(scanner, granularity=ChannelGranularity.BLOCK) -> np.ndarray:
    """Channel of every crystal voxel: int array (N, M) with values in ``[0, n_channels)``."""
    g = ChannelGranularity(granularity)
    n, m = scanner.n_blocks, scanner.n_crystals
    if g is ChannelGranularity.BLOCK:
        return np.repeat(np.arange(n), m).reshape(n, m)
    c = scanner.crystals.centres
    _, column = np.unique(np.round(c[:, [0, 2]], 6), axis=0, return_inverse=True)
    n_col = int(column.max()) + 1
    return np.arange(n)[:, None] * n_col + column.reshape(-1)[None, :]


def _ids(events, scanner):
    missing = [k for k in ("GlobalTime1", "GlobalTime2") if k not in events]
    if missing:
        raise ValueError(f"events lack the columns {missing} needed for the time-skew calibration")
    return tuple(crystal_ids(events, scanner).T)


def apply_channel_skews(events, scanner, skews_ps, *, granularity=ChannelGranularity.BLOCK):
    """A copy of ``events`` whose single timestamps carry per-channel offsets (ps).

    ``GlobalTime1/2`` (ns) become ``t + delta_channel``; the offsets are recorded in
    ``attrs["channel_skews_ps"]`` (the truth of a simulated timing scan).
    """
    ch = channel_map(scanner, granularity)
    skews = check_finite("skews_ps", skews_ps).reshape(-1)
    if skews.size != int(ch.max()) + 1:
        raise ValueError(f"skews_ps must have {int(ch.max()) + 1} values ({ChannelGranularity(granularity).value} "
                         f"channels of {scanner.name!r}), got {skews.size}")
    b1, c1, b2, c2 = _ids(events, scanner)
    out = type(events)(events, attrs=dict(getattr(events, "attrs", {})))
    out["GlobalTime1"] = np.asarray(events["GlobalTime1"], float) + skews[ch[b1, c1]] / 1000.0
    out["GlobalTime2"] = np.asarray(events["GlobalTime2"], float) + skews[ch[b2, c2]] / 1000.0
    out.attrs["channel_skews_ps"] = skews.tolist()
    out.attrs["channel_granularity"] = ChannelGranularity(granularity).value
    return out


def _sources(sources_mm):
    src = check_finite("sources_mm", sources_mm)
    if src.ndim not in (1, 2) or src.shape[-1] != 3:
        raise ValueError(f"sources_mm must be (3,) or (K, 3) mm, got shape {src.shape}")
    return src.reshape(-1, 3)


def _attribute(events, scanner, sources, limit_mm):
    """Index of the source each LOR passes within ``limit_mm`` of (unambiguously), else -1."""
    check_positive("max_source_distance_mm", limit_mm, unit="mm")
    b1, c1, b2, c2 = _ids(events, scanner)
    cc = scanner.crystal_centres()
    a, b = cc[b1, c1], cc[b2, c2]
    u = (b - a) / np.linalg.norm(b - a, axis=1, keepdims=True)
    d = np.empty((len(a), len(sources)))
    for k, x in enumerate(sources):
        w = x - a
        d[:, k] = np.linalg.norm(w - (w * u).sum(1, keepdims=True) * u, axis=1)
    near = d <= limit_mm
    return np.where(near.sum(1) == 1, np.argmax(near, axis=1), -1)


def _residuals(events, scanner, sources, granularity, limit_mm):
    """Channels (n, 2) ordered low-high, ``t_low - t_high - dt_expected`` (n,) ps and the source
    index (n,) of the attributed coincidences, and the number of channels."""
    b1, c1, b2, c2 = _ids(events, scanner)
    which = _attribute(events, scanner, sources, limit_mm)
    keep = which >= 0
    cc = scanner.crystal_centres()
    x = sources[which[keep]]
    d1 = np.linalg.norm(cc[b1[keep], c1[keep]] - x, axis=1)
    d2 = np.linalg.norm(cc[b2[keep], c2[keep]] - x, axis=1)
    dt = 1000.0 * (np.asarray(events["GlobalTime1"], float) - np.asarray(events["GlobalTime2"], float))[keep]
    ch = channel_map(scanner, granularity)
    pairs = np.stack([ch[b1[keep], c1[keep]], ch[b2[keep], c2[keep]]], 1)
    resid = dt - (d1 - d2) / SPEED_OF_LIGHT_MM_PER_PS
    # a coincidence sorter labels the earlier single "1" (GATE does), which truncates t1 - t2;
    # orienting every pair by channel number instead restores the full distribution
    swap = pairs[:, 0] > pairs[:, 1]
    pairs = np.where(swap[:, None], pairs[:, ::-1], pairs)
    return pairs, np.where(swap, -resid, resid), which[keep], int(ch.max()) + 1


@dataclass(frozen=True)
class ListmodeSkew:
    """Per-channel time offsets of a scanner (ps, zero mean), their standard errors (ps) and
    the number of coincidences each channel took part in."""

    offsets_ps: np.ndarray
    sigma_ps: np.ndarray
    counts: np.ndarray
    granularity: ChannelGranularity


def listmode_skew_calibration(events, scanner, *, sources_mm, granularity=ChannelGranularity.BLOCK,
                              method=SkewMethod.LEAST_SQUARES, min_pair_counts: int = 10,
                              max_source_distance_mm: float = 5.0) -> ListmodeSkew:
    """Per-channel time offsets from a point-source scan at a known position.

    Parameters
    ----------
    events : mapping of columns
        Coincidences with ``BlockID1/2``, ``CrystalID1/2`` and ``GlobalTime1/2`` (ns).
    scanner : Scanner
        Geometry of the crystal voxels (the accepted or blueprint geometry; a block moved by
        0.4 mm changes ``dt_expected`` by 1.3 ps at most).
    sources_mm : (K, 3) float
        Known point-source positions, mm (see the module note on connectivity).
    granularity : ChannelGranularity
    method : SkewMethod
        Least squares on pair means or the robust L1 fit on pair medians.
    min_pair_counts : int
        Channel pairs with fewer coincidences are left out.
    max_source_distance_mm : float
        A coincidence is attributed to the one source its LOR (between the voxel centres)
        passes within this distance of; others (outliers, ambiguous) are dropped, mm.

    Returns
    -------
    ListmodeSkew
    """
    g = ChannelGranularity(granularity)
    if int(min_pair_counts) != min_pair_counts or min_pair_counts < 2:
        raise ValueError(f"min_pair_counts must be an integer >= 2, got {min_pair_counts!r}")
    pairs, resid, _, n_ch = _residuals(events, scanner, _sources(sources_mm), g, max_source_distance_mm)
    robust = SkewMethod(method) is SkewMethod.L1
    pid = pairs[:, 0] * n_ch + pairs[:, 1]
    order = np.argsort(pid, kind="stable")
    pid, resid = pid[order], resid[order]
    uniq, start, counts = np.unique(pid, return_index=True, return_counts=True)
    use = counts >= min_pair_counts
    if not use.any():
        raise ValueError(f"no channel pair has >= min_pair_counts={min_pair_counts} coincidences")
    groups = np.split(resid, start[1:])
    centre = np.array([np.median(g_) if robust else g_.mean() for g_ in groups])
    spread = np.array([g_.std(ddof=1) if len(g_) > 1 else np.inf for g_ in groups])
    stderr = spread / np.sqrt(counts) * (np.sqrt(np.pi / 2) if robust else 1.0)
    p = np.stack([uniq // n_ch, uniq % n_ch], 1)[use]
    x, s = solve_pair_offsets(p, centre[use], stderr[use], n_ch, method=method, return_uncertainty=True,
                              channel_label=lambda i: f"channel {i}")
    per_channel = np.bincount(p.ravel(), weights=np.repeat(counts[use], 2), minlength=n_ch)
    return ListmodeSkew(x, s, per_channel.astype(np.int64), g)


def listmode_ctr(events, scanner, *, sources_mm, offsets_ps=None, granularity=ChannelGranularity.BLOCK,
                 max_source_distance_mm: float = 5.0, source_index=None):
    """Coincidence time resolution at one source (the iso-centre by default), ps.

    FWHM of ``t1 - t2 - dt_expected`` minus the channel offsets, for the coincidences
    attributed to source ``source_index`` (default: the source nearest the iso-centre), from a
    Poisson-weighted Gaussian fit (:func:`refsuite.metrics.timing.ctr_fwhm`: ``fwhm``,
    ``fwhm_err`` in ps).
    """
    from refsuite.metrics.timing import ctr_fwhm

    src = _sources(sources_mm)
    k = int(np.argmin(np.linalg.norm(src, axis=1))) if source_index is None else int(source_index)
    if not 0 <= k < len(src):
        raise ValueError(f"source_index must be in [0, {len(src) - 1}], got {source_index!r}")
    pairs, resid, which, n_ch = _residuals(events, scanner, src, granularity, max_source_distance_mm)
    if offsets_ps is not None:
        off = check_finite("offsets_ps", offsets_ps).reshape(-1)
        if off.size != n_ch:
            raise ValueError(f"offsets_ps must have {n_ch} values, got {off.size}")
        resid = resid - (off[pairs[:, 0]] - off[pairs[:, 1]])
    return ctr_fwhm(resid[which == k])
