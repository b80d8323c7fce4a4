"""The report harness: tolerances judge correctly, failures turn red, pages are well formed."""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest

from refsuite.report import Comparison, RunContext, Section, Tolerance, render_report
from validation import run_study


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows_pass = 0
        self.rows_fail = 0
        self.images = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and attrs.get("class") == "pass":
            self.rows_pass += 1
        if tag == "tr" and attrs.get("class") == "fail":
            self.rows_fail += 1
        if tag == "img" and attrs.get("src", "").startswith("data:image/png;base64,"):
            self.images += 1


@pytest.mark.parametrize(
    "comparison, limit, measured, reference, expected",
    [
        (Comparison.ABS_DIFF, 0.1, 1.05, 1.0, True),
        (Comparison.ABS_DIFF, 0.1, 1.2, 1.0, False),
        (Comparison.REL_DIFF, 0.01, 101.0, 100.0, True),
        (Comparison.REL_DIFF, 0.01, 102.0, 100.0, False),
        (Comparison.AT_MOST, 4.0, 3.9, None, True),
        (Comparison.AT_MOST, 4.0, 4.1, None, False),
        (Comparison.AT_LEAST, 0.001, 0.2, None, True),
        (Comparison.AT_LEAST, 0.001, 1e-5, None, False),
        (Comparison.AT_MOST, 4.0, math.nan, None, False),
        (Comparison.ABS_DIFF, 0.1, 1.0, None, False),
    ],
)
def test_tolerance_judges(comparison, limit, measured, reference, expected):
    assert Tolerance(limit, comparison).passes(measured, reference) is expected


def test_tolerance_rejects_bad_limits():
    with pytest.raises(ValueError, match="limit"):
        Tolerance(-1.0, Comparison.ABS_DIFF)
    with pytest.raises(ValueError, match="limit"):
        Tolerance(math.inf, Comparison.AT_MOST)


def test_check_needs_a_declared_tolerance():
    s = Section(study="x", title="x")
    with pytest.raises(KeyError, match="no declared tolerance"):
        s.check("undeclared", 1.0)
    s.declare("a", Tolerance(1.0, Comparison.AT_MOST, false_alarm="test"))
    with pytest.raises(ValueError, match="declared twice"):
        s.declare("a", Tolerance(1.0, Comparison.AT_MOST, false_alarm="test"))


def test_a_shown_value_is_recorded_with_its_criterion_but_does_not_decide_the_section():
    s = Section(study="x", title="x")
    s.declare("judged", Tolerance(1.0, Comparison.AT_MOST, false_alarm="test"))
    s.declare("shown", Tolerance(1.0, Comparison.AT_MOST), judged=False, judged_in="full plan", note="noise here")
    s.check("judged", 0.5)
    shown = s.check("shown", 2.0)
    assert s.passed and not shown.met and not shown.failed and shown.passed
    assert [c.name for c in s.shown_checks] == ["shown"] and [c.name for c in s.judged_checks] == ["judged"]
    d = shown.as_dict()
    assert (d["judged"], d["met"], d["judged_in"], d["note"]) == (False, False, "full plan", "noise here")
    assert s.checks[0].as_dict()["judged"] is True
    s.check("judged", 1.5)  # a failed judged check still turns the section red
    assert not s.passed and s.checks[-1].failed


def test_a_section_with_only_shown_values_is_not_green():
    s = Section(study="x", title="x")
    s.declare("shown", Tolerance(1.0, Comparison.AT_MOST), judged=False, note="why")
    s.check("shown", 0.5)
    assert not s.passed


def test_a_shown_value_needs_a_reason():
    s = Section(study="x", title="x")
    with pytest.raises(ValueError, match="without a note"):
        s.declare("a", Tolerance(1.0, Comparison.AT_MOST), judged=False)
    with pytest.raises(ValueError, match="judged=False"):
        s.declare("b", Tolerance(1.0, Comparison.AT_MOST, false_alarm="test"), judged_in="full plan")
    with pytest.raises(TypeError, match="Tolerance"):
        s.declare("c", 1.0)


def test_a_judged_check_states_its_false_alarm_rate():
    s = Section(study="x", title="x")
    with pytest.raises(ValueError, match="false-alarm rate"):
        s.declare("a", Tolerance(1.0, Comparison.AT_MOST, justification="why"))
    s.declare("a", Tolerance(1.0, Comparison.AT_MOST, false_alarm="1e-3 (Sidak bound)"))
    s.declare("b", Tolerance(1.0, Comparison.AT_MOST), judged=False, judged_in="full plan", note="noise here")
    assert s.check("a", 0.5).as_dict()["tolerance"]["false_alarm"] == "1e-3 (Sidak bound)"


def _fake_study(run):
    return SimpleNamespace(NAME="fake", TITLE="Fake study", run=run)


def test_raising_study_becomes_a_red_check():
    def run(ctx):
        raise RuntimeError("boom")

    section = run_study(_fake_study(run), RunContext())
    assert not section.passed
    assert section.checks[0].name == "study completed"
    assert "boom" in section.notes[0]


def test_undecided_check_turns_study_red():
    def run(ctx):
        s = Section(study="fake", title="Fake")
        s.declare("measured", Tolerance(1.0, Comparison.AT_MOST, false_alarm="test"))
        s.declare("forgotten", Tolerance(1.0, Comparison.AT_MOST, false_alarm="test"))
        s.check("measured", 0.5)
        return s

    section = run_study(_fake_study(run), RunContext())
    assert not section.passed
    assert "forgotten" in section.checks[-1].detail


def test_render_writes_pages_and_json(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from refsuite.report import Table, figure_from_matplotlib

    s = Section(study="demo", title="Demo")
    s.declare("good", Tolerance(0.1, Comparison.ABS_DIFF, unit="mm", justification="test", false_alarm="test"))
    s.declare("bad", Tolerance(0.1, Comparison.ABS_DIFF, unit="mm", justification="test", false_alarm="test"))
    s.check("good", 1.0, 1.05)
    s.check("bad", 1.0, 2.0)
    s.tables.append(Table("t", ["a", "b"], [[1, 2.5]]))
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    s.figures.append(figure_from_matplotlib(fig, "line"))
    results = render_report([s], tmp_path, RunContext(), 0.1)
    assert results["passed"] is False and results["n_checks"] == 2 and results["n_passed"] == 1
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["checks"][1]["name"] == "bad" and on_disk["checks"][1]["passed"] is False
    for page in ("index.html", "demo.html"):
        parser = _Collect()
        parser.feed((tmp_path / page).read_text())
        assert (parser.rows_pass, parser.rows_fail) == (1, 1)
    parser = _Collect()
    parser.feed((tmp_path / "demo.html").read_text())
    assert parser.images == 1
    assert not list(tmp_path.glob(".*.tmp*")), "temporary files left behind"
