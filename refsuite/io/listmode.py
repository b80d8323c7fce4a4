"""List-mode events as ``.npz``: the same columns as the ROOT files, without ROOT.

One array per column (GATE 10 names and units, see :mod:`refsuite.events`) plus the run
information (``events.attrs``) as JSON under the key ``__attrs__``. Written atomically.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from refsuite.events import REQUIRED_COLUMNS, Events, check_events

from .atomic import atomic_path

__all__ = ["save_listmode", "load_listmode"]

_ATTRS = "__attrs__"


def save_listmode(path, events, *, compress: bool = False) -> Path:
    """Write a dict of equal-length columns (and its ``attrs``) to ``path`` (.npz), atomically."""
    from .root import _json_default

    check_events(events)
    cols = {k: np.asarray(v) for k, v in events.items()}
    if _ATTRS in cols:
        raise ValueError(f"events must not have a column named {_ATTRS!r}")
    cols[_ATTRS] = np.array(json.dumps(getattr(events, "attrs", None) or {}, default=_json_default))
    path = Path(path)
    with atomic_path(path, suffix=".npz") as tmp:
        (np.savez_compressed if compress else np.savez)(tmp, **cols)
    return path


def load_listmode(path):
    """Read :func:`save_listmode` output; returns :class:`refsuite.events.Events`.

    Raises ``ValueError`` naming the file when it is missing, not an npz archive, or truncated.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            cols = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{path}: not a readable list-mode .npz file ({type(exc).__name__}: {exc})") from exc
    attrs = json.loads(str(cols.pop(_ATTRS))) if _ATTRS in cols else {}
    missing = [c for c in REQUIRED_COLUMNS if c not in cols]
    if missing:
        raise ValueError(f"{path}: list-mode file lacks required columns {missing}")
    return Events(cols, attrs=attrs)
