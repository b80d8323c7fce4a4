"""Strict JSON (RFC 8259) for result files: NaN and infinities become ``null``.

``json.dumps`` writes bare ``NaN``/``Infinity`` by default, which other JSON readers (and
``json.loads(..., parse_constant=...)`` in strict mode) reject; a results file is the next
run's baseline, so it must stay valid JSON. :func:`strict` converts numpy scalars and arrays
to Python, named tuples and dataclass-like ``_asdict`` objects to dicts, and every non-finite
float to ``None``, and lists where it did so, so the writer can say why a value is missing.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["strict", "dumps_strict"]


def strict(value: Any, *, where: str = "", replaced: list[str] | None = None) -> Any:
    """``value`` as plain, strictly JSON-serialisable Python.

    Parameters
    ----------
    value : object
        Nested dicts, lists, tuples, named tuples, numpy scalars/arrays, numbers, strings.
    where : str
        Path prefix of ``value`` for the ``replaced`` list (e.g. ``"checks.timing"``).
    replaced : list of str, optional
        Receives the path (``a.b[3]``) of every non-finite float replaced by ``None``.
    """
    import numpy as np

    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if hasattr(value, "_asdict"):
        value = value._asdict()
    if isinstance(value, dict):
        return {str(k): strict(v, where=f"{where}.{k}" if where else str(k), replaced=replaced)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v, where=f"{where}[{i}]", replaced=replaced) for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        if replaced is not None:
            replaced.append(where)
        return None
    return value


def dumps_strict(value: Any, **kwargs) -> str:
    """``json.dumps`` of :func:`strict` ``(value)``, refusing anything that is not strict JSON."""
    return json.dumps(strict(value), allow_nan=False, **kwargs)
