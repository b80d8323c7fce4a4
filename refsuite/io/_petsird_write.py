"""Writing PETSIRD files: :class:`PetsirdWriter` streams coincidences into a file time block
by time block, :func:`write_petsird` writes a whole scan at once.

The mapping of refsuite's scanner and events onto PETSIRD (module types, detection bins, the TOF
sign, time blocks, energy windows) is described in :mod:`refsuite.io.petsird`. PETSIRD's Python
package encodes every coincidence as a Python object, so writing costs a few tens of
microseconds per coincidence (minutes per ten million); :class:`PetsirdWriter` keeps only the
time blocks not yet written in memory.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from refsuite._checks import check_choice, check_finite, check_positive
from refsuite.constants import SPEED_OF_LIGHT_MM_PER_NS, SPEED_OF_LIGHT_MM_PER_PS

from ._petsird_geometry import crystal_types, scanner_geometry
from .atomic import atomic_open

__all__ = ["PETSIRD_SUFFIXES", "PetsirdWriter", "petsird_suffix_format", "write_petsird"]

#: File names ``refsuite`` treats as PETSIRD when writing (reading goes by content):
#: ``.ndjson`` is written as NDJSON text, the others as the binary stream.
PETSIRD_SUFFIXES = (".petsird", ".bin", ".ndjson")
_ID_COLUMNS = ("BlockID1", "CrystalID1", "BlockID2", "CrystalID2")
_NO_EVENTS = tuple(np.zeros(0, np.int64) for _ in range(5))


def petsird_suffix_format(path) -> str | None:
    """PETSIRD encoding refsuite writes a file named ``path`` in: ``"ndjson"`` (``.ndjson``),
    ``"binary"`` (``.petsird``, ``.bin``), else None (not a PETSIRD name)."""
    suffix = Path(path).suffix.lower()
    if suffix not in PETSIRD_SUFFIXES:
        return None
    return "ndjson" if suffix == ".ndjson" else "binary"


def _tof_width_mm(width_ps):
    """TOF bin width in mm of ``(t1 - t2) c / 2``: the expression of
    :meth:`refsuite.projectors.TOFParameters.from_ctr`, so both bin alike."""
    return SPEED_OF_LIGHT_MM_PER_PS * width_ps / 2.0


def _tof_edges_mm(width_ps, n_bins, reach_ps):
    """Symmetric TOF bin edges (mm of ``(t1 - t2) c / 2``), ``n_bins`` of ``width_ps`` centred on 0;
    without ``n_bins`` the fewest odd number covering ``|t1 - t2| <= reach_ps``."""
    if n_bins is None:
        n_bins = 2 * max(0, math.ceil(reach_ps / width_ps - 0.5)) + 1
    return ((np.arange(n_bins + 1) - n_bins / 2.0) * _tof_width_mm(width_ps)).astype(np.float32)


def _tof_index(tof_mm, width_mm, n_bins):
    """TOF bin of each signed offset (mm): ``round(s / w)`` from the middle bin when ``n_bins`` is
    odd, ``floor(s / w)`` from the upper middle one when even. Computed in float64 from the
    width, as refsuite's TOF projectors and :func:`refsuite.alignment.align` bin, not from the
    file's float32 edges: an offset within their rounding (~1e-7 of the range) of an edge would
    otherwise fall into the neighbouring bin of the one the alignment gives it through ROOT."""
    q = tof_mm / width_mm
    return (np.round(q) + (n_bins - 1) // 2 if n_bins % 2 else np.floor(q) + n_bins // 2).astype(np.int64)


def _scanner_info(scanner, kind, half, *, tof_edges, energy_edges, ctr_ps, energy_resolution, efficiencies,
                  efficiency_method, c_mm_per_ns, has_delayeds):
    import petsird

    n_types = len(half)
    tof_mm = 0.0 if ctr_ps is None else c_mm_per_ns * 1e-3 * float(ctr_ps) / 2.0
    info = petsird.ScannerInformation(
        model_name=scanner.name, scanner_geometry=scanner_geometry(scanner, kind, half),
        bulk_materials=[petsird.BulkMaterial(id=0, name=scanner.material)], collimator_type="NONE",
        tof_bin_edges=[[petsird.BinEdges(edges=tof_edges.copy()) for _ in range(k + 1)] for k in range(n_types)],
        tof_resolution=[[tof_mm] * (k + 1) for k in range(n_types)],
        event_energy_bin_edges=[petsird.BinEdges(edges=energy_edges.copy()) for _ in range(n_types)],
        energy_resolution_at_511=[float(energy_resolution or 0.0)] * n_types,
        prompt_event_policy=petsird.CoincidencePolicy.REJECT_HIGHER_MULTIPLES,
        delayed_event_policy=(petsird.CoincidencePolicy.REJECT_HIGHER_MULTIPLES if has_delayeds
                              else petsird.CoincidencePolicy.NONE))
    eff = petsird.DetectionEfficiencies(method_description=efficiency_method, calibration_factor=1.0)
    if efficiencies is not None:
        n_en = len(energy_edges) - 1
        eff.detection_bin_efficiencies = [
            np.repeat(efficiencies[:, kind == k].reshape(-1), n_en).astype(np.float32).tolist()
            for k in range(n_types)]
    info.detection_efficiencies = eff
    return info


def _encode(events, which, kind, element, n_el, tof_edges, tof_width_mm, energy_edges, c_mm_per_ns, block_ns):
    """Per event: time block, module-type pair, the two detection bins and the TOF index."""
    b = [np.asarray(events[f"BlockID{k}"]).astype(np.int64) for k in (1, 2)]
    c = [np.asarray(events[f"CrystalID{k}"]).astype(np.int64) for k in (1, 2)]
    t = [np.asarray(events[f"GlobalTime{k}"], float) for k in (1, 2)]
    e_kev = [1e3 * np.asarray(events[f"TotalEnergyDeposit{k}"], float) for k in (1, 2)]
    n_en = len(energy_edges) - 1
    en = []
    # the edges are float32: an energy inside the window but within its rounding of an end is inside
    tol = 1e-6 * float(np.abs(energy_edges).max())
    for k in (1, 2):
        idx = np.searchsorted(energy_edges, e_kev[k - 1], side="right") - 1
        inside = (e_kev[k - 1] >= energy_edges[0] - tol) & (e_kev[k - 1] <= energy_edges[-1] + tol)
        en.append(np.where(inside, np.clip(idx, 0, n_en - 1), -1))
    bad = (en[0] < 0) | (en[0] >= n_en) | (en[1] < 0) | (en[1] >= n_en)
    if bad.any():
        raise ValueError(f"{which}: {int(bad.sum())} events have an energy outside energy_window_kev "
                         f"[{energy_edges[0]:g}, {energy_edges[-1]:g}] keV (first {e_kev[0][bad][0]:.6g} / "
                         f"{e_kev[1][bad][0]:.6g} keV)")
    kk = [kind[ci] for ci in c]
    bins = [en[j] + (element[c[j]] + b[j] * n_el[kk[j]]) * n_en for j in range(2)]
    tof = c_mm_per_ns * (t[0] - t[1]) / 2.0
    swap = (kk[0] < kk[1]) | ((kk[0] == kk[1]) & (bins[0] < bins[1]))
    ka, kb = np.where(swap, kk[1], kk[0]), np.where(swap, kk[0], kk[1])
    bin_a, bin_b = np.where(swap, bins[1], bins[0]), np.where(swap, bins[0], bins[1])
    tof = np.where(swap, -tof, tof)
    edges = tof_edges.astype(float)
    tof_idx = _tof_index(tof, tof_width_mm, len(edges) - 1)
    bad = (tof_idx < 0) | (tof_idx >= len(edges) - 1)
    if bad.any():
        raise ValueError(f"{which}: {int(bad.sum())} events have |t1 - t2| beyond the TOF range "
                         f"{2e3 * edges[-1] / c_mm_per_ns:.6g} ps (first {1e3 * (t[0] - t[1])[bad][0]:.6g} ps); "
                         "increase n_tof_bins or tof_bin_width_ps")
    block = np.floor(np.minimum(t[0], t[1]) / block_ns).astype(np.int64)
    if block.size and (block.min() < 0 or (block.max() + 1) * block_ns / 1e6 > 2**32 - 1):
        raise ValueError(f"{which}: GlobalTime must lie in [0, 2^32) ms for PETSIRD time blocks, got "
                         f"{np.minimum(t[0], t[1]).min():.6g} .. {np.minimum(t[0], t[1]).max():.6g} ns")
    return block, ka * (ka + 1) // 2 + kb, bin_a, bin_b, tof_idx


def _time_blocks(encoded, n_types, block_ms):
    """``petsird.TimeBlock`` per time block holding events (prompts, delayeds), in time order."""
    import petsird

    blocks = np.unique(np.concatenate([enc[0] for enc in encoded if enc is not None] or [np.zeros(0, np.int64)]))
    sorted_enc = []
    for enc in encoded:
        if enc is None:
            sorted_enc.append(None)
            continue
        order = np.lexsort((enc[1], enc[0]))  # stable: original order within a block and type pair
        blk, pair, a, b, tof = (v[order] for v in enc)
        sorted_enc.append((blk, pair, a.tolist(), b.tolist(), tof.tolist()))
    for blk_id in blocks.tolist():
        lists = []
        for j, enc in enumerate(sorted_enc):
            if enc is None:  # no prompts: empty lists per type pair; no delayeds: size 0 (policy none)
                lists.append([[[] for _ in range(k1 + 1)] for k1 in range(n_types)] if j == 0 else [])
                continue
            blk, pair, a, b, tof = enc
            i0, i1 = np.searchsorted(blk, [blk_id, blk_id + 1])
            mat = []
            for k1 in range(n_types):
                row = []
                for k2 in range(k1 + 1):
                    j0, j1 = (i0 + np.searchsorted(pair[i0:i1], [k1 * (k1 + 1) // 2 + k2,
                                                                  k1 * (k1 + 1) // 2 + k2 + 1])).tolist()
                    row.append([petsird.CoincidenceEvent(detection_bins=[a[j], b[j]], tof_idx=tof[j])
                                for j in range(j0, j1)])
                mat.append(row)
            lists.append(mat)
        interval = petsird.TimeInterval(start=blk_id * block_ms, stop=(blk_id + 1) * block_ms)
        yield petsird.TimeBlock.EventTimeBlock(petsird.EventTimeBlock(
            time_interval=interval, prompt_events=lists[0], delayed_events=lists[1]))


def _check_event_table(name, events, scanner):
    from .root import REQUIRED_COLUMNS

    if not isinstance(events, dict):
        raise TypeError(f"{name} must be a dict of column name -> array (Events), got {type(events).__name__}")
    missing = [c for c in (*REQUIRED_COLUMNS, *_ID_COLUMNS) if c not in events]
    if missing:
        raise ValueError(f"{name} lack the columns {missing}; crystal ids come from "
                         "refsuite.io.read_coincidences(path, scanner=...)")
    lengths = {len(np.asarray(events[c])) for c in (*REQUIRED_COLUMNS, *_ID_COLUMNS)}
    if len(lengths) != 1:
        raise ValueError(f"{name} columns must have equal lengths, got {sorted(lengths)}")
    for col, hi in (("BlockID", scanner.n_blocks), ("CrystalID", scanner.n_crystals)):
        v = np.concatenate([np.asarray(events[f"{col}1"]), np.asarray(events[f"{col}2"])])
        if v.size and (v.min() < 0 or v.max() >= hi):
            raise ValueError(f"{name}: {col} values must lie in [0, {hi - 1}] for scanner {scanner.name!r}, "
                             f"got {int(v.min())} .. {int(v.max())}")




def _integer(name, v, lo):
    if v is not None and (isinstance(v, bool) or int(v) != v or v < lo):
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")


class PetsirdWriter:
    """Stream coincidences into one PETSIRD file; the file appears only on a clean exit.

    >>> with PetsirdWriter("run.petsird", scanner, ctr_ps=250.0) as w:     # doctest: +SKIP
    ...     for cols, _ in iter_simulate(scanner, phantom, n_decays=10**7, seed=1):
    ...         w.write(cols)

    The header (scanner, TOF and energy bins, efficiencies) is written when the ``with`` block
    opens, so everything it holds is fixed here. Events are held until their time block is
    complete: a block is written once an event ``max_disorder_ns`` later than its end has
    arrived, so chunks must come in time order up to that disorder (an earlier event is an
    error). Memory: the events of the blocks not yet written.

    Parameters
    ----------
    path : str or Path
    scanner : Scanner
        The header's scanner (see :func:`write_petsird`); the events' ids index it.
    delayeds : bool
        Whether delayed coincidences are recorded (the header's delayed-event policy).
    efficiencies, format, tof_bin_width_ps, n_tof_bins, energy_window_kev, n_energy_bins, ctr_ps,
    energy_resolution, time_block_ms, efficiency_method
        As :func:`write_petsird`; ``energy_window_kev`` defaults to (450, 650) keV.
    coincidence_window_ps : float
        Without ``n_tof_bins``: the TOF bins cover ``|t1 - t2| <= coincidence_window_ps``.
    max_disorder_ns : float
        How much earlier than the latest event an event may still come, ns.
    """

    def __init__(self, path, scanner, *, delayeds: bool = False, efficiencies=None, format: str = "binary",
                 tof_bin_width_ps: float = 25.0, n_tof_bins: int | None = None, coincidence_window_ps: float = 5000.0,
                 energy_window_kev=(450.0, 650.0), n_energy_bins: int = 1, ctr_ps: float | None = None,
                 energy_resolution: float | None = None, time_block_ms: int = 1, efficiency_method: str = "",
                 max_disorder_ns: float = 1000.0):
        import petsird  # noqa: F401  (fail early when the dependency is missing)

        from refsuite.geometry import Scanner

        if not isinstance(scanner, Scanner):
            raise TypeError(f"scanner must be a refsuite.geometry.Scanner, got {type(scanner).__name__}")
        check_choice("format", format, ("binary", "ndjson"))
        width = float(check_positive("tof_bin_width_ps", tof_bin_width_ps, unit="ps"))
        for name, v in (("n_tof_bins", n_tof_bins), ("n_energy_bins", n_energy_bins), ("time_block_ms", time_block_ms)):
            _integer(name, v, 1)
        check_positive("coincidence_window_ps", coincidence_window_ps, unit="ps")
        if not max_disorder_ns >= 0:
            raise ValueError(f"max_disorder_ns must be >= 0 ns, got {max_disorder_ns!r}")
        lo, hi = check_finite("energy_window_kev", energy_window_kev).reshape(2)
        if not 0 <= lo < hi:
            raise ValueError(f"energy_window_kev must be (low, high) with 0 <= low < high keV, got {energy_window_kev!r}")
        if ctr_ps is not None:
            check_positive("ctr_ps", ctr_ps, unit="ps")
        eff = None
        if efficiencies is not None:
            eff = check_finite("efficiencies", efficiencies)
            if eff.shape != (scanner.n_blocks, scanner.n_crystals) or np.any(eff < 0):
                raise ValueError(f"efficiencies must be >= 0 with shape ({scanner.n_blocks}, {scanner.n_crystals}), "
                                 f"got shape {eff.shape}")
        self.path, self.scanner, self.format = Path(path), scanner, format
        self._kind, self._element, half = crystal_types(scanner.crystals)
        self._n_el = np.bincount(self._kind, minlength=len(half))
        self._n_types = len(half)
        self._tof_edges = _tof_edges_mm(width, n_tof_bins, float(coincidence_window_ps))
        self._tof_width_mm = _tof_width_mm(width)
        self._energy_edges = np.linspace(lo, hi, int(n_energy_bins) + 1).astype(np.float32)
        self._block_ms, self._block_ns = int(time_block_ms), int(time_block_ms) * 1e6
        self._max_disorder_ns = float(max_disorder_ns)
        self._delayeds = bool(delayeds)
        self._info = _scanner_info(scanner, self._kind, half, tof_edges=self._tof_edges,
                                   energy_edges=self._energy_edges, ctr_ps=ctr_ps, energy_resolution=energy_resolution,
                                   efficiencies=eff, efficiency_method=efficiency_method,
                                   c_mm_per_ns=SPEED_OF_LIGHT_MM_PER_NS, has_delayeds=self._delayeds)
        self._pending = [[], []]  # encoded chunks of prompts, delayeds not yet written
        self._written_below = None  # every time block below this index is written
        self._latest_ns = -math.inf
        self.n_prompts = self.n_delayeds = 0

    def __enter__(self):
        import petsird

        self._atomic = atomic_open(self.path, "wb" if self.format == "binary" else "w")
        fh = self._atomic.__enter__()
        try:
            cls = petsird.BinaryPETSIRDWriter if self.format == "binary" else petsird.NDJsonPETSIRDWriter
            self._writer = cls(fh)
            self._writer.write_header(petsird.Header(scanner=self._info))
        except BaseException:
            self._atomic.__exit__(*sys.exc_info())
            raise
        return self

    def write(self, prompts=None, delayeds=None) -> None:
        """Append coincidences: Events (or dicts of columns) with ``BlockID1/2``, ``CrystalID1/2``,
        ``GlobalTime1/2`` (ns, >= 0) and ``TotalEnergyDeposit1/2`` (MeV); either may be None."""
        if delayeds is not None and not self._delayeds:
            raise ValueError("delayeds given to a PetsirdWriter opened with delayeds=False")
        encoded = []
        for name, table in (("events", prompts), ("delayeds", delayeds)):
            if table is None:
                encoded.append(None)
                continue
            _check_event_table(name, table, self.scanner)
            enc = _encode(table, name, self._kind, self._element, self._n_el, self._tof_edges, self._tof_width_mm,
                          self._energy_edges.astype(float), SPEED_OF_LIGHT_MM_PER_NS, self._block_ns)
            if self._written_below is not None and enc[0].size and enc[0].min() < self._written_below:
                raise ValueError(f"{name}: an event of time block {int(enc[0].min())} ({self._block_ms} ms each) "
                                 f"came after block {self._written_below - 1} was written: events must come in time "
                                 f"order up to max_disorder_ns = {self._max_disorder_ns:g} ns")
            encoded.append(enc)
        for j, enc in enumerate(encoded):
            if enc is not None and enc[0].size:
                self._pending[j].append(enc)
                self._latest_ns = max(self._latest_ns, float(enc[0].max()) * self._block_ns)
        self.n_prompts += 0 if encoded[0] is None else len(encoded[0][0])
        self.n_delayeds += 0 if encoded[1] is None else len(encoded[1][0])
        if math.isfinite(self._latest_ns - self._max_disorder_ns):  # blocks no later event can fall into
            self._flush(math.floor((self._latest_ns - self._max_disorder_ns) / self._block_ns))

    def _flush(self, below) -> None:
        """Write the pending time blocks below index ``below`` (None: all)."""
        ready, keep = [], []
        for chunks in self._pending:
            enc = tuple(np.concatenate(v) for v in zip(*chunks)) if chunks else _NO_EVENTS
            sel = np.ones(len(enc[0]), bool) if below is None else enc[0] < below
            ready.append(tuple(v[sel] for v in enc))
            keep.append([tuple(v[~sel] for v in enc)] if not sel.all() else [])
        self._pending = keep
        if not self._delayeds:
            ready[1] = None
        self._writer.write_time_blocks(_time_blocks(ready, self._n_types, self._block_ms))
        if below is not None:
            self._written_below = max(below, self._written_below if self._written_below is not None else below)

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self._flush(None)
                self._writer.close()
            except BaseException:
                exc_type, exc, tb = sys.exc_info()
                self._atomic.__exit__(exc_type, exc, tb)
                raise
        return self._atomic.__exit__(exc_type, exc, tb)


def write_petsird(path, scanner, events=None, *, delayeds=None, efficiencies=None, format: str = "binary",
                  tof_bin_width_ps: float = 25.0, n_tof_bins: int | None = None, energy_window_kev=None,
                  n_energy_bins: int = 1, ctr_ps: float | None = None, energy_resolution: float | None = None,
                  time_block_ms: int = 1, efficiency_method: str = "") -> Path:
    """Write a scanner and its coincidences as a PETSIRD file (atomic: temp file + rename).

    Parameters
    ----------
    path : str or Path
        Output file (any suffix; ``.petsird`` is customary).
    scanner : Scanner
        Blocks become module instances (3 x 4 ``RigidTransformation`` ``[A^T | P]``), crystal
        voxels box-shaped detecting elements (one module type per crystal size).
    events : Events, optional
        Prompt coincidences with ``BlockID1/2``, ``CrystalID1/2``, ``GlobalTime1/2`` (ns,
        >= 0), ``TotalEnergyDeposit1/2`` (MeV). None writes the scanner header alone (e.g.
        an alignment result for a reconstruction program).
    delayeds : Events, optional
        Delayed coincidences, same columns; stored apart from the prompts.
    efficiencies : ndarray (N, M), optional
        Per-crystal detection efficiencies (e.g. fan sums,
        :func:`refsuite.alignment.fan_sum_efficiencies`), written as PETSIRD
        ``detectionBinEfficiencies`` (the same value for each energy window).
    format : {"binary", "ndjson"}
        PETSIRD's compact binary stream or its NDJSON text form.
    tof_bin_width_ps : float
        TOF bin width in ``t1 - t2``, ps (``c w / 2`` mm in the file).
    n_tof_bins : int, optional
        Bins symmetric about 0 (the middle one centred on 0 when odd, as refsuite's TOF
        projectors bin). Default: the fewest odd number covering the events'
        ``attrs["coincidence_window_ps"]`` (else their largest ``|t1 - t2|``; 5 ns without
        events).
    energy_window_kev : (float, float), optional
        Energy window, keV; default ``events.attrs["energy_window_kev"]`` or (450, 650).
        Events outside it are an error.
    n_energy_bins : int
        Equal energy bins dividing the window.
    ctr_ps, energy_resolution : float, optional
        Coincidence time resolution (FWHM, ps) and energy resolution (FWHM / 511 keV) for the
        header; default from ``events.attrs`` (``ctr_ps``, ``energy_resolution``), else 0
        (unknown).
    time_block_ms : int
        Duration of PETSIRD's event time blocks, ms (an event goes in the block of its
        earlier single).
    efficiency_method : str
        Free text describing how ``efficiencies`` were obtained.

    Returns
    -------
    Path

    See Also
    --------
    PetsirdWriter : the same file written chunk by chunk (e.g. as a simulation runs).
    """
    from refsuite.geometry import Scanner

    if not isinstance(scanner, Scanner):
        raise TypeError(f"scanner must be a refsuite.geometry.Scanner, got {type(scanner).__name__}")
    for name, table in (("events", events), ("delayeds", delayeds)):
        if table is not None:
            _check_event_table(name, table, scanner)
    attrs = (getattr(events, "attrs", None) or {}) if events is not None else {}
    if "coincidence_window_ps" in attrs:
        reach_ps = float(attrs["coincidence_window_ps"])
    elif events is not None and len(events["GlobalTime1"]):
        reach_ps = 1e3 * float(np.abs(np.asarray(events["GlobalTime1"]) - events["GlobalTime2"]).max())
    else:
        reach_ps = 5000.0
    window = energy_window_kev if energy_window_kev is not None else attrs.get("energy_window_kev", (450.0, 650.0))
    with PetsirdWriter(path, scanner, delayeds=delayeds is not None, efficiencies=efficiencies, format=format,
                       tof_bin_width_ps=tof_bin_width_ps, n_tof_bins=n_tof_bins,
                       coincidence_window_ps=max(reach_ps, 1e-9), energy_window_kev=window,
                       n_energy_bins=n_energy_bins, ctr_ps=ctr_ps if ctr_ps is not None else attrs.get("ctr_ps"),
                       energy_resolution=energy_resolution if energy_resolution is not None
                       else attrs.get("energy_resolution"), time_block_ms=time_block_ms,
                       efficiency_method=efficiency_method, max_disorder_ns=math.inf) as writer:
        if events is not None or delayeds is not None:
            writer.write(events, delayeds)
    return Path(path)
