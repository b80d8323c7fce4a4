"""The one list-mode event type: coincidence columns, their units, crystal ids, TOF and LORs.

An event table is a dict of equal-length columns (:class:`Events`), one row per coincidence,
named and scaled as the coincidence tree of GATE 10's Python sorter
(``opengate.actors.coincidences``): every singles attribute suffixed ``1``/``2`` (single 1 is
the earlier one), 3-vectors split as ``PostPosition_X1``. Units are GATE 10's: positions mm,
times ns, deposited energies MeV (so a written file reads in GATE's own tools); use
:func:`energies_kev` for keV. :data:`COLUMNS` lists the columns the built-in Monte Carlo
writes; files of other layouts are converted to these names by :func:`refsuite.io.read_events`.

Canonical pair order. A file keeps each coincidence's singles in its own order: GATE's ROOT
trees the earlier single first, PETSIRD (which stores a TOF bin, not two times) its higher
detection bin first. The solvers (alignment, list-mode OSEM) therefore turn every event into
one canonical form before use (:func:`canonical_pairs`): single 1 is the single with the lower
detection id, ``(BlockID, CrystalID)`` compared lexicographically (i.e. ``BlockID *
n_crystals + CrystalID``); swapping the singles of an event swaps every ``1``/``2`` column, so
``t1 - t2`` and the TOF offset change sign with it, ``tof_bin`` is negated and ``xstart`` /
``xend`` swap. Rows are then sorted by :func:`canonical_row_order` (ids, then TOF bin), so a
solver's input depends on the set of events only, not on the order of the singles or of the
rows in the file.

Everything here works on any mapping of columns and on a scanner used through its methods
(``crystal_positions``, ``sample_in_crystals``, ``n_blocks``, ``n_crystals``), so this module
imports nothing else of refsuite.
"""

from __future__ import annotations

import enum
from typing import Mapping

import numpy as np

from .constants import SPEED_OF_LIGHT_MM_PER_NS

__all__ = ["COLUMNS", "CRYSTAL_ID_COLUMNS", "Events", "LORPlacement", "REQUIRED_COLUMNS", "canonical_pairs",
           "canonical_row_order", "check_events", "column_names", "crystal_ids", "energies_kev", "lor_endpoints",
           "positions", "swapped_pairs", "tof_offsets_mm"]

#: Columns of an event table, GATE 10 names and units (opengate.actors.coincidences: every
#: singles attribute with suffix 1/2; 3-vectors split into _X/_Y/_Z), then our own.
COLUMNS = {
    "EventID": ("", "int64", "decay index (same for both singles)"),
    "GlobalTime": ("ns", "float64", "detection time: decay time + flight + time blur"),
    "TotalEnergyDeposit": ("MeV", "float64", "blurred deposited energy"),
    "PostPosition_X": ("mm", "float64", "interaction point (global)"),
    "PostPosition_Y": ("mm", "float64", ""),
    "PostPosition_Z": ("mm", "float64", ""),
    "TrackVertexPosition_X": ("mm", "float64", "truth: annihilation point"),
    "TrackVertexPosition_Y": ("mm", "float64", ""),
    "TrackVertexPosition_Z": ("mm", "float64", ""),
    "TrueGlobalTime": ("ns", "float64", "truth: detection time before time blur"),
    "BlockID": ("", "int32", "detector block (refsuite.geometry.Scanner index), -1 for none"),
    "CrystalID": ("", "int32", "crystal voxel in the block's LUT, -1 for none"),
}

#: Columns every event table has (GATE 10 names, suffix 1 and 2).
REQUIRED_COLUMNS = tuple(
    f"{base}{k}" for base in ("EventID", "GlobalTime", "TotalEnergyDeposit", "PostPosition_X", "PostPosition_Y",
                              "PostPosition_Z") for k in (1, 2))

#: The crystal-id columns, in the order :func:`crystal_ids` returns them.
CRYSTAL_ID_COLUMNS = ("BlockID1", "CrystalID1", "BlockID2", "CrystalID2")


def column_names() -> list[str]:
    """All :data:`COLUMNS` names, in GATE's interleaved order (``A1, A2, B1, B2, ...``)."""
    return [f"{c}{k}" for c in COLUMNS for k in (1, 2)]


