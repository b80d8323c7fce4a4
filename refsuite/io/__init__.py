"""File input/output: atomic writes, ROOT coincidences (GATE 10 schema) and, as they land,
NIfTI and npz list-mode."""

from .atomic import atomic_open, atomic_path, atomic_write_bytes, atomic_write_text
from .root import REQUIRED_COLUMNS, CoincidenceWriter, RootFileError, assign_crystals, read_coincidences, write_coincidences

__all__ = ["CoincidenceWriter", "REQUIRED_COLUMNS", "RootFileError", "assign_crystals", "atomic_open", "atomic_path",
           "atomic_write_bytes", "atomic_write_text", "read_coincidences", "write_coincidences"]
