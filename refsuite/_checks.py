"""Argument validation shared by the public functions.

Every error names the parameter, the offending value and the allowed range, as the
project's conventions require; public functions call these at the top, before any work.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["as_float_array", "check_finite", "check_positive", "check_in_range", "check_choice",
           "validation_lines"]


def _show(value: Any) -> str:
    arr = np.asarray(value)
    if arr.ndim == 0:
        return repr(arr.item())
    return f"array of shape {arr.shape}"


def as_float_array(name: str, value: Any) -> np.ndarray:
    """``value`` as a float64 array; raises TypeError naming ``name`` if it is not numeric."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number or array of real numbers, got {value!r}") from None
    return arr


def check_finite(name: str, value: Any) -> np.ndarray:
    """Reject NaN and infinities."""
    arr = as_float_array(name, value)
    bad = ~np.isfinite(arr)
    if np.any(bad):
        first = float(arr[bad].flat[0]) if arr.ndim else arr.item()
        raise ValueError(f"{name} must be finite, got {first!r} (in {_show(value)})")
    return arr


def check_positive(name: str, value: Any, *, unit: str = "") -> np.ndarray:
    """Require finite values > 0."""
    arr = check_finite(name, value)
    if np.any(arr <= 0):
        first = float(arr[arr <= 0].flat[0]) if arr.ndim else arr.item()
        u = f" {unit}" if unit else ""
        raise ValueError(f"{name} must be > 0{u}, got {first!r}{u}")
    return arr


def check_in_range(
    name: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    unit: str = "",
) -> np.ndarray:
    """Require finite values in the interval between ``low`` and ``high``."""
    arr = check_finite(name, value)
    lo_ok = arr >= low if low_inclusive else arr > low
    hi_ok = arr <= high if high_inclusive else arr < high
    bad = ~(lo_ok & hi_ok)
    if np.any(bad):
        first = float(arr[bad].flat[0]) if arr.ndim else arr.item()
        u = f" {unit}" if unit else ""
        interval = f"{'[' if low_inclusive else '('}{_num(low)}, {_num(high)}{']' if high_inclusive else ')'}"
        raise ValueError(f"{name} must lie in {interval}{u}, got {first!r}{u}")
    return arr


def check_choice(name: str, value: Any, allowed: tuple) -> Any:
    """Require ``value`` to be one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed!r}, got {value!r}")
    return value


def _num(x: float) -> str:
    return "inf" if math.isinf(x) and x > 0 else "-inf" if math.isinf(x) else f"{x:g}"


def validation_lines(exc) -> list[str]:
    """One ``field.path: message (got value)`` line per error of a pydantic ``ValidationError``.

    Shared by the scenario and acceptance-plan schemas so that a bad file is reported the same
    way everywhere: the dotted field, pydantic's reason without its documentation link, the value.
    """
    lines = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        shown = "" if err["type"] == "missing" or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{loc}: {msg}{shown}")
    return lines
