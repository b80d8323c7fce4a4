"""Coincidence files in ROOT, readable and writable whichever engine made them.

Written schema: the tree GATE 10's Python coincidence sorter writes (``Coincidences``;
``opengate.actors.coincidences``): every singles attribute suffixed ``1``/``2``, 3-vectors
split as ``PostPosition_X1``; units mm, MeV, ns (:mod:`refsuite.events`). Read: every layout
of :mod:`refsuite.io.layouts` (GATE 10 with the Python or the online sorter's spelling,
GATE 9), in a TTree or an RNTuple, converted to those names and units. Our own columns
(``BlockID1/2``, ``CrystalID1/2``, truth ``TrackVertexPosition_*``, ``TrueGlobalTime1/2``;
see :data:`refsuite.events.COLUMNS`) are kept when present.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from refsuite.events import REQUIRED_COLUMNS, Events, check_events, positions
from refsuite.geometry.assign import assign_crystals

from .atomic import atomic_path
from .layouts import LAYOUTS, known_layouts, match_layout

__all__ = ["CoincidenceWriter", "write_coincidences", "read_coincidences", "REQUIRED_COLUMNS", "RootFileError"]

_TREE_NAMES = ("Coincidences", "coincidences")
_CONTAINERS = ("TTree", "ROOT::RNTuple")
_ATTRS_KEY = "refsuite_attrs"


class RootFileError(ValueError):
    """A coincidence file that is missing, corrupt, truncated or lacks required branches."""


def write_coincidences(path, events, *, tree: str = "Coincidences", volume_ids: bool = True,
                       chunk_size: int = 1_000_000) -> Path:
    """Write coincidences to a ROOT file, atomically (temp file + rename).

    Parameters
    ----------
    path : str or Path
        Output ``.root`` file; replaced only when the write has completed.
    events : dict of str -> ndarray
        Equal-length columns, at least :data:`REQUIRED_COLUMNS` (mm, MeV, ns). Numeric
        columns are written with their dtype; string columns as strings. ``events.attrs``
        (if any) is stored as JSON in a ``TObjString`` named ``refsuite_attrs``.
    tree : str
        Tree name (GATE's Python sorter: ``Coincidences``).
    volume_ids : bool
        Add ``PreStepUniqueVolumeID1/2`` strings ``"0_<block>_<crystal>"`` from
        ``BlockID``/``CrystalID`` when those are present and the IDs are not.
    chunk_size : int
        Rows per basket write (bounds memory for large files).

    Returns
    -------
    Path
    """
    n = check_events(events)
    with CoincidenceWriter(path, tree=tree, volume_ids=volume_ids) as w:
        step = max(1, int(chunk_size))
        for s0 in range(0, max(n, 1), step):
            w.write({k: np.asarray(v)[s0:s0 + step] for k, v in events.items()})
        w.attrs.update(getattr(events, "attrs", None) or {})
    return Path(path)


class CoincidenceWriter:
    """Stream coincidence chunks into one ROOT file; the file appears only on a clean exit.

    >>> with CoincidenceWriter("run.root") as w:          # doctest: +SKIP
    ...     for cols, _ in iter_simulate(scanner, phantom, n_decays=10**8, seed=1):
    ...         w.write(cols)

    Every chunk must have the same columns and dtypes (those of the first). ``attrs`` (a
    dict) is written as JSON at the end. On an exception nothing is left behind.
    """

    def __init__(self, path, *, tree: str = "Coincidences", volume_ids: bool = True):
        self.path = Path(path)
        self.tree_name = tree
        self.volume_ids = volume_ids
        self.attrs: dict = {}
        self.n_written = 0
        self._tree = None
        self._columns = None

    def __enter__(self):
        import uproot

        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        try:
            self._file = uproot.recreate(tmp)
        except BaseException:
            self._atomic.__exit__(*sys.exc_info())
            raise
        return self

    def write(self, events) -> None:
        """Append equal-length columns (at least :data:`REQUIRED_COLUMNS`)."""
        n = check_events(events)
        cols = {k: np.asarray(v) for k, v in events.items()}
        if self.volume_ids and "PreStepUniqueVolumeID1" not in cols and "BlockID1" in cols and "CrystalID1" in cols:
            for k in (1, 2):
                cols[f"PreStepUniqueVolumeID{k}"] = np.char.add(
                    np.char.add("0_", cols[f"BlockID{k}"].astype(str)),
                    np.char.add("_", cols[f"CrystalID{k}"].astype(str)))
        if self._tree is None:
            # mktree: assigning a dict would write an RNTuple, which GATE tools do not read
            self._columns = list(cols)
            self._tree = self._file.mktree(
                self.tree_name, {k: ("string" if v.dtype.kind in "UOS" else v.dtype) for k, v in cols.items()})
        elif list(cols) != self._columns:
            raise ValueError(f"chunk columns {sorted(cols)} differ from the first chunk's {sorted(self._columns)}")
        self._tree.extend({k: _branch(v) for k, v in cols.items()})
        self.n_written += n

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                if self._tree is None:
                    raise ValueError(f"{self.path}: no events were written")
                if self.attrs:
                    self._file[_ATTRS_KEY] = json.dumps(self.attrs, default=_json_default)
        except BaseException:
            exc_type, exc, tb = sys.exc_info()
            self._file.close()
            self._atomic.__exit__(exc_type, exc, tb)
            raise
        self._file.close()
        return self._atomic.__exit__(exc_type, exc, tb)


def _branch(v):
    if v.dtype.kind in "UOS":
        import awkward as ak

        return ak.from_numpy(v.astype(str))
    return v


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def read_coincidences(path, scanner=None, *, tree: str | None = None, columns=None) -> Events:
    """Read a coincidence ROOT file: GATE 10 or 9, TTree or RNTuple, or :func:`write_coincidences` output.

    Parameters
    ----------
    path : str or Path
    scanner : refsuite.geometry.Scanner, optional
        When given, ``BlockID1/2`` and ``CrystalID1/2`` are (re)computed from the
        interaction positions: the block whose box contains (or is nearest to) the point,
        then the crystal voxel of its LUT (:func:`refsuite.geometry.assign_crystals`).
        :func:`refsuite.io.read_events` makes keeping or reassigning a choice.
    tree : str, optional
        Tree (or RNTuple) name; default the first of ``Coincidences``, ``coincidences``, or
        the only one holding the branches of a known layout (:mod:`refsuite.io.layouts`).
    columns : list of str, optional
        Read only these (converted) columns plus the required ones.

    Returns
    -------
    refsuite.events.Events
        Columns as numpy arrays (GATE 10 names, ``PostPosition_X1`` spelling; mm, MeV, ns);
        ``attrs`` holds the run information our writer stored (empty for GATE files).

    Raises
    ------
    RootFileError
        Naming the file: missing, not ROOT, corrupt or truncated, no coincidence tree, or
        no known layout (the message names the layouts and the branches the file has).
    """
    events = _read_root(Path(path), tree, columns)
    if scanner is not None:
        assign_ids(events, scanner)
    return events


def assign_ids(events, scanner) -> None:
    """Set ``BlockID1/2``, ``CrystalID1/2`` of ``events`` (in place) from the interaction points."""
    for k in (1, 2):
        events[f"BlockID{k}"], events[f"CrystalID{k}"] = assign_crystals(scanner, positions(events, k))


def _read_root(path: Path, tree, columns) -> Events:
    import uproot

    if not path.is_file():
        raise RootFileError(f"{path}: no such file")
    try:
        f = uproot.open(path)
    except Exception as exc:  # uproot raises many types for non-ROOT / damaged headers
        raise RootFileError(f"{path}: not a readable ROOT file ({type(exc).__name__}: {exc})") from exc
    with f:
        t, name = _find_tree(f, path, tree)
        branches = list(t.keys())
        layout = match_layout(branches)
        if layout is None:
            near = min(LAYOUTS, key=lambda lay: len(lay.missing(branches)))
            raise RootFileError(f"{path}: tree {name!r} lacks required branches {near.missing(branches)} of the "
                                f"{near.name} layout; known layouts: {known_layouts()}; its branches: {branches}")
        names = layout.columns(branches)
        wanted = list(names) if columns is None else list(dict.fromkeys([*REQUIRED_COLUMNS, *columns]))
        absent = [c for c in wanted if c not in names]
        if absent:
            raise RootFileError(f"{path}: tree {name!r} has no branches {absent}")
        try:
            raw = t.arrays([names[c] for c in wanted], library="np")
        except Exception as exc:  # truncated baskets, bad decompression
            raise RootFileError(f"{path}: corrupt or truncated data in tree {name!r} "
                                f"({type(exc).__name__}: {exc})") from exc
        attrs = {}
        if _ATTRS_KEY in f:
            try:
                attrs = json.loads(str(f[_ATTRS_KEY]))
            except Exception as exc:
                raise RootFileError(f"{path}: unreadable {_ATTRS_KEY} ({exc})") from exc
    return Events({c: layout.convert(c, names[c], _plain(raw[names[c]])) for c in wanted}, attrs=attrs)


def _plain(arr):
    a = np.asarray(arr)
    if a.dtype == object:  # strings come back as objects
        return a.astype(str)
    return a


def _find_tree(f, path, tree):
    """(tree or RNTuple, its name): the one named, a conventional name, or the only one of a known layout."""
    found = [k.split(";")[0] for k, v in f.classnames().items() if v in _CONTAINERS]
    if tree is not None:
        if tree not in found:
            raise RootFileError(f"{path}: no tree {tree!r} (trees: {found})")
        return f[tree], tree
    for name in _TREE_NAMES:
        if name in found:
            return f[name], name
    good = [k for k in found if match_layout(f[k].keys()) is not None]
    if len(good) == 1:
        return f[good[0]], good[0]
    contents = {k: list(f[k].keys()) for k in found}
    raise RootFileError(f"{path}: no coincidence tree of a known layout (looked for {list(_TREE_NAMES)} or one "
                        f"tree matching a layout; known layouts: {known_layouts()}; trees and their branches: "
                        f"{contents})")
