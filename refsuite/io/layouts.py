"""Coincidence-file layouts :func:`refsuite.io.read_events` recognises, and their conversion.

Each layout maps a file's branch (or RNTuple field) names onto the event columns of
:mod:`refsuite.events` (GATE 10 names; mm, ns, MeV) with the unit factor of each:

``gate10``
    GATE 10's Python coincidence sorter (``opengate.actors.coincidences``; tree
    ``Coincidences``): ``EventID1``, ``GlobalTime1`` (ns), ``TotalEnergyDeposit1`` (MeV),
    ``PostPosition_X1`` (mm), ... and the files :func:`refsuite.io.write_coincidences` writes.
    The online ``CoincidenceSorterActor`` (tree named after the actor, often ``coincidences``)
    spells vectors ``PostPosition1_X``; both spellings are this layout.
``gate9``
    GATE 9's ``GateToRoot`` coincidence tree (``Coincidences``; ``GateRootDefs``): ``eventID1``,
    ``time1`` (s), ``energy1`` (MeV), ``globalPosX1`` (mm), ``sourcePosX1`` (mm, the decay point),
    with the system's volume ids ``gantryID1``, ``rsectorID1``, ``moduleID1``, ``submoduleID1``,
    ``crystalID1``, ``layerID1`` and per-coincidence scalars (``runID``, ``axialPos``, ...).
    Converted: ``time*`` s -> ns into ``GlobalTime*``; ``energy*`` into ``TotalEnergyDeposit*``
    (MeV both); ``globalPos*`` into ``PostPosition_*``; ``sourcePos*`` into the truth
    ``TrackVertexPosition_*``; ``eventID*`` into ``EventID*``. Every other branch is kept under
    its own name (the volume ids are GATE's system hierarchy, not a
    :class:`refsuite.geometry.Scanner`'s block and crystal indices).

Containers: a layout may come in a TTree or an RNTuple (what uproot >= 5.7 writes for
``file[name] = {...}``); the names are the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from refsuite.events import REQUIRED_COLUMNS

__all__ = ["LAYOUTS", "Layout", "known_layouts", "match_layout"]

_GATE10_ONLINE = re.compile(r"^(.*)([12])_([XYZ])$")
_GATE9 = re.compile(r"^(eventID|time|energy|globalPos([XYZ])|sourcePos([XYZ]))([12])$")
_S_TO_NS = 1e9


@dataclass(frozen=True)
class Layout:
    """A naming of coincidence branches: ``name``, a one-line ``description`` and the map."""

    name: str
    description: str

    def column(self, branch: str) -> tuple[str, float | None]:
        """Event column a branch becomes and its unit factor (None: stored as it is)."""
        if self.name == "gate10":
            m = _GATE10_ONLINE.match(branch)
            return (f"{m.group(1)}_{m.group(3)}{m.group(2)}" if m else branch), None
        m = _GATE9.match(branch)
        if not m:
            return branch, None
        base, k = m.group(1), m.group(4)
        if base == "eventID":
            return f"EventID{k}", 1.0
        if base == "time":
            return f"GlobalTime{k}", _S_TO_NS
        if base == "energy":
            return f"TotalEnergyDeposit{k}", 1.0
        if m.group(2):
            return f"PostPosition_{m.group(2)}{k}", 1.0
        return f"TrackVertexPosition_{m.group(3)}{k}", 1.0

    def columns(self, branches) -> dict[str, str]:
        """Event column -> branch for every branch (the first branch wins a shared column)."""
        out = {}
        for b in branches:
            out.setdefault(self.column(b)[0], b)
        return out

    def missing(self, branches) -> list[str]:
        """Required event columns (:data:`refsuite.events.REQUIRED_COLUMNS`) the branches lack."""
        have = self.columns(branches)
        return [c for c in REQUIRED_COLUMNS if c not in have]

    def convert(self, column: str, branch: str, values: np.ndarray) -> np.ndarray:
        """Values of ``branch`` in the units (and, for converted columns, dtype) of ``column``."""
        factor = self.column(branch)[1]
        if factor is None:
            return values
        if column.startswith("EventID"):
            return np.asarray(values).astype(np.int64)
        out = np.asarray(values, np.float64)
        return out * factor if factor != 1.0 else out


LAYOUTS = (
    Layout("gate10", "GATE 10 coincidences (EventID1, GlobalTime1 ns, TotalEnergyDeposit1 MeV, PostPosition_X1 "
                     "or PostPosition1_X mm)"),
    Layout("gate9", "GATE 9 coincidences (eventID1, time1 s, energy1 MeV, globalPosX1 mm, sourcePosX1 mm)"),
)


def match_layout(branches):
    """The first layout of :data:`LAYOUTS` the branch names satisfy, else None."""
    branches = list(branches)
    for layout in LAYOUTS:
        if not layout.missing(branches):
            return layout
    return None


def known_layouts() -> str:
    """One line naming every layout read_events knows (for error messages)."""
    return "; ".join(f"{lay.name}: {lay.description}" for lay in LAYOUTS) + \
        "; npz: refsuite list-mode .npz (refsuite.io.save_listmode); petsird: PETSIRD binary or NDJSON stream " \
        "(refsuite.io.read_petsird)"
