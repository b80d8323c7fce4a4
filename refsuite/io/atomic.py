"""Atomic file output (temporary file beside the target, then rename), as part of :mod:`refsuite.io`.

The primitives live in :mod:`refsuite._atomic`, at the bottom of the package, so that the
geometry and phantom layers (which save their own JSON) can use them without importing ``io``;
this module hands the same functions on.
"""

from refsuite._atomic import (  # noqa: F401 (re-exported)
    atomic_open, atomic_path, atomic_write_bytes, atomic_write_text, remove_stale_temps, temp_files_of, temp_name,
)

__all__ = ["atomic_path", "atomic_open", "atomic_write_bytes", "atomic_write_text", "temp_name",
           "remove_stale_temps", "temp_files_of"]
