"""Seed-sweep records: condensing sweeps, the false-alarm statements, and the committed record."""

from __future__ import annotations

import json

import pytest

from refsuite.report import Comparison, Section, Tolerance
from validation._seed_records import MARGIN, RECORDS, apply_seed_records, condense, false_alarm


def _sweep(root, values, *, comparison="at_most", limit=1.0, reference=None, mode="quick"):
    for seed, x in values.items():
        d = root / f"seed-{seed}"
        d.mkdir(parents=True)
        met = Tolerance(limit, Comparison(comparison)).passes(x, reference)
        check = {"study": "s", "name": "c", "measured": x, "reference": reference, "judged": True, "met": met,
                 "tolerance": {"limit": limit, "comparison": comparison}}
        (d / "results.json").write_text(json.dumps({"studies": {"s": {"mode": mode}}, "checks": [check]}))


def test_condense_and_the_normal_tail(tmp_path):
    _sweep(tmp_path, {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.2})
    rec = condense([tmp_path])
    row = rec["s"]["checks"]["c"]
    assert (rec["s"]["seeds"], row["n"], row["met"]) == ([1, 2, 3, 4], 4, 4)
    path = tmp_path / "rec.json"
    path.write_text(json.dumps(rec))
    text = false_alarm("s", "c", mode="quick", path=path)
    # mean 0.2, SD 0.0816: the bound 1.0 lies 9.8 SD away
    assert "met in 4 of 4 seeds (quick plan, seeds 1-4)" in text and "bound 9.8 SD" in text
    assert "< 0.53 at 95 % confidence" in text
    assert false_alarm("s", "c", mode="full", path=path) == "a margin; not measured over seeds in the full plan"
    assert false_alarm("s", "c", mode="quick", analytic="1e-3 (Sidak)", path=path).startswith("1e-3 (Sidak); met in 4")


def test_a_failing_seed_is_named(tmp_path):
    _sweep(tmp_path, {1: 0.5, 2: 3.0, 3: 0.4}, comparison="abs_diff", limit=1.0, reference=0.0)
    path = tmp_path / "rec.json"
    path.write_text(json.dumps(condense([tmp_path])))
    assert "met in 2 of 3 seeds" in false_alarm("s", "c", mode="quick", path=path)
    assert "not met for seed(s) 2" in false_alarm("s", "c", mode="quick", path=path)


def test_at_least_bounds_use_the_distance_below(tmp_path):
    _sweep(tmp_path, {1: 2.0, 2: 2.2, 3: 1.8}, comparison="at_least", limit=1.0)
    path = tmp_path / "rec.json"
    path.write_text(json.dumps(condense([tmp_path])))
    assert "bound 5.0 SD" in false_alarm("s", "c", mode="quick", path=path)


def test_apply_fills_margins_and_keeps_analytic_rates(tmp_path):
    _sweep(tmp_path, {1: 0.1, 2: 0.2, 3: 0.3})
    path = tmp_path / "rec.json"
    path.write_text(json.dumps(condense([tmp_path])))
    sec = Section(study="s", title="s")
    sec.declare("c", Tolerance(1.0, Comparison.AT_MOST, false_alarm=MARGIN))
    sec.declare("d", Tolerance(1.0, Comparison.AT_MOST, false_alarm="0: deterministic"))
    sec.check("c", 0.2)
    sec.check("d", 0.0)
    out = {c.name: c.tolerance.false_alarm for c in apply_seed_records(sec, "quick", path=path).checks}
    assert out["c"].startswith("met in 3 of 3 seeds") and out["d"] == "0: deterministic"


def test_mixed_modes_are_refused(tmp_path):
    _sweep(tmp_path / "a", {1: 0.1})
    _sweep(tmp_path / "b", {2: 0.1}, mode="full")
    with pytest.raises(ValueError, match="mode"):
        condense([tmp_path / "a", tmp_path / "b"])


@pytest.mark.skipif(not RECORDS.is_file(), reason="no seed sweep recorded yet")
def test_the_recorded_quick_checks_pass_on_every_seed():
    """The quick plan's rule: every judged check was met on every seed of its recorded sweep."""
    recs = json.loads(RECORDS.read_text())
    failing = [(study, name, row["failed_seeds"]) for study, rec in recs.items()
               for name, row in rec["checks"].items() if row["judged"] and row["met"] < row["n"]]
    assert not failing, f"judged quick checks not met on every seed: {failing}"
    assert all(len(rec["seeds"]) >= 10 for rec in recs.values()), {k: v["seeds"] for k, v in recs.items()}
