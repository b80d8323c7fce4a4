"""Finished stages of a long run kept on disk, so that an interrupted run resumes where it stopped.

A full-mode study can take longer than the session, job or laptop lid that runs it. With a
work directory, each stage's result (a simulated pair, one setting's registrations, ...) is
written there atomically when it is done, and a rerun with the same directory loads it instead
of computing it again. Stages must be deterministic functions of the run's fingerprint (the
plan's settings, the seed), so a resumed run gives the result of an uninterrupted one; the
fingerprint is recorded in the directory and a run with another fingerprint is refused rather
than mixed with it. Code changes are not part of the fingerprint beyond the package version:
delete the directory after changing what a stage computes.

Stages are stored with :mod:`pickle` (numpy arrays, dicts, dataclasses): load only work
directories you wrote yourself.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any, Callable, Mapping

from .atomic import atomic_open, atomic_write_text

__all__ = ["StageStore"]

_FINGERPRINT = "fingerprint.json"


class StageStore:
    """Results of a run's stages under ``root`` (or nothing stored when ``root`` is None).

    Parameters
    ----------
    root : path or None
        Work directory; created when missing. None computes every stage and stores nothing.
    fingerprint : mapping
        JSON-serialisable description of the run (e.g. study name, plan settings, seed). A
        directory that holds stages of a run with another fingerprint raises ValueError.
    """

    def __init__(self, root: str | os.PathLike | None, fingerprint: Mapping[str, Any]):
        self.fingerprint = _normalised(fingerprint)
        self.root = None if root is None else Path(root)
        if self.root is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        recorded = self.root / _FINGERPRINT
        if recorded.exists():
            old = json.loads(recorded.read_text(encoding="utf-8"))
            if old != self.fingerprint:
                changed = sorted(k for k in set(old) | set(self.fingerprint) if old.get(k) != self.fingerprint.get(k))
                raise ValueError(f"work directory {str(self.root)!r} holds stages of another run (differs in {changed}); "
                                 "use a new directory or delete it")
        else:
            atomic_write_text(recorded, json.dumps(self.fingerprint, indent=1, sort_keys=True))

    @classmethod
    def for_run(cls, work_dir: str | os.PathLike | None, name: str, fingerprint: Mapping[str, Any]) -> "StageStore":
        """The store of run ``name`` in ``work_dir/<name>-<digest of fingerprint>`` (None: store nothing).

        Runs with different fingerprints (another plan or seed) get their own directories in one
        work directory; rerunning the same plan and seed finds its stages again.
        """
        if work_dir is None:
            return cls(None, fingerprint)
        digest = hashlib.sha256(json.dumps(_normalised(fingerprint), sort_keys=True).encode()).hexdigest()[:12]
        return cls(Path(work_dir) / f"{name}-{digest}", fingerprint)

    def path(self, name: str) -> Path | None:
        """Where a stage that manages its own file (e.g. a training checkpoint) keeps it; None without a root."""
        if not name or any(c in name for c in "/\\") or name.startswith("."):
            raise ValueError(f"stage name must be a plain file name, got {name!r}")
        return None if self.root is None else self.root / name

    def done(self, name: str) -> bool:
        """Whether stage ``name`` was stored by an earlier (or this) run."""
        path = self.path(f"{name}.pkl")
        return path is not None and path.exists()

    def load_or_compute(self, name: str, compute: Callable[[], Any]) -> Any:
        """The stored result of stage ``name``, or ``compute()`` stored atomically before it is returned."""
        path = self.path(f"{name}.pkl")
        if path is not None and path.exists():
            with open(path, "rb") as fh:
                return pickle.load(fh)
        value = compute()
        if path is not None:
            with atomic_open(path, "wb") as fh:
                pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
        return value


def _normalised(fingerprint: Mapping[str, Any]) -> dict:
    """The fingerprint as JSON gives it back (tuples as lists), with the package version."""
    from refsuite import __version__

    return json.loads(json.dumps({**fingerprint, "refsuite": __version__}, sort_keys=True, default=str))
