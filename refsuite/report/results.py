"""The machine-readable report: ``results.json`` built, merged, loaded and written as strict JSON.

``results.json`` holds every check (measured, reference, unit, tolerance, status), every
study's tables and, per study, the run it came from (mode, seed, device, time, run time), so a
report that merges studies from several runs (``refsuite report --only``) stays truthful.

A check has one of three statuses: ``"pass"`` and ``"fail"`` (judged against its tolerance)
and ``"shown"``: a value shown for information and judged only in another plan
(``judged_in``, e.g. the medium plan) because this run is too small to judge it. Only judged
checks count towards the totals and the verdict.

The file is strict JSON (RFC 8259): a non-finite number is written as ``null`` next to a
``<key>_reason`` entry that says what it was (e.g. ``"measured_reason": "not a finite number:
nan"``); table cells that were not finite are ``null`` and the table says so in ``null_reason``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from pathlib import Path
from typing import Any, Collection, Sequence

from .model import Check, RunContext, Section

__all__ = ["check_dict", "results_dict", "merge_results", "load_results", "dumps_results", "anchor", "verdict_text",
           "seed_summary"]

def anchor(name: str) -> str:
    """An HTML id for a check name: lower case, runs of other characters as ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "check"


def _finite_or_reason(value: Any) -> tuple[float | None, str | None]:
    """``(value, None)`` for a finite number or None; ``(None, reason)`` otherwise."""
    if value is None:
        return None, None
    if isinstance(value, str):  # older files: non-finite values were written as text
        try:
            value = float(value)
        except ValueError:
            return None, f"not a number: {value!r}"
    value = float(value)
    if math.isfinite(value):
        return value, None
    return None, f"not a finite number: {value!r}"


def _status(judged: bool, passed: bool) -> str:
    return "shown" if not judged else "pass" if passed else "fail"


def verdict_text(check: dict[str, Any]) -> str:
    """How a check's status reads on a page: ``pass``, ``FAIL`` or ``shown, judged in <plan>``."""
    if not check["judged"]:
        return f"shown, judged in {check['judged_in']}" if check["judged_in"] else "shown, not judged"
    return "pass" if check["passed"] else "FAIL"


def _normalise_check(d: dict[str, Any]) -> dict[str, Any]:
    """A check entry with every key of the current format (older files lack some)."""
    d = dict(d)
    for key in ("measured", "reference"):
        value, reason = _finite_or_reason(d.get(key))
        d[key] = value
        if reason and not d.get(f"{key}_reason"):
            d[f"{key}_reason"] = reason
    d.setdefault("unit", d.get("tolerance", {}).get("unit", ""))
    d["judged"] = bool(d.get("judged", True))
    d["judged_in"] = d.get("judged_in") or ""
    d["met"] = bool(d.get("met", d.get("passed", False)))
    d["passed"] = d["met"] or not d["judged"]
    d["status"] = _status(d["judged"], d["met"])
    d.setdefault("detail", "")
    d["note"] = d.get("note") or ""
    return d


def check_dict(check: Check) -> dict[str, Any]:
    """One check as a JSON-ready dict.

    ``met``: the criterion holds; ``judged``/``judged_in``/``note``: whether the check decides
    the report, where it is judged otherwise and why not here (a check without these attributes
    is a judged one); ``passed``: met or not judged (it does not fail the report); ``status``:
    ``"pass"``, ``"fail"`` or ``"shown"``.
    """
    d = check.as_dict()
    d["measured"], d["reference"] = check.measured, check.reference
    d["unit"] = check.tolerance.unit
    d["judged"] = bool(getattr(check, "judged", True))
    d["judged_in"] = getattr(check, "judged_in", "") or ""
    d["met"] = bool(getattr(check, "met", check.passed))
    d["note"] = getattr(check, "note", "") or ""
    return _normalise_check(d)


def _sanitise(obj: Any) -> tuple[Any, bool]:
    """``obj`` with non-finite floats replaced by None, and whether any was replaced."""
    if isinstance(obj, float) or (hasattr(obj, "dtype") and getattr(obj, "shape", None) == ()):
        if hasattr(obj, "item"):
            obj = obj.item()
        if isinstance(obj, float) and not math.isfinite(obj):
            return None, True
        return obj, False
    if isinstance(obj, dict):
        items = {k: _sanitise(v) for k, v in obj.items()}
        return {k: v for k, (v, _) in items.items()}, any(r for _, r in items.values())
    if isinstance(obj, (list, tuple)) or (hasattr(obj, "tolist") and hasattr(obj, "shape")):
        seq = obj.tolist() if hasattr(obj, "tolist") else obj
        items = [_sanitise(v) for v in seq] if isinstance(seq, list) else [_sanitise(seq)]
        return [v for v, _ in items], any(r for _, r in items)
    return obj, False


def _table_dict(table) -> dict[str, Any]:
    rows, replaced = _sanitise(table.rows)
    d = {"title": table.title, "columns": list(table.columns), "rows": rows}
    if replaced:
        d["null_reason"] = "cells that were NaN or infinite are written as null"
    return d


