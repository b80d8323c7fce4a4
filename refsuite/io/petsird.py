"""PETSIRD list-mode files: scanners and coincidences in the ETSI raw-data standard.

PETSIRD (PET Raw Data standard of the Emission Tomography Standardization Initiative,
https://github.com/ETSInitiative/PETSIRD; Python package ``petsird`` 0.12) stores a header
(the scanner as replicated detector modules placed by rigid transforms, box-shaped detecting
elements, TOF and energy bin edges, detection efficiencies) followed by time blocks of prompt
and delayed coincidences, each a pair of detection bins and a TOF bin index. Two encodings
carry the same content: a compact binary stream (starts with the bytes ``yardl``) and NDJSON
(one JSON value per line, the first ``{"yardl": ...}``). Both are read and written here;
the encoding is recognised from the file's content, not its name.

Mapping to refsuite (see :mod:`refsuite.io._petsird_geometry` for the geometry):

* block ``d`` = module index ``d``; crystal voxel ``m`` = a detecting element of the module
  type holding the crystals of its size; detection bin
  ``energy_idx + (element + module * n_elements) * n_energy_bins`` (PETSIRD's
  ``make_detection_bin``).
* TOF: PETSIRD bins the signed distance ``(t1 - t2) c / 2`` (mm) of the annihilation from the
  LOR midpoint, where ``t1``, ``t2`` are the arrival times at the event's first and second
  detection bins (negative: the first detector fired first). That is our
  :func:`refsuite.mc.tof_offsets_mm` with single 1 = the first detection bin, i.e. our
  ``GlobalTime1 - GlobalTime2``. PETSIRD orders each pair (``bin1 >= bin2`` within a module
  type; higher type first), so writing may swap the singles of an event and negates its TOF
  value with it. Reading puts the earlier detection first (our convention, ``GlobalTime1 <=
  GlobalTime2``); in a bin centred on zero the order is the file's.
* Times: PETSIRD keeps, per coincidence, only its time block (``time_block_ms``) and the TOF
  bin. Read events get ``GlobalTime1`` = the block start and ``GlobalTime2 = GlobalTime1 -
  2 s / c`` with ``s`` the TOF bin centre (mm): ``t1 - t2`` is exact to half a TOF bin.
* Energies: each single's energy window index; read back as the window centre (MeV in
  ``TotalEnergyDeposit``). Positions (``PostPosition_*``) read back as crystal-voxel centres.

PETSIRD stores floats in 32 bits: block poses and crystal boxes round to ~6e-8 of their
magnitude (3e-5 mm at 400 mm), TOF edges likewise.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from refsuite._checks import check_choice, check_finite, check_positive
from refsuite.constants import SPEED_OF_LIGHT_MM_PER_NS
from refsuite.events import Events

from ._petsird_geometry import crystal_types, scanner_from_info, scanner_geometry
from .atomic import atomic_open

__all__ = ["PetsirdScan", "write_petsird", "read_petsird", "petsird_format", "PETSIRD_SUFFIXES"]

#: File names ``refsuite`` treats as PETSIRD when writing (reading goes by content).
PETSIRD_SUFFIXES = (".petsird", ".bin", ".ndjson")
_ID_COLUMNS = ("BlockID1", "CrystalID1", "BlockID2", "CrystalID2")


@dataclass(frozen=True, eq=False)
class PetsirdScan:
    """Content of a PETSIRD file in refsuite's terms.

    Attributes
    ----------
    scanner : Scanner
        Blocks = module instances, crystal voxels = detecting elements (groups all 0).
    prompts, delayeds : Events
        Coincidence tables (GATE 10 columns: ``EventID1/2``, ``GlobalTime1/2`` ns,
        ``TotalEnergyDeposit1/2`` MeV, ``PostPosition_X1`` ... mm, ``BlockID1/2``,
        ``CrystalID1/2``); ``attrs`` holds ``ctr_ps``, ``energy_resolution``,
        ``energy_window_kev``, ``coincidence_window_ps`` when the file gives them. ``delayeds`` is
        empty when the file stores none.
    tof_bin_edges_mm : ndarray (n_tof + 1,)
        TOF bin edges of module types (0, 0), mm of ``(t1 - t2) c / 2``.
    energy_bin_edges_kev : ndarray (n_energy + 1,)
        Energy window edges of module type 0, keV.
    efficiencies : ndarray (N, M) or None
        Per-crystal detection efficiencies; None when the file has none or they differ
        between the energy windows of a crystal (then see ``header``).
    header : petsird.Header
        The file's header as read by ``petsird``.
    """

    scanner: object
    prompts: dict
    delayeds: dict
    tof_bin_edges_mm: np.ndarray
    energy_bin_edges_kev: np.ndarray
    efficiencies: np.ndarray | None = None
    header: object = field(default=None, repr=False)


# ---------------------------------------------------------------------------------- format sniffing
def _petsird_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("petsird")
    except PackageNotFoundError:  # pragma: no cover - an unpackaged checkout
        return "(unknown version)"


def _varint(data: bytes, pos: int):
    value = shift = 0
    while True:
        if pos >= len(data):
            raise EOFError
        b = data[pos]
        value |= (b & 0x7F) << shift
        pos += 1
        shift += 7
        if not b & 0x80:
            return value, pos


def petsird_format(path) -> str | None:
    """``"binary"`` or ``"ndjson"`` when ``path`` starts like a yardl stream, else None.

    Looks only at the first bytes (binary: ``b"yardl"``; NDJSON: a first line
    ``{"yardl": ...``); :func:`read_petsird` then checks the version and schema.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    if head.startswith(b"yardl"):
        return "binary"
    if head.lstrip().startswith(b'{"yardl"') or head.lstrip().startswith(b'{ "yardl"'):
        return "ndjson"
    return None


def _check_stream(path: Path, fmt: str) -> None:
    """Raise ValueError (one line, naming the file) for a yardl stream petsird 0.12 cannot read."""
    import petsird

    expected = json.loads(petsird.PETSIRDReaderBase.schema)
    try:
        if fmt == "binary":
            with open(path, "rb") as fh:
                data = fh.read(1 << 20)
            (version,) = struct.unpack("<i", data[5:9])
            n, pos = _varint(data, 9)
            if pos + n > len(data):
                with open(path, "rb") as fh:
                    data = fh.read(pos + n)
            schema = json.loads(data[pos:pos + n].decode("utf-8"))
            supported = 1
        else:
            with open(path, encoding="utf-8") as fh:
                head = json.loads(fh.readline())["yardl"]
            version, schema, supported = head.get("version"), head.get("schema"), 1
    except (struct.error, EOFError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable PETSIRD {fmt} stream (damaged yardl header: "
                         f"{type(exc).__name__})") from exc
    if version != supported:
        raise ValueError(f"{path}: yardl {fmt} format version {version!r} is not supported (petsird "
                         f"{_petsird_version()} reads version {supported})")
    name = (schema or {}).get("protocol", {}).get("name") if isinstance(schema, dict) else None
    if name != "PETSIRD":
        raise ValueError(f"{path}: a yardl stream of protocol {name!r}, not PETSIRD")
    if schema != expected:
        have = {t.get("name"): t for t in schema.get("types", [])}
        want = {t.get("name"): t for t in expected.get("types", [])}
        diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
        raise ValueError(f"{path}: PETSIRD schema differs from petsird {_petsird_version()}'s (another PETSIRD "
                         f"version; types differing: {', '.join(diff[:6]) or 'protocol'}); not supported")


# ---------------------------------------------------------------------------------- writing
def _tof_edges_mm(events, c_mm_per_ns, width_ps, n_bins):
    """Symmetric TOF bin edges (mm), ``n_bins`` of ``width_ps`` (c w / 2 mm) centred on 0."""
    w_mm = c_mm_per_ns * 1e-3 * width_ps / 2.0
    if n_bins is None:
        attrs = getattr(events, "attrs", None) or {}
        if "coincidence_window_ps" in attrs:
            reach_ps = float(attrs["coincidence_window_ps"])
        elif events is not None:
            reach_ps = 1e3 * float(np.abs(np.asarray(events["GlobalTime1"]) - events["GlobalTime2"]).max(initial=0.0))
        else:
            reach_ps = 5000.0
        n_bins = 2 * max(0, math.ceil(reach_ps / width_ps - 0.5)) + 1
    return ((np.arange(n_bins + 1) - n_bins / 2.0) * w_mm).astype(np.float32)


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


def _encode(events, which, kind, element, n_el, tof_edges, energy_edges, c_mm_per_ns, block_ns):
    """Per event: time block, module-type pair, the two detection bins and the TOF index."""
    b = [np.asarray(events[f"BlockID{k}"]).astype(np.int64) for k in (1, 2)]
    c = [np.asarray(events[f"CrystalID{k}"]).astype(np.int64) for k in (1, 2)]
    t = [np.asarray(events[f"GlobalTime{k}"], float) for k in (1, 2)]
    e_kev = [1e3 * np.asarray(events[f"TotalEnergyDeposit{k}"], float) for k in (1, 2)]
    n_en = len(energy_edges) - 1
    en = []
    for k in (1, 2):
        idx = np.searchsorted(energy_edges, e_kev[k - 1], side="right") - 1
        idx[e_kev[k - 1] == energy_edges[-1]] = n_en - 1
        en.append(idx)
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
    tof_idx = np.searchsorted(edges, tof, side="right") - 1
    tof_idx[tof == edges[-1]] = len(edges) - 2
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
    """
    import petsird  # noqa: F401  (fail early when the dependency is missing)

    from refsuite.geometry import Scanner

    c_mm_per_ns = SPEED_OF_LIGHT_MM_PER_NS
    if not isinstance(scanner, Scanner):
        raise TypeError(f"scanner must be a refsuite.geometry.Scanner, got {type(scanner).__name__}")
    check_choice("format", format, ("binary", "ndjson"))
    for name, table in (("events", events), ("delayeds", delayeds)):
        if table is not None:
            _check_event_table(name, table, scanner)
    width = float(check_positive("tof_bin_width_ps", tof_bin_width_ps, unit="ps"))
    for name, v, lo in (("n_tof_bins", n_tof_bins, 1), ("n_energy_bins", n_energy_bins, 1),
                        ("time_block_ms", time_block_ms, 1)):
        if v is not None and (isinstance(v, bool) or int(v) != v or v < lo):
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    attrs = (getattr(events, "attrs", None) or {}) if events is not None else {}
    window = energy_window_kev if energy_window_kev is not None else attrs.get("energy_window_kev", (450.0, 650.0))
    lo, hi = check_finite("energy_window_kev", window).reshape(2)
    if not 0 <= lo < hi:
        raise ValueError(f"energy_window_kev must be (low, high) with 0 <= low < high keV, got {window!r}")
    ctr = ctr_ps if ctr_ps is not None else attrs.get("ctr_ps")
    if ctr is not None:
        check_positive("ctr_ps", ctr, unit="ps")
    eff = None
    if efficiencies is not None:
        eff = check_finite("efficiencies", efficiencies)
        if eff.shape != (scanner.n_blocks, scanner.n_crystals) or np.any(eff < 0):
            raise ValueError(f"efficiencies must be >= 0 with shape ({scanner.n_blocks}, {scanner.n_crystals}), "
                             f"got shape {eff.shape}")
    kind, element, half = crystal_types(scanner.crystals)
    n_el = np.bincount(kind, minlength=len(half))
    tof_edges = _tof_edges_mm(events, c_mm_per_ns, width, n_tof_bins)
    energy_edges = np.linspace(lo, hi, int(n_energy_bins) + 1).astype(np.float32)
    block_ns = int(time_block_ms) * 1e6
    encoded = [None if tab is None else _encode(tab, name, kind, element, n_el, tof_edges, energy_edges.astype(float),
                                                c_mm_per_ns, block_ns)
               for name, tab in (("events", events), ("delayeds", delayeds))]
    info = _scanner_info(scanner, kind, half, tof_edges=tof_edges, energy_edges=energy_edges, ctr_ps=ctr,
                         energy_resolution=energy_resolution if energy_resolution is not None
                         else attrs.get("energy_resolution"), efficiencies=eff, efficiency_method=efficiency_method,
                         c_mm_per_ns=c_mm_per_ns, has_delayeds=delayeds is not None)
    path = Path(path)
    with atomic_open(path, "wb" if format == "binary" else "w") as fh:
        writer_cls = petsird.BinaryPETSIRDWriter if format == "binary" else petsird.NDJsonPETSIRDWriter
        with writer_cls(fh) as writer:
            writer.write_header(petsird.Header(scanner=info))
            writer.write_time_blocks(_time_blocks(encoded, len(half), int(time_block_ms)))
    return path


# ---------------------------------------------------------------------------------- reading
def read_petsird(path, *, mu_per_mm: float | None = None) -> PetsirdScan:
    """Read a PETSIRD file (binary or NDJSON, recognised by content) into refsuite's terms.

    Parameters
    ----------
    path : str or Path
    mu_per_mm : float, optional
        Attenuation coefficient of the crystal material at 511 keV, 1/mm. PETSIRD gives the
        material by name (and density); the default knows ``LYSO`` (0.087 /mm) and otherwise
        asks for this argument.

    Returns
    -------
    PetsirdScan
        Scanner, prompts and delayeds (kept apart), TOF and energy bin edges, per-crystal
        efficiencies. Events come in the file's order: by time block, then module-type pair.

    Raises
    ------
    ValueError
        One line naming the file: missing, not a PETSIRD stream, another yardl format or
        PETSIRD version (schema), detecting elements that are not axis-aligned boxes,
        module types placed on different modules, a gantry movement during the scan,
        corrupt or truncated data, or indices outside the header's ranges.
    """
    import petsird

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    fmt = petsird_format(path)
    if fmt is None:
        with open(path, "rb") as fh:
            head = fh.read(8)
        raise ValueError(f"{path}: not a PETSIRD file (a binary stream starts with b'yardl', NDJSON with "
                         f"'{{\"yardl\"'; this starts with {head!r})")
    _check_stream(path, fmt)
    if mu_per_mm is not None:
        check_positive("mu_per_mm", mu_per_mm, unit="1/mm")
    reader_cls = petsird.BinaryPETSIRDReader if fmt == "binary" else petsird.NDJsonPETSIRDReader
    chunks = {"prompt": [], "delayed": []}
    try:
        with open(path, "rb" if fmt == "binary" else "r") as fh, reader_cls(fh) as reader:
            header = reader.read_header()
            scanner, crystal_ids = scanner_from_info(header.scanner, path, mu_per_mm=mu_per_mm)
            for tb in reader.read_time_blocks():
                if isinstance(tb, petsird.TimeBlock.GantryMovementTimeBlock):
                    raise ValueError(f"{path}: gantry movement during the scan (time block at "
                                     f"{tb.value.time_interval.start} ms) is not supported")
                if isinstance(tb, petsird.TimeBlock.EventTimeBlock):
                    for kind, mat in (("prompt", tb.value.prompt_events), ("delayed", tb.value.delayed_events)):
                        _collect(chunks[kind], tb.value.time_interval.start, mat)
    except ValueError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise ValueError(f"{path}: corrupt or inconsistent PETSIRD data ({exc})") from exc
    except (EOFError, BufferError, struct.error, RuntimeError, KeyError, IndexError, TypeError, OSError,
            petsird.ProtocolError) as exc:  # what petsird raises on truncated or damaged streams
        raise ValueError(f"{path}: corrupt or truncated PETSIRD data ({type(exc).__name__}: {exc})") from exc
    info = header.scanner
    attrs = _header_attrs(info, path)
    prompts, delayeds = (_decode(chunks[k], info, scanner, crystal_ids, attrs, path) for k in ("prompt", "delayed"))
    return PetsirdScan(scanner=scanner, prompts=prompts, delayeds=delayeds,
                       tof_bin_edges_mm=np.asarray(info.tof_bin_edges[0][0].edges, float),
                       energy_bin_edges_kev=np.asarray(info.event_energy_bin_edges[0].edges, float),
                       efficiencies=_efficiencies(info, scanner, crystal_ids), header=header)


def _collect(out, start_ms, matrix):
    for k1, row in enumerate(matrix or []):
        for k2, events in enumerate(row):
            if events:
                arr = np.array([(e.detection_bins[0], e.detection_bins[1], e.tof_idx) for e in events], np.int64)
                out.append((int(start_ms), k1, k2, arr))


def _header_attrs(info, path):
    c_mm_per_ns = SPEED_OF_LIGHT_MM_PER_NS
    edges = np.asarray(info.tof_bin_edges[0][0].edges, float) if info.tof_bin_edges else np.zeros(0)
    en = np.asarray(info.event_energy_bin_edges[0].edges, float) if info.event_energy_bin_edges else np.zeros(0)
    attrs = {"engine": "petsird", "file": str(path)}
    if len(en) >= 2:
        attrs["energy_window_kev"] = [float(en[0]), float(en[-1])]
    if len(edges) >= 2:
        attrs["coincidence_window_ps"] = float(2e3 * np.abs(edges).max() / c_mm_per_ns)
    tof_res = float(info.tof_resolution[0][0]) if info.tof_resolution else 0.0
    if tof_res > 0:
        attrs["ctr_ps"] = 2e3 * tof_res / c_mm_per_ns
    if info.energy_resolution_at_511 and float(info.energy_resolution_at_511[0]) > 0:
        attrs["energy_resolution"] = float(info.energy_resolution_at_511[0])
    return attrs


def _decode(chunks, info, scanner, crystal_ids, attrs, path):
    """Events (our columns) from collected (start_ms, type1, type2, [bin1, bin2, tof_idx]) chunks."""
    c_mm_per_ns = SPEED_OF_LIGHT_MM_PER_NS
    n = sum(len(ch[3]) for ch in chunks)
    cols = {"block": np.zeros((2, n), np.int32), "crystal": np.zeros((2, n), np.int32),
            "energy": np.zeros((2, n)), "s": np.zeros(n), "start": np.zeros(n)}
    i0 = 0
    for start_ms, k1, k2, arr in chunks:
        sl = slice(i0, i0 + len(arr))
        for j, k in enumerate((k1, k2)):
            b, c, e = _expand(info, k, arr[:, j], crystal_ids[k], scanner.n_blocks, path)
            cols["block"][j, sl], cols["crystal"][j, sl], cols["energy"][j, sl] = b, c, e
        edges = np.asarray(info.tof_bin_edges[k1][k2].edges, float)
        if arr[:, 2].max() >= len(edges) - 1:
            raise ValueError(f"{path}: TOF index {int(arr[:, 2].max())} outside the {len(edges) - 1} TOF bins "
                             f"of module types ({k1}, {k2})")
        cols["s"][sl] = (edges[arr[:, 2]] + edges[arr[:, 2] + 1]) / 2.0
        cols["start"][sl] = start_ms
        i0 += len(arr)
    swap = cols["s"] > 0  # single 1 = the earlier detection (our convention)
    order = [np.where(swap, 1, 0), np.where(swap, 0, 1)]
    idx = np.arange(n)
    s = np.where(swap, -cols["s"], cols["s"])
    t1 = cols["start"] * 1e6
    out = {"EventID1": np.arange(n, dtype=np.int64), "EventID2": np.arange(n, dtype=np.int64),
           "GlobalTime1": t1, "GlobalTime2": t1 - 2.0 * s / c_mm_per_ns}
    for j, k in enumerate((1, 2)):
        b, c = cols["block"][order[j], idx], cols["crystal"][order[j], idx]
        out[f"TotalEnergyDeposit{k}"] = cols["energy"][order[j], idx] / 1e3
        pos = scanner.crystal_positions(b, c) if n else np.zeros((0, 3))
        for a, axis in enumerate("XYZ"):
            out[f"PostPosition_{axis}{k}"] = pos[:, a]
        out[f"BlockID{k}"], out[f"CrystalID{k}"] = b, c
    return Events(out, attrs=dict(attrs))


def _expand(info, k, bins, ids, n_modules, path):
    """Detection bins of module type ``k`` -> (block, our crystal id, energy keV); PETSIRD's
    ``expand_detection_bins``."""
    n_el = len(ids)
    edges = np.asarray(info.event_energy_bin_edges[k].edges, float)
    n_en = len(edges) - 1
    module, element, energy = bins // (n_el * n_en), (bins // n_en) % n_el, bins % n_en
    if module.max(initial=0) >= n_modules:
        raise ValueError(f"{path}: detection bin {int(bins.max())} of module type {k} is beyond its "
                         f"{n_modules} modules x {n_el} elements x {n_en} energy bins")
    return module, ids[element], (edges[energy] + edges[energy + 1]) / 2.0


def _efficiencies(info, scanner, crystal_ids):
    """Per-crystal efficiencies (N, M) from the detection-bin efficiencies, or None."""
    eff = info.detection_efficiencies
    per_bin = getattr(eff, "detection_bin_efficiencies", None) if eff is not None else None
    if not per_bin or len(per_bin) != len(crystal_ids):
        return None
    out = np.empty((scanner.n_blocks, scanner.n_crystals))
    for k, ids in enumerate(crystal_ids):
        n_en = len(info.event_energy_bin_edges[k].edges) - 1
        arr = np.asarray(per_bin[k], float)
        if arr.size != scanner.n_blocks * len(ids) * n_en:
            return None
        arr = arr.reshape(scanner.n_blocks, len(ids), n_en)
        if np.any(arr != arr[..., :1]):
            return None
        out[:, ids] = arr[..., 0]
    return out