class Events(dict):
    """A dict of equal-length columns (name -> ndarray) with run information in ``attrs``.

    Any code that takes a dict of columns takes an ``Events``; ``attrs`` (a dict) holds what the
    producer recorded (settings, counts; empty for foreign files).
    """

    def __init__(self, *args, attrs=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.attrs = dict(attrs or {})

    @property
    def n_events(self) -> int:
        return len(next(iter(self.values()))) if self else 0

    def take(self, index) -> "Events":
        """The rows ``index`` (boolean mask or integer indices) of every column, same ``attrs``."""
        return Events({k: np.asarray(v)[index] for k, v in self.items()}, attrs=dict(self.attrs))


def check_events(events) -> int:
    """Number of rows of a valid event table; raises naming what is wrong.

    Valid: a non-empty mapping with at least :data:`REQUIRED_COLUMNS`, all of one length.
    """
    if not isinstance(events, Mapping) or not events:
        raise TypeError(f"events must be a non-empty dict of column name -> array, got {type(events).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in events]
    if missing:
        raise ValueError(f"events lack required GATE columns {missing}")
    lengths = {k: len(np.asarray(v)) for k, v in events.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"events columns must have equal lengths, got {lengths}")
    return next(iter(lengths.values()))


def _single(single) -> int:
    if single not in (1, 2):
        raise ValueError(f"single must be 1 or 2, got {single!r}")
    return int(single)


def positions(events, single: int) -> np.ndarray:
    """Interaction points of single 1 or 2, shape (n, 3), mm (``PostPosition_*``)."""
    k = _single(single)
    return np.column_stack([np.asarray(events[f"PostPosition_{a}{k}"], float) for a in "XYZ"])


def energies_kev(events, single: int) -> np.ndarray:
    """Deposited energy of single 1 or 2, keV (the column is GATE 10's MeV)."""
    return 1000.0 * np.asarray(events[f"TotalEnergyDeposit{_single(single)}"], float)


def crystal_ids(events, scanner=None) -> np.ndarray:
    """The crystal ids of every coincidence, int64 array (n, 4): block 1, crystal 1, block 2, crystal 2.

    Parameters
    ----------
    events : mapping
        Columns :data:`CRYSTAL_ID_COLUMNS` (``refsuite.io.read_events(..., crystal_ids="assign")``
        computes them from the interaction points).
    scanner : refsuite.geometry.Scanner, optional
        When given, every id is checked to address one of its ``n_blocks`` blocks and
        ``n_crystals`` crystal voxels.

    Raises
    ------
    ValueError
        A column is missing, or (with ``scanner``) an id lies outside the scanner's range.
    """
    missing = [c for c in CRYSTAL_ID_COLUMNS if c not in events]
    if missing:
        raise ValueError(f"events lack the crystal-id columns {missing}; read them with "
                         "refsuite.io.read_events(path, scanner, crystal_ids='assign') to assign crystals")
    ids = np.stack([np.asarray(events[c]).astype(np.int64) for c in CRYSTAL_ID_COLUMNS], 1).reshape(-1, 4)
    if scanner is not None:
        for name, cols, hi in (("BlockID", [0, 2], scanner.n_blocks), ("CrystalID", [1, 3], scanner.n_crystals)):
            v = ids[:, cols].reshape(-1)
            bad = (v < 0) | (v >= hi)
            if bad.any():
                raise ValueError(
                    f"events do not map to the scanner's crystals: {int(bad.sum())} {name} values outside "
                    f"[0, {hi - 1}] (first {int(v[bad][0])}); scanner {getattr(scanner, 'name', '')!r} has "
                    f"{scanner.n_blocks} blocks of {scanner.n_crystals} crystal voxels")
    return ids


def swapped_pairs(events) -> np.ndarray:
    """Events whose singles are out of the canonical pair order, bool (n,).

    Canonical: single 1 has the lower detection id, ``(BlockID1, CrystalID1) < (BlockID2,
    CrystalID2)`` lexicographically (module docstring). Both singles in one crystal voxel count
    as ordered.
    """
    ids = crystal_ids(events)
    return (ids[:, 0] > ids[:, 2]) | ((ids[:, 0] == ids[:, 2]) & (ids[:, 1] > ids[:, 3]))


#: Columns that swap (or change sign) with the singles, besides the ``...1``/``...2`` pairs.
_SWAPPED_WITH_SINGLES = {"xstart": "xend", "xend": "xstart"}


def canonical_pairs(events, *, columns=None) -> Events:
    """The events with every pair in the canonical order: lower detection id first.

    Where :func:`swapped_pairs` is true, every column ``A1`` takes the value of ``A2`` and vice
    versa (so ``GlobalTime1 - GlobalTime2`` and :func:`tof_offsets_mm` change sign), ``xstart``
    and ``xend`` swap, and a signed TOF bin column ``tof_bin`` (towards ``xend``) is negated.
    Rows keep their order (see :func:`canonical_row_order`).

    Parameters
    ----------
    events : mapping
        With the crystal ids :data:`CRYSTAL_ID_COLUMNS`.
    columns : sequence of str, optional
        The columns to return (default all); a column whose partner (``A2`` of ``A1``) is not
        in ``events`` is kept as it is.

    Returns
    -------
    Events
        Same ``attrs``.
    """
    swap = swapped_pairs(events)
    names = list(events) if columns is None else list(columns)
    missing = [c for c in names if c not in events]
    if missing:
        raise ValueError(f"events lack the columns {missing}")
    out = {}
    for name in names:
        v = np.asarray(events[name])
        partner = _SWAPPED_WITH_SINGLES.get(name) or (
            name[:-1] + {"1": "2", "2": "1"}[name[-1]] if name[-1:] in ("1", "2") else None)
        if partner is not None and partner in events:
            w = np.asarray(events[partner])
            out[name] = np.where(swap.reshape((-1,) + (1,) * (v.ndim - 1)), w, v)
        elif name == "tof_bin":
            out[name] = np.where(swap, -v, v)
        else:
            out[name] = v
    return Events(out, attrs=dict(getattr(events, "attrs", None) or {}))


def canonical_row_order(ids, tof_bin=None) -> np.ndarray:
    """Indices that sort coincidences by ``(BlockID1, CrystalID1, BlockID2, CrystalID2, tof_bin)``.

    With pairs in canonical order (:func:`canonical_pairs`), two event lists holding the same
    coincidences (crystal pairs and TOF bins) in any order become identical arrays, so a
    solver's random batches and float sums do not depend on the file's row order.

    Parameters
    ----------
    ids : int array (n, 4)
        :func:`crystal_ids`.
    tof_bin : array (n,), optional
        Signed TOF bins, the last key.

    Returns
    -------
    ndarray (n,) of int64
    """
    ids = np.asarray(ids)
    keys = [ids[:, 3], ids[:, 2], ids[:, 1], ids[:, 0]]
    return np.lexsort(keys if tof_bin is None else [np.asarray(tof_bin), *keys])


def tof_offsets_mm(events, *, true_times: bool = False) -> np.ndarray:
    """Position of the annihilation along each LOR from the TOF, mm.

    Signed distance from the midpoint of (single 1, single 2) towards single 2:
    ``c (t1 - t2) / 2`` with ``c`` = :data:`refsuite.constants.SPEED_OF_LIGHT_MM_PER_NS` and the
    times in ns. This is the ``tof_centre_mm`` convention of
    :meth:`refsuite.phantoms.Phantom.line_integral` and the TOF sign
    :attr:`refsuite.projectors.TOFSign.TOWARDS_XEND` with ``xstart`` = single 1.

    Parameters
    ----------
    events : mapping
        Columns ``GlobalTime1/2`` (ns), or ``TrueGlobalTime1/2`` with ``true_times``.
    true_times : bool
        Use the unblurred truth times.

    Returns
    -------
    ndarray (n,)
    """
    key = "TrueGlobalTime" if true_times else "GlobalTime"
    missing = [f"{key}{k}" for k in (1, 2) if f"{key}{k}" not in events]
    if missing:
        raise ValueError(f"events lack the time columns {missing} (ns) needed for TOF offsets")
    dt_ns = np.asarray(events[f"{key}1"], float) - np.asarray(events[f"{key}2"], float)
    return SPEED_OF_LIGHT_MM_PER_NS * dt_ns / 2.0


class LORPlacement(enum.Enum):
    """Where a detected coincidence's line of response is placed.

    ``CRYSTAL_CENTRES``: between the centres of the two crystal voxels (the ids a scanner reads
    out). ``CRYSTAL_SAMPLES``: between points drawn uniformly inside the two crystal voxels
    (Thull et al., sec. 2.5). ``LINE``: through the recorded interaction points themselves, i.e.
    along the photon line (an ideal detector; for checks of the sensitivity model).
    A reconstruction's sensitivity image must be built with the events' placement, otherwise
    its LOR set and the events' differ on the crystal scale.
    """

    CRYSTAL_CENTRES = "crystal_centres"
    CRYSTAL_SAMPLES = "crystal_samples"
    LINE = "line"


def lor_endpoints(events, scanner=None, *, placement=LORPlacement.CRYSTAL_CENTRES, rng=None):
    """LOR end points of every coincidence, ``(xstart, xend)`` each (n, 3) mm; ``xstart`` is single 1.

    Parameters
    ----------
    events : mapping
        With crystal ids (:func:`crystal_ids`) for the crystal placements, with the
        interaction points ``PostPosition_*1/2`` for ``LINE``.
    scanner : refsuite.geometry.Scanner
        Places the crystal ids (``crystal_positions`` / ``sample_in_crystals``); ids are
        bounds-checked against it. Not needed for ``LINE``.
    placement : LORPlacement or str
    rng : numpy.random.Generator
        Needed for ``CRYSTAL_SAMPLES``.

    Returns
    -------
    xstart, xend : ndarray (n, 3), mm
    """
    placement = LORPlacement(placement)
    if placement is LORPlacement.LINE:
        return positions(events, 1), positions(events, 2)
    if scanner is None:
        raise ValueError(f"lor placement {placement.value!r} needs the scanner that places the crystal ids")
    ids = crystal_ids(events, scanner)
    if placement is LORPlacement.CRYSTAL_CENTRES:
        return scanner.crystal_positions(ids[:, 0], ids[:, 1]), scanner.crystal_positions(ids[:, 2], ids[:, 3])
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator for placement 'crystal_samples', got {type(rng).__name__}")
    return (scanner.sample_in_crystals(ids[:, 0], ids[:, 1], rng),
            scanner.sample_in_crystals(ids[:, 2], ids[:, 3], rng))
