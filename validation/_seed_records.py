"""Measured false-alarm records of the quick checks, condensed from seed sweeps.

A check judged in quick mode must pass on a correct implementation for (at least) 10 seeds of
10, and its page must say how often a correct implementation fails it. Where the rate is
analytic (a Sidak bound, a chi-square p-value) the study states it; where the bound is a margin
(an alignment error, an image-quality ratio) the rate is measured:

1. ``refsuite report --quick --seeds 1-10 --only STUDY --out DIR`` runs the study once per seed
   (``DIR/seed-N/results.json``);
2. ``python -m validation._seed_records DIR [DIR ...]`` condenses those into
   ``validation/seed_records.json`` (committed; never edited by hand);
3. each study's ``Tolerance(false_alarm=false_alarm(...))`` reads it, so the page states, per
   check, in how many seeds its criterion was met and where its bound lies in the spread of the
   measured values: ``z = (bound - mean) / SD`` of the seeds' distances to the bound, and the
   one-sided normal tail ``P(Z > z)`` as the estimated false-alarm rate. With n seeds and no
   failure the exact binomial statement is weaker: rate < 1 - 0.05^(1/n) at 95 % confidence
   (0.26 for n = 10), which the text also gives.

Records apply to the plan they were measured in (quick); other plans state their own.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Iterable

RECORDS = Path(__file__).with_name("seed_records.json")

__all__ = ["MARGIN", "QUICK_WALL_TIME_NOTE", "RECORDS", "apply_seed_records", "declare_run_time", "condense", "false_alarm", "measured_text", "write_records"]

#: ``Tolerance(false_alarm=MARGIN)``: the bound is a margin with no analytic rate; the rate is
#: the seed-sweep record, filled in by :func:`apply_seed_records` when the study has run
MARGIN = "a margin (no analytic rate): measured over seeds"

#: note of a quick study's wall-time budget, shown rather than judged: the wall time of a report
#: run next to other work grows with the machine's load (the acceptance study took 941 s in a
#: report run beside three seed sweeps, against a 900 s budget), so judging it would fail a
#: correct implementation on a busy machine; the speed itself is judged by the benchmarks
#: (CPU time or ratios measured in the same run) and the full plans judge their wall-time budget
QUICK_WALL_TIME_NOTE = ("wall time grows with the machine's load (a report run next to other jobs exceeded the "
                        "quick budget with a correct implementation), so quick mode shows it; the benchmarks judge "
                        "speed (CPU time, ratios in one run) and the full plan its wall-time budget")


def declare_run_time(section, tolerance, *, quick: bool) -> None:
    """Declare a study's "run time" (wall-time budget): judged in full plans, shown in quick mode
    (:data:`QUICK_WALL_TIME_NOTE`)."""
    if quick:
        section.declare("run time", tolerance, judged=False, judged_in="the full plan (on a machine of its own)",
                        note=QUICK_WALL_TIME_NOTE)
    else:
        section.declare("run time", tolerance)


def _distance(check: dict) -> tuple[float, float] | None:
    """(value, upper bound) of a check's criterion written as ``value <= bound``; None if unusable."""
    x, ref, tol = check["measured"], check["reference"], check["tolerance"]
    if not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    limit, comp = float(tol["limit"]), tol["comparison"]
    if comp == "at_most":
        return float(x), limit
    if comp == "at_least":
        return -float(x), -limit
    if not isinstance(ref, (int, float)) or not math.isfinite(ref):
        return None
    if comp == "abs_diff":
        return abs(x - ref), limit
    return abs(x - ref) / abs(ref) if ref else math.inf, limit  # rel_diff


def condense(dirs: Iterable[str | Path]) -> dict:
    """Read ``DIR/seed-N/results.json`` of seed sweeps into ``{study: {...}}`` records."""
    studies: dict[str, dict] = {}
    for d in map(Path, dirs):
        for res_path in sorted(d.glob("seed-*/results.json")):
            seed = int(res_path.parent.name.split("-", 1)[1])
            res = json.loads(res_path.read_text())
            for study, st in res["studies"].items():
                rec = studies.setdefault(study, {"mode": st.get("mode"), "seeds": [], "checks": {}})
                if st.get("mode") != rec["mode"]:
                    raise ValueError(f"{res_path}: study {study!r} in mode {st.get('mode')!r}, others in {rec['mode']!r}")
                if seed not in rec["seeds"]:
                    rec["seeds"].append(seed)
                for c in res["checks"]:
                    if c["study"] != study:
                        continue
                    row = rec["checks"].setdefault(c["name"], {"judged": c["judged"], "n": 0, "met": 0,
                                                               "failed_seeds": [], "values": {}, "bound": None})
                    row["n"] += 1
                    row["met"] += bool(c["met"])
                    if not c["met"]:
                        row["failed_seeds"].append(seed)
                    row["values"][str(seed)] = c["measured"]
                    dist = _distance(c)
                    if dist is not None:
                        row.setdefault("distances", {})[str(seed)] = dist[0]
                        row["bound"] = dist[1]
    for rec in studies.values():
        rec["seeds"].sort()
    return studies


