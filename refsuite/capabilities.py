"""Optional capabilities of this installation, recorded instead of swallowed.

Some parts of refsuite need things a machine may lack: a CUDA device, opengate (the ``gate``
extra), Geant4's data sets (opengate downloads them on first import unless ``GATEONRTD=1``),
parallelproj (conda-forge only). Each probe returns a :class:`Capability` saying whether it
is available and, if not, what exactly is missing and how to get it; :func:`require` raises
with that message at the point of use, and the test suite skips with it.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from typing import Callable, NamedTuple

__all__ = ["Capability", "capability", "require", "CAPABILITIES"]


class Capability(NamedTuple):
    """Whether a capability is present; ``detail`` says what is there or what is missing."""

    available: bool
    detail: str


@functools.cache
def _cuda() -> Capability:
    import torch

    if torch.cuda.is_available():
        return Capability(True, f"CUDA device: {torch.cuda.get_device_name(0)}")
    return Capability(False, "no CUDA device (torch.cuda.is_available() is False)")


@functools.cache
def _opengate() -> Capability:
    spec = importlib.util.find_spec("opengate")
    if spec is None:
        return Capability(False, "opengate is not installed: pip install 'refsuite[gate]' (opengate 10.x)")
    version = _dist_version("opengate")
    return Capability(True, f"opengate {version}")


@functools.cache
def _geant4_data() -> Capability:
    spec = importlib.util.find_spec("opengate_core")
    if spec is None or not spec.submodule_search_locations:
        return Capability(False, "opengate_core is not installed, so there is no Geant4 data either")
    folder = Path(next(iter(spec.submodule_search_locations))) / "geant4_data"
    if not folder.is_dir() or not any(folder.iterdir()):
        return Capability(
            False,
            f"Geant4 data sets are missing ({folder} is empty or absent); opengate downloads them "
            "on first import with network access (unset GATEONRTD and run `python -c 'import opengate'`)",
        )
    return Capability(True, f"Geant4 data in {folder}")


@functools.cache
def _parallelproj() -> Capability:
    if importlib.util.find_spec("parallelproj") is None:
        return Capability(False, "parallelproj is not importable (it is distributed on conda-forge only)")
    return Capability(True, f"parallelproj {_dist_version('parallelproj')}")


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "(version unknown)"


CAPABILITIES: dict[str, Callable[[], Capability]] = {
    "cuda": _cuda,
    "opengate": _opengate,
    "geant4_data": _geant4_data,
    "parallelproj": _parallelproj,
}


def capability(name: str) -> Capability:
    """Probe capability ``name`` (one of :data:`CAPABILITIES`)."""
    try:
        probe = CAPABILITIES[name]
    except KeyError:
        raise ValueError(f"name must be one of {sorted(CAPABILITIES)}, got {name!r}") from None
    return probe()


def require(name: str, purpose: str = "") -> None:
    """Raise RuntimeError naming what is missing when capability ``name`` is absent."""
    cap = capability(name)
    if not cap.available:
        for_what = f" for {purpose}" if purpose else ""
        raise RuntimeError(f"{name} is required{for_what}: {cap.detail}")


def gate_environment() -> dict[str, str]:
    """Environment for importing opengate without network access (``GATEONRTD=1``)."""
    env = dict(os.environ)
    env.setdefault("GATEONRTD", "1")
    return env
