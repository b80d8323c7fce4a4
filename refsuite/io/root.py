"""Coincidence files in ROOT, readable and writable whichever engine made them.

Schema: the tree GATE 10's Python coincidence sorter writes (``Coincidences``;
``opengate.actors.coincidences``): every singles attribute suffixed ``1``/``2``, 3-vectors
split as ``PostPosition_X1``; units mm, MeV, ns. The online ``CoincidenceSorterActor`` names
its tree after the actor (often ``coincidences``) and spells vectors ``PostPosition1_X``;
both are accepted on reading and returned in the ``PostPosition_X1`` spelling. Our own
columns (``BlockID1/2``, ``CrystalID1/2``, truth ``TrackVertexPosition_*``,
``TrueGlobalTime1/2``; see :data:`refsuite.mc.COLUMNS`) are kept when present.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

from .atomic import atomic_path

__all__ = ["CoincidenceWriter", "write_coincidences", "read_coincidences", "REQUIRED_COLUMNS", "RootFileError", "assign_crystals"]

#: Branches a coincidence file must have (GATE 10 names, suffix 1 and 2).
REQUIRED_COLUMNS = tuple(
    f"{base}{k}" for base in ("EventID", "GlobalTime", "TotalEnergyDeposit", "PostPosition_X", "PostPosition_Y",
                              "PostPosition_Z") for k in (1, 2))
_TREE_NAMES = ("Coincidences", "coincidences")
_ATTRS_KEY = "refsuite_attrs"
_ONLINE = re.compile(r"^(.*)([12])_([XYZ])$")


class RootFileError(ValueError):
    """A coincidence file that is missing, corrupt, truncated or lacks required branches."""


def _check_events(events) -> int:
    if not isinstance(events, dict) or not events:
        raise TypeError(f"events must be a non-empty dict of column name -> array, got {type(events).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in events]
    if missing:
        raise ValueError(f"events lack required GATE columns {missing}")
    lengths = {k: len(np.asarray(v)) for k, v in events.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"events columns must have equal lengths, got {lengths}")
    return next(iter(lengths.values()))


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
    n = _check_events(events)
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
        n = _check_events(events)
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


def _normalise(name: str) -> str:
    """``PostPosition1_X`` (online sorter) -> ``PostPosition_X1`` (Python sorter)."""
    m = _ONLINE.match(name)
    return f"{m.group(1)}_{m.group(3)}{m.group(2)}" if m else name


def read_coincidences(path, scanner=None, *, tree: str | None = None, columns=None):
    """Read a coincidence ROOT file written by GATE 10 or by :func:`write_coincidences`.

    Parameters
    ----------
    path : str or Path
    scanner : refsuite.geometry.Scanner, optional
        When given, ``BlockID1/2`` and ``CrystalID1/2`` are (re)computed from the
        interaction positions: the block whose box contains (or is nearest to) the point,
        then the crystal voxel of its LUT (:func:`assign_crystals`).
    tree : str, optional
        Tree name; default the first of ``Coincidences``, ``coincidences``, or the only
        tree holding the required branches.
    columns : list of str, optional
        Read only these (normalised) columns plus the required ones.

    Returns
    -------
    refsuite.mc.Events
        Columns as numpy arrays (GATE names, ``PostPosition_X1`` spelling; mm, MeV, ns);
        ``attrs`` holds the run information our writer stored (empty for GATE files).

    Raises
    ------
    RootFileError
        Naming the file: missing, not ROOT, corrupt or truncated, no coincidence tree, or
        a required branch missing.
    """
    import uproot

    from refsuite.mc.montecarlo import Events

    path = Path(path)
    if not path.is_file():
        raise RootFileError(f"{path}: no such file")
    try:
        f = uproot.open(path)
    except Exception as exc:  # uproot raises many types for non-ROOT / damaged headers
        raise RootFileError(f"{path}: not a readable ROOT file ({type(exc).__name__}: {exc})") from exc
    with f:
        t = _find_tree(f, path, tree)
        names = {_normalise(k): k for k in t.keys()}
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            raise RootFileError(f"{path}: tree {t.name!r} lacks required branches {missing}")
        wanted = list(names) if columns is None else list(dict.fromkeys([*REQUIRED_COLUMNS, *columns]))
        absent = [c for c in wanted if c not in names]
        if absent:
            raise RootFileError(f"{path}: tree {t.name!r} has no branches {absent}")
        try:
            raw = t.arrays([names[c] for c in wanted], library="np")
        except Exception as exc:  # truncated baskets, bad decompression
            raise RootFileError(f"{path}: corrupt or truncated data in tree {t.name!r} "
                                f"({type(exc).__name__}: {exc})") from exc
        attrs = {}
        if _ATTRS_KEY in f:
            try:
                attrs = json.loads(str(f[_ATTRS_KEY]))
            except Exception as exc:
                raise RootFileError(f"{path}: unreadable {_ATTRS_KEY} ({exc})") from exc
    events = Events({c: _plain(raw[names[c]]) for c in wanted}, attrs=attrs)
    if scanner is not None:
        for k in (1, 2):
            pts = np.column_stack([events[f"PostPosition_{a}{k}"] for a in "XYZ"])
            b, c = assign_crystals(scanner, pts)
            events[f"BlockID{k}"], events[f"CrystalID{k}"] = b, c
    return events


def _plain(arr):
    a = np.asarray(arr)
    if a.dtype == object:  # strings come back as objects
        return a.astype(str)
    return a


def _find_tree(f, path, tree):
    classes = f.classnames()
    trees = [k.split(";")[0] for k, v in classes.items() if v == "TTree"]
    if tree is not None:
        if tree not in trees:
            raise RootFileError(f"{path}: no tree {tree!r} (trees: {trees})")
        return f[tree]
    for name in _TREE_NAMES:
        if name in trees:
            return f[name]
    good = [k for k in trees if all(c in {_normalise(b) for b in f[k].keys()} for c in REQUIRED_COLUMNS)]
    if len(good) == 1:
        return f[good[0]]
    raise RootFileError(f"{path}: no coincidence tree (looked for {list(_TREE_NAMES)}; trees: {trees})")


def assign_crystals(scanner, points, *, chunk: int = 65536):
    """Block and crystal voxel of global points (n, 3) mm.

    The block is the one whose box contains the point, else the nearest box (distance from
    the point to the box); the crystal is then binned by the block's LUT
    (:meth:`refsuite.geometry.CrystalLUT.locate`). Where blocks overlap (see
    :func:`refsuite.geometry.overlapping_blocks`) a point may lie in two boxes; the lower block
    index is returned.

    Returns
    -------
    block, crystal : int32 arrays (n,)
    """
    p = np.asarray(points, float).reshape(-1, 3)
    half = scanner.block_size / 2
    blocks = np.empty(len(p), np.int32)
    for s0 in range(0, len(p), chunk):
        q = p[s0:s0 + chunk]
        loc = np.einsum("bij,nbj->nbi", scanner.axes, q[:, None, :] - scanner.positions[None])
        out = np.maximum(np.abs(loc) - half, 0.0)
        blocks[s0:s0 + chunk] = np.argmin(np.einsum("nbi,nbi->nb", out, out), axis=1)
    crystals = scanner.locate(p, blocks).astype(np.int32)
    return blocks, crystals