def _totals(checks: Sequence[dict[str, Any]]) -> dict[str, Any]:
    judged = [c for c in checks if c["judged"]]
    n_passed = sum(c["met"] for c in judged)
    return {
        "passed": bool(judged) and n_passed == len(judged),
        "n_checks": len(judged),
        "n_passed": n_passed,
        "n_failed": len(judged) - n_passed,
        "n_shown": len(checks) - len(judged),
    }


def results_dict(sections: Sequence[Section], ctx: RunContext, runtime_s: float) -> dict[str, Any]:
    """The machine-readable summary written to ``results.json``.

    ``n_checks``/``n_passed``/``n_failed`` count judged checks only; ``n_shown`` counts the
    checks shown for information (judged in another plan). ``passed`` is True when at least one
    check was judged and every judged check passed.
    """
    from .. import __version__

    generated = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    run = {"mode": ctx.mode.value, "seed": ctx.seed, "device": ctx.device, "generated": generated}
    checks = [check_dict(c) for s in sections for c in s.checks]
    studies = {}
    for s in sections:
        own = [c for c in checks if c["study"] == s.study]
        studies[s.study] = {
            "title": s.title,
            **_totals(own),
            "runtime_s": s.runtime_s,
            **run,
            "page": f"{s.study}.html",
            "tables": [_table_dict(t) for t in s.tables],
        }
    return {
        "refsuite_version": __version__,
        **run,
        "runtime_s": runtime_s,
        **_totals(checks),
        "mixed_runs": False,
        "studies": studies,
        "checks": checks,
    }


def merge_results(previous: dict[str, Any], current: dict[str, Any], *, keep: Collection[str]) -> dict[str, Any]:
    """``current`` plus the studies of ``previous`` that it did not run and that are in ``keep``.

    Each kept study keeps its own run (mode, seed, device, time); ``mixed_runs`` says whether
    the merged studies come from runs that differ in mode, seed or device. The top-level run
    entries are those of ``current``; totals are recounted over the merged checks.
    """
    merged_studies: dict[str, Any] = {}
    for name, entry in previous.get("studies", {}).items():
        if name in keep and name not in current["studies"]:
            entry = dict(entry)
            for key in ("mode", "seed", "device", "generated"):
                entry.setdefault(key, previous.get(key))
            entry.setdefault("page", f"{name}.html")
            merged_studies[name] = entry
    merged_studies.update(current["studies"])
    order = sorted(merged_studies)
    old_checks = [_normalise_check(c) for c in previous.get("checks", []) if c.get("study") in merged_studies
                  and c.get("study") not in current["studies"]]
    checks = sorted(old_checks + list(current["checks"]), key=lambda c: order.index(c["study"]))
    for name in order:
        entry = merged_studies[name]
        entry.update(_totals([c for c in checks if c["study"] == name]))
    runs = {(e.get("mode"), e.get("seed"), e.get("device")) for e in merged_studies.values()}
    out = dict(current)
    out.update(_totals(checks))
    out["mixed_runs"] = len(runs) > 1
    out["studies"] = {name: merged_studies[name] for name in order}
    out["checks"] = checks
    return out


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a report's ``results.json``; ValueError naming the file when it is not one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        data = json.loads(text, parse_constant=lambda c: float(c))
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    if not (isinstance(data, dict) and isinstance(data.get("studies"), dict) and isinstance(data.get("checks"), list)):
        raise ValueError(f"{path}: not the results.json of a refsuite report (expected an object with "
                         f"'studies' and 'checks')")
    if not all(isinstance(c, dict) and isinstance(c.get("study"), str) for c in data["checks"]):
        raise ValueError(f"{path}: not the results.json of a refsuite report (a check without its study)")
    return data


def dumps_results(results: dict[str, Any]) -> str:
    """``results`` as strict JSON text: non-finite numbers become null (never a bare NaN)."""
    clean, _ = _sanitise(results)
    return json.dumps(clean, indent=2, allow_nan=False)


def seed_summary(per_seed: dict[int, dict], *, studies: Sequence[str]) -> dict:
    """Per check of ``studies``: seeds where it was measured, where its criterion was met, measured range."""
    rows: dict[tuple[str, str], dict] = {}
    for sd, results in per_seed.items():
        for c in results["checks"]:
            if c["study"] not in studies:
                continue
            row = rows.setdefault((c["study"], c["name"]), {
                "study": c["study"], "name": c["name"], "judged": c["judged"], "unit": c["unit"],
                "tolerance": c["tolerance"]["text"], "n": 0, "met": 0, "failed_seeds": [], "measured": {}})
            row["n"] += 1
            row["met"] += bool(c["met"])
            row["judged"] = row["judged"] or c["judged"]
            if not c["met"]:
                row["failed_seeds"].append(sd)
            row["measured"][str(sd)] = c["measured"]
    return {"seeds": list(per_seed), "studies": list(studies), "checks": list(rows.values())}
