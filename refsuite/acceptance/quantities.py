"""Tolerances with units, as written in an acceptance plan ("100 um", "0.1 deg", "50 ps", "5 %").

A tolerance of the wrong kind (an angle where a length is expected) is an error that names
the plan field. Values are converted to refsuite's units: mm, rad, ps, dimensionless.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

__all__ = ["Dimension", "Quantity", "parse_quantity", "Length", "Angle", "Time", "Fraction"]


class Dimension(enum.Enum):
    """Kinds of tolerance and the unit refsuite computes in."""

    LENGTH = "mm"
    ANGLE = "rad"
    TIME = "ps"
    FRACTION = ""


#: unit symbol -> (dimension, factor to refsuite's unit)
UNITS = {
    "um": (Dimension.LENGTH, 1e-3), "mm": (Dimension.LENGTH, 1.0), "cm": (Dimension.LENGTH, 10.0),
    "rad": (Dimension.ANGLE, 1.0), "mrad": (Dimension.ANGLE, 1e-3), "deg": (Dimension.ANGLE, math.pi / 180.0),
    "ps": (Dimension.TIME, 1.0), "ns": (Dimension.TIME, 1e3),
    "%": (Dimension.FRACTION, 1e-2), "": (Dimension.FRACTION, 1.0),
}

_PATTERN = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-zA-Z%]*)\s*$")


@dataclass(frozen=True)
class Quantity:
    """A tolerance as written (``text``) and its ``value`` in refsuite's unit of ``dimension``."""

    text: str
    value: float
    dimension: Dimension

    def __str__(self) -> str:
        return self.text

    def display(self, unit: str) -> float:
        """The value in another unit of the same dimension (e.g. ``"um"``)."""
        dim, factor = UNITS[unit]
        if dim is not self.dimension:
            raise ValueError(f"{unit!r} is not a unit of {self.dimension.name.lower()}")
        return self.value / factor


def parse_quantity(value, dimension: Dimension) -> Quantity:
    """Parse ``"100 um"`` (or a bare number for fractions) into a :class:`Quantity`.

    Raises
    ------
    ValueError
        For text that is not ``<number> <unit>``, a unit of another dimension, or a value
        that is negative or not finite.
    """
    if isinstance(value, Quantity):
        value = value.text
    allowed = ", ".join(repr(u) for u, (d, _) in UNITS.items() if d is dimension and u)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and dimension is Dimension.FRACTION:
        text = repr(float(value))
        number, unit = float(value), ""
    elif isinstance(value, str):
        m = _PATTERN.match(value)
        if m is None:
            raise ValueError(f"expected '<number> <unit>' with a unit of {dimension.name.lower()} ({allowed}), "
                             f"got {value!r}")
        text, number, unit = value.strip(), float(m.group(1)), m.group(2)
    else:
        raise ValueError(f"expected a string '<number> <unit>' ({allowed}), got {value!r}")
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r} in {value!r}; expected a unit of {dimension.name.lower()} ({allowed})")
    dim, factor = UNITS[unit]
    if dim is not dimension:
        what = "a number without unit" if dim is Dimension.FRACTION else f"a {dim.name.lower()}"
        raise ValueError(f"{value!r} is {what}, but this tolerance is a {dimension.name.lower()} ({allowed})")
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"a tolerance must be finite and >= 0, got {value!r}")
    return Quantity(text, number * factor, dimension)


def _annotated(dim: Dimension):
    return Annotated[Quantity, BeforeValidator(lambda v: parse_quantity(v, dim)),
                     PlainSerializer(lambda q: q.text, return_type=str)]


Length = _annotated(Dimension.LENGTH)
Angle = _annotated(Dimension.ANGLE)
Time = _annotated(Dimension.TIME)
Fraction = _annotated(Dimension.FRACTION)
