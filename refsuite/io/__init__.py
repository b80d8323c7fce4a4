"""File input/output: atomic writes, ROOT coincidences (GATE 10 schema), npz list-mode and
the stage store that lets long runs resume."""

from .atomic import atomic_open, atomic_path, atomic_write_bytes, atomic_write_text
from .listmode import load_listmode, save_listmode
from .stages import StageStore
from .root import (
    REQUIRED_COLUMNS, CoincidenceWriter, RootFileError, assign_crystals, read_coincidences, write_coincidences,
)

__all__ = [
    "CoincidenceWriter", "REQUIRED_COLUMNS", "RootFileError", "StageStore", "assign_crystals", "atomic_open", "atomic_path",
    "atomic_write_bytes", "atomic_write_text", "load_listmode", "read_coincidences", "save_listmode",
    "write_coincidences",
]

# PETSIRD (ETSI raw-data standard) files; petsird itself is imported only when they are used
from .petsird import PETSIRD_SUFFIXES, PetsirdScan, petsird_format, read_petsird, write_petsird  # noqa: E402

__all__ += ["PETSIRD_SUFFIXES", "PetsirdScan", "petsird_format", "read_petsird", "write_petsird"]
