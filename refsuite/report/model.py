"""Data model of a validation report: tolerances, checks, tables, figures, sections.

A study declares every tolerance *before* it measures anything (a :class:`Tolerance` is a
frozen value with its justification), then records measured values against it with
:meth:`Section.check`. The comparison is done here, once, so that no study can write its
own pass/fail logic that cannot fail.

A value can be declared *shown, not judged* (``declare(..., judged=False, judged_in=...)``):
it is measured and compared with its criterion like any check, and the outcome is recorded
(:attr:`Check.met`), but it does not decide the report. This is for a claim the plan's size
cannot show (it is judged in a larger plan, named in ``judged_in``), a design property that
holds by construction, or a calibration of the simulator against its own tuning target.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Comparison", "Tolerance", "Check", "Table", "Figure", "Section", "RunContext", "Mode"]


class Comparison(enum.Enum):
    """How a measured value is compared with its tolerance.

    ABS_DIFF
        passes when ``|measured - reference| <= limit``.
    REL_DIFF
        passes when ``|measured - reference| <= limit * |reference|``.
    AT_MOST
        passes when ``measured <= limit`` (e.g. a maximum |z-score|, an error norm).
    AT_LEAST
        passes when ``measured >= limit`` (e.g. a chi-square p-value, a speed).
    """

    ABS_DIFF = "abs_diff"
    REL_DIFF = "rel_diff"
    AT_MOST = "at_most"
    AT_LEAST = "at_least"

    @property
    def symbol(self) -> str:
        return {
            Comparison.ABS_DIFF: "|x - ref| <=",
            Comparison.REL_DIFF: "|x - ref| / |ref| <=",
            Comparison.AT_MOST: "x <=",
            Comparison.AT_LEAST: "x >=",
        }[self]


@dataclass(frozen=True)
class Tolerance:
    """A pass criterion, stated before the measurement it judges.

    Parameters
    ----------
    limit : float
        The bound (in ``unit``; relative bounds are fractions).
    comparison : Comparison
        How ``measured`` (and ``reference``) are compared with ``limit``.
    unit : str
        Unit of the measured value (for display), e.g. ``"mm"``, ``"ps"``, ``""``.
    justification : str
        Why this bound: a false-alarm rate, the paper's figure, a numerical accuracy target.
    false_alarm : str
        How often a *correct* implementation fails this criterion, and how that is known: an
        analytic rate (``"1e-3 (Sidak bound over 64 z-scores)"``), a measured one (``"0 of 10
        seeds (seed sweep 1-10)"``), ``"0: deterministic ..."`` for values that do not depend on
        the seed, or what else it depends on (machine load for a run-time budget). Required for
        every judged check (:meth:`Section.declare`); shown on the study's page.
    """

    limit: float
    comparison: Comparison
    unit: str = ""
    justification: str = ""
    false_alarm: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.comparison, Comparison):
            raise TypeError(f"comparison must be a Comparison, got {self.comparison!r}")
        if not math.isfinite(self.limit):
            raise ValueError(f"limit must be finite, got {self.limit!r}")
        if self.comparison in (Comparison.ABS_DIFF, Comparison.REL_DIFF) and self.limit < 0:
            raise ValueError(f"limit must be >= 0 for {self.comparison.value}, got {self.limit!r}")

    def passes(self, measured: float, reference: float | None) -> bool:
        """Apply the criterion; NaN or a missing reference where one is needed fails."""
        if measured is None or not math.isfinite(measured):
            return False
        if self.comparison is Comparison.AT_MOST:
            return measured <= self.limit
        if self.comparison is Comparison.AT_LEAST:
            return measured >= self.limit
        if reference is None or not math.isfinite(reference):
            return False
        diff = abs(measured - reference)
        if self.comparison is Comparison.ABS_DIFF:
            return diff <= self.limit
        return diff <= self.limit * abs(reference)

    def describe(self) -> str:
        unit = "" if self.comparison is Comparison.REL_DIFF or not self.unit else f" {self.unit}"
        return f"{self.comparison.symbol} {self.limit:.4g}{unit}"


@dataclass(frozen=True)
class Check:
    """One measurement: what was measured, against what, with which tolerance.

    Attributes
    ----------
    met : bool
        The tolerance's criterion holds for ``measured`` (recorded for judged and shown values).
    judged : bool
        True: the check decides the report. False: the value is shown with its criterion only.
    judged_in : str
        For a shown value: the plan(s) where the same check is judged (e.g. ``"medium and full
        plans"``); empty when it is never judged (a design property, a simulator calibration).
    note : str
        For a shown value: why it is not judged in this plan.
    """

    study: str
    name: str
    measured: float
    reference: float | None
    tolerance: Tolerance
    met: bool
    detail: str = ""
    judged: bool = True
    judged_in: str = ""
    note: str = ""

    @property
    def passed(self) -> bool:
        """The check does not fail the report: its criterion is met, or it is shown only."""
        return self.met or not self.judged

    @property
    def failed(self) -> bool:
        """A judged check whose criterion is not met."""
        return self.judged and not self.met

    def as_dict(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "name": self.name,
            "measured": _json_float(self.measured),
            "reference": _json_float(self.reference),
            "tolerance": {
                "limit": self.tolerance.limit,
                "comparison": self.tolerance.comparison.value,
                "unit": self.tolerance.unit,
                "justification": self.tolerance.justification,
                "false_alarm": self.tolerance.false_alarm,
                "text": self.tolerance.describe(),
            },
            "passed": self.passed,
            "met": self.met,
            "judged": self.judged,
            "judged_in": self.judged_in,
            "note": self.note,
            "detail": self.detail,
        }


@dataclass
class Table:
    """A table for a study page: ``columns`` names and ``rows`` of cells (numbers or text)."""

    title: str
    columns: list[str]
    rows: list[list[Any]]
    caption: str = ""


@dataclass
class Figure:
    """A figure embedded in the study page: PNG bytes and a caption."""

    title: str
    png: bytes
    caption: str = ""


class Mode(enum.Enum):
    """Run size of the studies: QUICK is a smaller run of the same code as FULL."""

    QUICK = "quick"
    FULL = "full"


@dataclass(frozen=True)
class RunContext:
    """What a study is given: run size, seed, torch device, a scratch directory and a thread budget.

    ``work_dir``: where a study keeps what it may reuse (finished stages, checkpoints), so a
    long run resumes; None = a throw-away run. ``threads``: torch threads a study may use (1 by
    default: CI shares 2 cores between the test workers).
    """

    mode: Mode = Mode.QUICK
    seed: int = 12345
    device: str = "cpu"
    work_dir: str | None = None
    threads: int = 1

    @property
    def quick(self) -> bool:
        return self.mode is Mode.QUICK

    def rng(self, stream: int = 0) -> np.random.Generator:
        """An independent, reproducible random stream for this run (numpy Generator)."""
        return np.random.default_rng([self.seed, stream])


@dataclass
class Section:
    """The result of one study: its checks, tables and figures.

    Tolerances are registered with :meth:`declare` before any measurement; :meth:`check`
    then refuses a name that was not declared, so every check's bound is fixed up front.
    Values declared with ``judged=False`` are recorded the same way but do not decide
    :attr:`passed` (see the module docstring).
    """

    study: str
    title: str
    summary: str = ""
    checks: list[Check] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    runtime_s: float = 0.0
    _tolerances: dict[str, Tolerance] = field(default_factory=dict, repr=False)
    _shown: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)

    def declare(self, name: str, tolerance: Tolerance, *, judged: bool = True, judged_in: str = "",
                note: str = "") -> None:
        """State the tolerance of check ``name`` before measuring it.

        Parameters
        ----------
        name : str
            The check's name (unique in the study).
        tolerance : Tolerance
            Its criterion.
        judged : bool
            False: the value is shown with its criterion but does not decide the report.
        judged_in : str
            Shown values: the plan(s) where the check is judged; "" if never.
        note : str
            Shown values: why the value is not judged here. Required when ``judged`` is False.
        """
        if name in self._tolerances:
            raise ValueError(f"tolerance for check {name!r} declared twice in study {self.study!r}")
        if not isinstance(tolerance, Tolerance):
            raise TypeError(f"tolerance of check {name!r} must be a Tolerance, got {type(tolerance).__name__}")
        if not judged and not note.strip():
            raise ValueError(f"check {name!r} in study {self.study!r} is declared judged=False without a note "
                             "saying why it is not judged")
        if judged and not tolerance.false_alarm.strip():
            raise ValueError(f"judged check {name!r} in study {self.study!r} states no false-alarm rate "
                             "(Tolerance(false_alarm=...): analytic, measured over seeds, or deterministic)")
        if judged and (judged_in or note):
            raise ValueError(f"check {name!r} in study {self.study!r}: judged_in and note are for shown values "
                             "(judged=False) only")
        self._tolerances[name] = tolerance
        if not judged:
            self._shown[name] = (judged_in, note)

    def check(self, name: str, measured: float, reference: float | None = None, detail: str = "") -> Check:
        """Judge ``measured`` against the tolerance declared for ``name`` and record it."""
        try:
            tol = self._tolerances[name]
        except KeyError:
            raise KeyError(
                f"check {name!r} in study {self.study!r} has no declared tolerance; "
                f"declared: {sorted(self._tolerances)}"
            ) from None
        measured_f = float(measured)
        reference_f = None if reference is None else float(reference)
        judged_in, note = self._shown.get(name, ("", ""))
        result = Check(
            study=self.study,
            name=name,
            measured=measured_f,
            reference=reference_f,
            tolerance=tol,
            met=tol.passes(measured_f, reference_f),
            detail=detail,
            judged=name not in self._shown,
            judged_in=judged_in,
            note=note,
        )
        self.checks.append(result)
        return result

    @property
    def passed(self) -> bool:
        """True when the study judged at least one check and none of its judged checks failed."""
        judged = [c for c in self.checks if c.judged]
        return bool(judged) and all(c.met for c in judged)

    @property
    def judged_checks(self) -> list[Check]:
        """The checks that decide the report."""
        return [c for c in self.checks if c.judged]

    @property
    def shown_checks(self) -> list[Check]:
        """The values shown with their criterion but not judged in this run."""
        return [c for c in self.checks if not c.judged]

    def undecided(self) -> list[str]:
        """Declared tolerances that were never measured (a study that forgot a check)."""
        measured = {c.name for c in self.checks}
        return sorted(set(self._tolerances) - measured)


def _json_float(x: float | None) -> float | str | None:
    if x is None:
        return None
    if math.isfinite(x):
        return x
    return str(x)
