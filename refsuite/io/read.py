"""``read_events``: one reader for every list-mode file refsuite meets."""

from __future__ import annotations

import enum
from pathlib import Path

from refsuite.events import CRYSTAL_ID_COLUMNS, Events

from .layouts import known_layouts
from .listmode import load_listmode
from .petsird import petsird_format, read_petsird
from .root import RootFileError, assign_ids, read_coincidences

__all__ = ["CrystalIds", "read_events"]

_ZIP_MAGIC = b"PK\x03\x04"
_ROOT_MAGIC = b"root"


class CrystalIds(enum.Enum):
    """What :func:`read_events` does with the crystal ids (``BlockID1/2``, ``CrystalID1/2``)."""

    #: keep the ids the file records (a detector's own readout); a file without them gets them
    #: assigned from the interaction points when a scanner is given, else has none
    KEEP = "keep"
    #: compute them from the interaction points on the scanner, replacing any in the file
    ASSIGN = "assign"


def read_events(path, scanner=None, *, crystal_ids="keep") -> Events:
    """Read a list-mode coincidence file of any known layout into the event model.

    Recognised (by content, not by the file name): ROOT files holding a coincidence TTree or
    RNTuple in the GATE 10 layout (Python or online sorter spelling, and what
    :func:`refsuite.io.write_coincidences` and ``refsuite simulate`` write) or the GATE 9
    layout (:mod:`refsuite.io.layouts`), refsuite's ``.npz`` list-mode files
    (:func:`refsuite.io.save_listmode`), and PETSIRD files (binary or NDJSON,
    :func:`refsuite.io.read_petsird`), of which the prompts are returned (the delayeds, the
    header's scanner and efficiencies: :func:`refsuite.io.read_petsird`). Columns come back with
    the names and units of :mod:`refsuite.events` (GATE 10 names; mm, ns, MeV): GATE 9 times
    are converted from s; a PETSIRD event has its crystal ids, ``t1 - t2`` at its TOF bin's
    centre, and its interaction points at the crystal centres of the file's scanner.

    Parameters
    ----------
    path : str or Path
    scanner : refsuite.geometry.Scanner, optional
        The geometry crystal ids refer to; needed for ``crystal_ids="assign"``. Ids are
        assigned with :func:`refsuite.geometry.assign_crystals` (block containing or nearest
        the interaction point, then the crystal voxel of its LUT). A PETSIRD file's ids are
        those of its header's scanner: with ``"keep"`` the scanner must have as many blocks and
        crystals per block.
    crystal_ids : {"keep", "assign"} or CrystalIds
        ``"keep"``: the ids the file records (a file without any gets them assigned when
        ``scanner`` is given). ``"assign"``: always from the interaction points on ``scanner``.

    Returns
    -------
    refsuite.events.Events

    Raises
    ------
    ValueError
        ``crystal_ids`` unknown, or ``"assign"`` without a scanner (before the file is read).
    refsuite.io.RootFileError (a ValueError)
        The file is missing, damaged, or of no known layout: the message names the known
        layouts and the branches (or the start of the file) it found.
    ValueError
        A PETSIRD file that :func:`refsuite.io.read_petsird` refuses (one line naming the
        file), or whose scanner does not match ``scanner`` under ``"keep"``.
    """
    try:
        policy = CrystalIds(crystal_ids)
    except ValueError:
        raise ValueError(f"crystal_ids must be 'keep' or 'assign', got {crystal_ids!r}") from None
    if policy is CrystalIds.ASSIGN and scanner is None:
        raise ValueError("crystal_ids='assign' needs the scanner the ids refer to (scanner=None given)")
    path = Path(path)
    if not path.is_file():
        raise RootFileError(f"{path}: no such file")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head == _ZIP_MAGIC:
        events = load_listmode(path)
    elif head == _ROOT_MAGIC:
        events = read_coincidences(path)
    elif petsird_format(path) is not None:
        events = _read_petsird_prompts(path, scanner, policy)
    else:
        raise RootFileError(f"{path}: neither a ROOT file, an npz archive nor a PETSIRD stream (starts with "
                            f"{head!r}); known layouts: {known_layouts()}")
    has_ids = all(c in events for c in CRYSTAL_ID_COLUMNS)
    if scanner is not None and (policy is CrystalIds.ASSIGN or not has_ids):
        assign_ids(events, scanner)
    return events


def _read_petsird_prompts(path, scanner, policy) -> Events:
    """Prompts of a PETSIRD file; under KEEP its ids must fit ``scanner``'s blocks and crystals."""
    # the header scanner's attenuation does not enter the events: the given scanner's serves
    # for a crystal material PETSIRD names but refsuite has no coefficient for
    scan = read_petsird(path, mu_per_mm=None if scanner is None else scanner.mu_per_mm)
    if scanner is not None and policy is CrystalIds.KEEP:
        have, want = (scan.scanner.n_blocks, scan.scanner.n_crystals), (scanner.n_blocks, scanner.n_crystals)
        if have != want:
            raise ValueError(f"{path}: the PETSIRD file's scanner has {have[0]} modules x {have[1]} detecting "
                             f"elements, scanner {scanner.name!r} {want[0]} blocks x {want[1]} crystals: its crystal "
                             "ids do not index this scanner (crystal_ids='assign' places them by position)")
    return scan.prompts
