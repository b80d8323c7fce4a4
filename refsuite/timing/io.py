"""List-mode files of the timing calibration: ``.npz`` archives written atomically.

A file holds the event columns (``time_ps``, ``energy_au``, ``source_mm``, plus any extra
per-event column such as ``dt_corrected_ps``) and, optionally, the simulation truth: its
per-event arrays under ``truth/<name>`` and its parameters as JSON under ``truth.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from refsuite.io.atomic import atomic_path

from .features import validate_events

__all__ = ["save_events", "load_events"]


def save_events(path, events: dict, truth: dict | None = None) -> Path:
    """Write ``events`` (and ``truth``) to ``path`` (``.npz``) atomically; returns the path."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"path must end in .npz, got {str(path)!r}")
    validate_events(events)
    arrays = {k: np.asarray(v) for k, v in events.items()}
    if truth is not None:
        meta = {}
        for k, v in truth.items():
            if isinstance(v, np.ndarray):
                arrays[f"truth/{k}"] = v
            elif isinstance(v, dict):
                meta[k] = {kk: (vv.tolist() if isinstance(vv, np.ndarray) else vv) for kk, vv in v.items()}
            else:
                meta[k] = v
        arrays["truth.json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)
    return path


def load_events(path, *, with_truth: bool = False):
    """Read a file written by :func:`save_events`; returns ``events`` or ``(events, truth)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no list-mode file at {str(path)!r}")
    with np.load(path, allow_pickle=False) as data:
        events = {k: data[k] for k in data.files if not k.startswith("truth")}
        truth = {k[len("truth/"):]: data[k] for k in data.files if k.startswith("truth/")}
        if "truth.json" in data.files:
            truth.update(json.loads(data["truth.json"].tobytes().decode()))
    validate_events(events, name=str(path))
    return (events, truth) if with_truth else events
