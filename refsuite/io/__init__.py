"""File input/output: :func:`read_events` (every list-mode layout refsuite knows), ROOT
coincidences (GATE 10 schema), npz list-mode, NIfTI images (:mod:`refsuite.io.nifti`, one axis
order for every module), atomic writes and the stage store that lets long runs resume."""

from .atomic import atomic_open, atomic_path, atomic_write_bytes, atomic_write_text
from .layouts import LAYOUTS, Layout
from .listmode import load_listmode, save_listmode
from .nifti import NiftiVolume, read_nifti, write_nifti
from .read import CrystalIds, read_events
from .root import REQUIRED_COLUMNS, CoincidenceWriter, RootFileError, read_coincidences, write_coincidences
from .stages import StageStore

__all__ = [
    "CoincidenceWriter", "CrystalIds", "LAYOUTS", "Layout", "NiftiVolume", "REQUIRED_COLUMNS", "RootFileError", "StageStore",
    "atomic_open", "atomic_path", "atomic_write_bytes", "atomic_write_text", "load_listmode", "read_coincidences",
    "read_events", "read_nifti", "save_listmode", "write_coincidences", "write_nifti",
]

# PETSIRD (ETSI raw-data standard) files; petsird itself is imported only when they are used
from .petsird import (PETSIRD_SUFFIXES, PetsirdScan, PetsirdWriter, petsird_format, petsird_suffix_format,  # noqa: E402
                      read_petsird, write_petsird)

__all__ += ["PETSIRD_SUFFIXES", "PetsirdScan", "PetsirdWriter", "petsird_format", "petsird_suffix_format",
            "read_petsird", "write_petsird"]
