"""PETSIRD list-mode files: scanners and coincidences in the ETSI raw-data standard.

PETSIRD (PET Raw Data standard of the Emission Tomography Standardization Initiative,
https://github.com/ETSInitiative/PETSIRD; Python package ``petsird`` 0.12) stores a header
(the scanner as replicated detector modules placed by rigid transforms, box-shaped detecting
elements, TOF and energy bin edges, detection efficiencies) followed by time blocks of prompt
and delayed coincidences, each a pair of detection bins and a TOF bin index. Two encodings
carry the same content: a compact binary stream (starts with the bytes ``yardl``) and NDJSON
(one JSON value per line, the first ``{"yardl": ...}``). Both are read here (the encoding
recognised from the file's content, not its name) and written by :class:`PetsirdWriter`
(chunk by chunk, :mod:`refsuite.io._petsird_write`) or :func:`write_petsird`.

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
  value with it. Writing bins ``s`` in float64 from the bin width as the TOF projectors and
  :func:`refsuite.alignment.align` do (:func:`refsuite.io._petsird_write._tof_index`).
  Reading puts the earlier detection first (GATE's convention, ``GlobalTime1 <=
  GlobalTime2``); in a bin centred on zero the order is the file's. The solvers use events
  in the canonical pair and row order of :func:`refsuite.events.canonical_pairs`, so a PETSIRD
  file and a ROOT file of the same coincidences give them identical inputs when the file's
  TOF bins are the solver's (same width, centred on zero).
* Times: PETSIRD keeps, per coincidence, only its time block (``time_block_ms``) and the TOF
  bin. Read events get ``GlobalTime1`` = the block start and ``GlobalTime2 = GlobalTime1 -
  2 s / c`` with ``s`` the TOF bin centre (mm): ``t1 - t2`` is exact to half a TOF bin.
* Energies: each single's energy window index; read back as the window centre (MeV in
  ``TotalEnergyDeposit``). Positions (``PostPosition_*``) read back as crystal-voxel centres.

PETSIRD's schema stores these floats in 32 bits (``RigidTransformation.matrix``, box corners,
bin edges are ``float32``; a float64 file would not be PETSIRD 0.12): each pose coordinate
rounds to nearest, ``|dP_i| <= 2^-24 |P_i|`` (at most 1.5e-5 mm at lin_clinical's 414 mm,
5e-6 mm on thull_sim), the rotation entries by <= 2^-24, so crystal centres move by <= 2e-5
mm; poses exact in float32 come back exactly. Sub-1e-9 mm round trips of arbitrary poses
are therefore not possible in PETSIRD; keep the JSON scanner (``Scanner.save``) for those.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from refsuite._checks import check_positive
from refsuite.constants import SPEED_OF_LIGHT_MM_PER_NS
from refsuite.events import Events

from ._petsird_geometry import scanner_from_info
from ._petsird_write import PETSIRD_SUFFIXES, PetsirdWriter, petsird_suffix_format, write_petsird

__all__ = ["PetsirdScan", "PetsirdWriter", "write_petsird", "read_petsird", "petsird_format", "petsird_suffix_format",
           "PETSIRD_SUFFIXES"]



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
        attrs["ctr_ps"] = _shortest_decimal(tof_res, lambda ctr: c_mm_per_ns * 1e-3 * ctr / 2.0,
                                            2e3 * tof_res / c_mm_per_ns)
    if info.energy_resolution_at_511 and float(info.energy_resolution_at_511[0]) > 0:
        res = float(info.energy_resolution_at_511[0])
        attrs["energy_resolution"] = _shortest_decimal(res, lambda x: x, res)
    return attrs


def _shortest_decimal(stored, forward, approx):
    """The shortest decimal ``x`` (<= 17 significant digits) with ``float32(forward(x)) == stored``.

    The header's resolutions are float32 (the CTR as ``c ctr / 2`` mm): a CTR of 250 ps comes
    back as 249.999993 ps when simply converted. The shortest value consistent with the file is
    the one that was written (250), so a solver given the CTR from a PETSIRD file uses the
    same kernel as from the ROOT file it was made from; ``approx`` when nothing shorter fits.
    """
    target = np.float32(stored)
    for digits in range(1, 18):
        x = float(f"{approx:.{digits}g}")
        if np.float32(forward(x)) == target:
            return x
    return float(approx)


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