def write_records(dirs: Iterable[str | Path], path: Path = RECORDS) -> dict:
    """Condense the sweeps in ``dirs`` and merge them into ``path`` (a study's record is replaced)."""
    from refsuite.io import atomic_write_text

    new = condense(dirs)
    old = json.loads(path.read_text()) if path.is_file() else {}
    old.update(new)
    atomic_write_text(path, json.dumps(old, indent=1, sort_keys=True) + "\n")
    return old


def _seeds_text(seeds: list[int]) -> str:
    if seeds and seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2:
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def measured_text(row: dict, seeds: list[int], mode: str) -> str:
    """One line: in how many seeds the criterion was met and the normal-tail rate of the bound."""
    from scipy import stats

    n, met = row["n"], row["met"]
    text = f"met in {met} of {n} seeds ({mode} plan, seeds {_seeds_text(seeds)})"
    if met < n:
        return text + f"; not met for seed(s) {', '.join(map(str, row['failed_seeds']))}"
    dist = [v for v in row.get("distances", {}).values() if math.isfinite(v)]
    bound = row.get("bound")
    if len(dist) >= 3 and bound is not None:
        mean = sum(dist) / len(dist)
        sd = math.sqrt(sum((v - mean) ** 2 for v in dist) / (len(dist) - 1))
        if sd <= 1e-12 * max(1.0, abs(mean)):
            text += "; the same value on every seed"
        else:
            z = (bound - mean) / sd
            text += f"; bound {z:.1f} SD from the seeds' mean: ~{stats.norm.sf(z):.0e} (normal approximation)"
    return text + f"; < {1 - 0.05 ** (1 / n):.2f} at 95 % confidence (binomial)"


def false_alarm(study: str, check: str, *, mode: str, analytic: str = "", path: Path = RECORDS) -> str:
    """The false-alarm statement of ``check``: ``analytic`` (if any) and its seed-sweep record.

    Parameters
    ----------
    study, check : str
        The study and check names as on the report.
    mode : str
        The run's mode (``"quick"`` or ``"full"``); a record measured in another mode is not used.
    analytic : str
        The analytic rate and its basis, e.g. ``"1e-3 (Sidak bound)"``; "" for a margin.
    """
    rec = json.loads(path.read_text()).get(study) if path.is_file() else None
    return _statement(rec, check, mode, analytic)


def _statement(rec: dict | None, check: str, mode: str, analytic: str) -> str:
    row = rec["checks"].get(check) if rec and rec.get("mode") == mode else None
    if row is None:
        return analytic or f"a margin; not measured over seeds in the {mode} plan"
    measured = measured_text(row, rec["seeds"], mode)
    return f"{analytic}; {measured}" if analytic else measured


def apply_seed_records(section, mode: str, path: Path = RECORDS):
    """``section`` with each judged check's false-alarm statement completed from the records.

    ``MARGIN`` becomes the measured statement (or "not measured" when the sweep has not been
    run for this plan); an analytic statement gets the measured record appended.
    """
    from dataclasses import replace

    rec = json.loads(path.read_text()).get(section.study) if path.is_file() else None
    checks = []
    for c in section.checks:
        if c.judged:
            given = c.tolerance.false_alarm
            text = _statement(rec, c.name, mode, "" if given == MARGIN else given)
            c = replace(c, tolerance=replace(c.tolerance, false_alarm=text))
        checks.append(c)
    section.checks = checks
    return section


if __name__ == "__main__":
    if len(sys.argv) < 2 or any(a.startswith("-") for a in sys.argv[1:]):
        print("usage: python -m validation._seed_records SWEEP_DIR [SWEEP_DIR ...]  (output of refsuite report "
              "--seeds; merged into validation/seed_records.json)", file=sys.stderr)
        raise SystemExit(2)
    missing = [d for d in sys.argv[1:] if not list(Path(d).glob("seed-*/results.json"))]
    if missing:
        print(f"no seed-N/results.json under {', '.join(missing)}", file=sys.stderr)
        raise SystemExit(2)
    recs = write_records(sys.argv[1:])
    counts = ", ".join(f"{k} ({len(v['seeds'])} seeds)" for k, v in sorted(recs.items()))
    print(f"{RECORDS}: {counts}")
