"""File input/output: atomic writes (and, as they land, ROOT, NIfTI and npz list-mode)."""

from .atomic import atomic_open, atomic_path, atomic_write_bytes, atomic_write_text

__all__ = ["atomic_open", "atomic_path", "atomic_write_bytes", "atomic_write_text"]
