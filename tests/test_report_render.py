"""Report pages and files: failed checks first, shown-only checks, reST rendered, strict JSON,
``--only`` merging, results.md, and the ``report`` command refusing bad flags before any work."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import validation._runner as runner
from refsuite.cli import main
from refsuite.report import Comparison, RunContext, Section, Table, Tolerance, render_report
from refsuite.report.markdown import results_markdown as render_markdown
from refsuite.report.text import rst_inline, rst_to_html

ROOT = Path(__file__).resolve().parents[1]


def _declare_shown(s: Section, name: str, tol: Tolerance) -> bool:
    """Declare ``name`` as shown, judged in the medium plan; False if the model has no such option."""
    try:
        s.declare(name, tol, judged=False, judged_in="the medium plan", note="too few pairs to judge")
        return True
    except TypeError:  # a model without shown values: the check is made shown below
        s.declare(name, tol)
        return False


class _Shown:
    """A recorded check seen as shown (for a report model whose Check has no ``judged``)."""

    judged, judged_in, note = False, "the medium plan", "too few pairs to judge"

    def __init__(self, check):
        self._check = check

    def __getattr__(self, key):
        return getattr(self._check, key)

    def as_dict(self):
        return {**self._check.as_dict(), "judged": False, "judged_in": self.judged_in, "note": self.note}


def _section(study="demo", *, bad=True, shown=False) -> Section:
    s = Section(study=study, title=f"Study {study}",
                summary="Uses :func:`~refsuite.mc.simulate` and :mod:`refsuite.pvc`; ``x <= 1`` is *exact*.")
    s.declare("good", Tolerance(0.1, Comparison.ABS_DIFF, unit="mm", justification="see :class:`Tolerance`", false_alarm="test"))
    s.declare("bad", Tolerance(0.1, Comparison.ABS_DIFF, unit="mm", justification="test", false_alarm="test"))
    s.check("good", 1.0, 1.05)
    s.check("bad", 1.0, 2.0 if bad else 1.0)
    if shown:  # outside its criterion, but shown only: must not fail the report
        tol = Tolerance(0.5, Comparison.AT_MOST, unit="ps", justification="needs the medium plan's size",
                        false_alarm="test")
        native = _declare_shown(s, "network claim", tol)
        check = s.check("network claim", 0.9)
        if not native:
            s.checks[-1] = _Shown(check)
    return s


def _ids(html: str) -> set[str]:
    return set(re.findall(r'id="([^"]+)"', html))


def test_failed_checks_listed_first_and_linked(tmp_path):
    results = render_report([_section()], tmp_path, RunContext(), 0.1)
    index = (tmp_path / "index.html").read_text()
    page = (tmp_path / "demo.html").read_text()
    assert results["n_failed"] == 1
    box = index[index.index('id="failed-checks"'):index.index("<h2>Studies</h2>")]
    assert "demo" in box and "bad" in box and "1 mm" in box and "good" not in box
    links = re.findall(r'href="([^"]+)"', box)
    assert "#demo--bad" in links and "demo.html#bad" in links
    assert "demo--bad" in _ids(index) and "bad" in _ids(page)
    assert index.index('id="failed-checks"') < index.index("<h2>All checks</h2>")


def test_no_failure_box_when_all_pass(tmp_path):
    render_report([_section(bad=False)], tmp_path, RunContext(), 0.1)
    assert 'id="failed-checks"' not in (tmp_path / "index.html").read_text()


def test_shown_check_is_neither_pass_nor_fail(tmp_path):
    results = render_report([_section(bad=False, shown=True)], tmp_path, RunContext(), 0.1)
    assert results["passed"] is True
    assert (results["n_checks"], results["n_passed"], results["n_shown"]) == (2, 2, 1)
    assert results["studies"]["demo"]["passed"] is True
    entry = next(c for c in results["checks"] if c["name"] == "network claim")
    assert entry["status"] == "shown" and entry["judged"] is False and entry["judged_in"] == "the medium plan"
    for page in ("index.html", "demo.html"):
        html = (tmp_path / page).read_text()
        row = re.search(r'<tr class="(\w+)" id="[^"]*network-claim">(.*?)</tr>', html, re.S)
        assert row and row.group(1) == "shown"
        assert "shown, judged in the medium plan" in row.group(2) and "FAIL" not in row.group(2)
        assert "0.9 ps" in row.group(2) and "criterion not met here" in row.group(2)
    assert "too few pairs to judge" in (tmp_path / "demo.html").read_text()
    assert entry["met"] is False and entry["passed"] is True and entry["note"] == "too few pairs to judge"
    md_line = next(line for line in render_markdown(results).splitlines() if line.startswith("| network claim"))
    assert "shown, judged in the medium plan (criterion not met here)" in md_line


def test_units_in_measured_and_reference_cells(tmp_path):
    render_report([_section()], tmp_path, RunContext(), 0.1)
    html = (tmp_path / "demo.html").read_text()
    row = re.search(r'<tr class="fail" id="bad">(.*?)</tr>', html, re.S).group(1)
    assert re.findall(r'<td class="num">([^<]*)</td>', row) == ["1 mm", "2 mm"]


def test_sphinx_markup_rendered_not_literal(tmp_path):
    s = _section()
    s.notes.append("A long finding with ``literal`` and :math:`\\sigma`. " * 40)
    s.tables.append(Table("short", ["a"], [[1]], caption="from :func:`refsuite.metrics.ssim`"))
    render_report([s], tmp_path, RunContext(), 0.1)
    html = (tmp_path / "demo.html").read_text()
    for raw in (":func:", ":mod:", ":class:", ":math:", "``"):
        assert raw not in html
    assert "<code>simulate</code>" in html and "<code>refsuite.pvc</code>" in html and "<em>exact</em>" in html
    assert "<code>x &lt;= 1</code>" in html
    assert "<pre>" not in html  # notes are wrapped paragraphs, not one-line <pre> boxes
    assert '<div class="note"><p>A long finding' in html


def test_rst_subset():
    assert rst_inline(":func:`a.b <a.b.c>`") == "<code>a.b</code>"
    assert rst_inline("2 * 3 * 4 and a*b") == "2 * 3 * 4 and a*b"
    assert rst_inline("<b> [1]_") == "&lt;b&gt; [1]"
    html = rst_to_html("Head\n----\n\n- one\n  more\n- two\n\nCode::\n\n    x = 1\n      y")
    assert html == ("<h3>Head</h3>\n<ul><li>one more</li><li>two</li></ul>\n<p>Code:</p>\n"
                    '<pre class="wrap">x = 1\n  y</pre>')


def test_plots_before_long_tables_and_tables_scroll(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from refsuite.report import figure_from_matplotlib

    s = _section()
    s.tables.append(Table("long table", ["r", "S"], [[i, 0.1 * i] for i in range(64)]))
    s.tables.append(Table("short table", ["a"], [[1]]))
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    s.figures.append(figure_from_matplotlib(fig, "the plot"))
    render_report([s], tmp_path, RunContext(), 0.1)
    html = (tmp_path / "demo.html").read_text()
    assert html.index("<h2>short table</h2>") < html.index("<img") < html.index("<h2>long table</h2>")
    assert html.count("<table") == html.count('<div class="scroll"><table')


def test_results_json_is_strict_and_nan_becomes_null_with_reason(tmp_path):
    s = Section(study="demo", title="Demo")
    s.declare("nan", Tolerance(1.0, Comparison.AT_MOST, unit="mm", false_alarm="test"))
    s.check("nan", math.nan)
    s.tables.append(Table("t", ["a", "b", "c"], [[np.float64(np.nan), math.inf, np.int64(3)], [np.arange(2), 1.5, "x"]]))
    render_report([s], tmp_path, RunContext(), math.nan)

    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")

    text = (tmp_path / "results.json").read_text()
    data = json.loads(text, parse_constant=refuse)
    check = data["checks"][0]
    assert check["measured"] is None and "nan" in check["measured_reason"] and check["passed"] is False
    table = data["studies"]["demo"]["tables"][0]
    assert table["rows"] == [[None, None, 3], [[0, 1], 1.5, "x"]] and "null" in table["null_reason"]
    assert data["runtime_s"] is None
    assert "nan" in (tmp_path / "demo.html").read_text()


def _fake_module(name, measured):
    def run(ctx):
        s = Section(study=name, title=f"Fake {name}")
        s.declare("value", Tolerance(1.0, Comparison.AT_MOST, unit="mm", false_alarm="test"))
        s.check("value", measured(ctx))
        return s

    return SimpleNamespace(NAME=name, TITLE=f"Fake {name}", run=run)


@pytest.fixture
def fake_studies(monkeypatch):
    studies = {"alpha": _fake_module("alpha", lambda ctx: 0.5), "beta": _fake_module("beta", lambda ctx: ctx.seed / 10)}
    monkeypatch.setattr(runner, "discover_studies", lambda: dict(studies))
    return studies


def test_only_merges_into_existing_report(tmp_path, fake_studies):
    runner.run_report(RunContext(seed=1), tmp_path, progress=False)
    # beta rerun with another seed: alpha keeps its entry (seed 1) and page, beta is replaced
    results = runner.run_report(RunContext(seed=20), tmp_path, only=["beta"], progress=False)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    assert list(on_disk["studies"]) == ["alpha", "beta"]
    assert on_disk["studies"]["alpha"]["seed"] == 1 and on_disk["studies"]["beta"]["seed"] == 20
    assert on_disk["mixed_runs"] is True
    assert [(c["study"], c["measured"], c["status"]) for c in on_disk["checks"]] == [("alpha", 0.5, "pass"),
                                                                                     ("beta", 2.0, "fail")]
    assert (on_disk["n_checks"], on_disk["n_passed"], on_disk["passed"]) == (2, 1, False)
    index = (tmp_path / "index.html").read_text()
    assert 'href="alpha.html"' in index and 'href="beta.html"' in index
    assert (tmp_path / "alpha.html").is_file() and (tmp_path / "beta.html").is_file()
    md = (tmp_path / "results.md").read_text()
    assert "## alpha" in md and "## beta" in md and "| value | 2 mm | — | x <= 1 mm | test | **FAIL** |" in md
    assert "- **beta**: value: measured 2 mm, needs x <= 1 mm" in md


def test_pages_of_vanished_studies_are_removed(tmp_path, fake_studies):
    runner.run_report(RunContext(), tmp_path, progress=False)
    del fake_studies["alpha"]  # the study no longer exists
    results = runner.run_report(RunContext(), tmp_path, only=["beta"], progress=False)
    assert list(results["studies"]) == ["beta"] and not (tmp_path / "alpha.html").exists()
    assert "alpha" not in (tmp_path / "index.html").read_text()


def test_merge_refuses_a_foreign_results_file_before_running(tmp_path, fake_studies, monkeypatch):
    (tmp_path / "results.json").write_text("{\"not\": \"a report\"}")
    ran = []
    monkeypatch.setattr(runner, "run_study", lambda module, ctx: ran.append(module.NAME))
    with pytest.raises(ValueError, match="results.json.*not the results.json of a refsuite report"):
        runner.run_report(RunContext(), tmp_path, only=["alpha"], progress=False)
    assert ran == []


def test_results_md_copy_links_pages_and_study_documents(tmp_path, fake_studies):
    docs = tmp_path / "docs"
    (docs / "studies").mkdir(parents=True)
    (docs / "studies" / "alpha.md").write_text("# alpha\n")
    runner.run_report(RunContext(), tmp_path / "reports", progress=False, results_md=docs / "results.md")
    md = (docs / "results.md").read_text()
    assert "[HTML page](../reports/alpha.html)" in md and "[study document](studies/alpha.md)" in md
    assert "[study document](studies/beta.md)" not in md  # only documents that exist are linked
    assert "mode quick · seed 12345 · device cpu" in md


@pytest.mark.parametrize("flags, names", [
    (["--only", ","], ["--only", "','", "known studies: alpha, beta"]),
    (["--only", "alpha", "--only", "gamma"], ["--only", "'alpha,gamma'", "'gamma'", "known studies: alpha, beta"]),
    (["--device", "bogus"], ["--device", "'bogus'", "cpu"]),
    (["--seed", "-1"], ["--seed", "-1", ">= 0"]),
    (["--results-md", "."], ["--results-md", "folder"]),
])
def test_report_refuses_bad_flags_before_any_work(tmp_path, capsys, fake_studies, monkeypatch, flags, names):
    ran = []
    monkeypatch.setattr(runner, "run_study", lambda module, ctx: ran.append(module.NAME))
    out = tmp_path / "out"
    assert main(["report", "--no-progress", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("refsuite report: ")
    assert all(n in err for n in names), err
    assert ran == [] and not out.exists()


def test_report_refuses_an_output_that_is_a_file(tmp_path, capsys, fake_studies):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["report", "--out", str(target)]) == 2
    assert "--out" in capsys.readouterr().err and target.read_text() == "x"


def test_report_command_bad_flag_exits_2_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "refsuite", "report", "--only", ",", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "Traceback" not in proc.stderr
    assert "--only" in proc.stderr and "sensitivity" in proc.stderr and proc.stdout == ""
    assert not (tmp_path / "o").exists()


def test_plan_main_writes_results_md_and_refuses_a_negative_seed(tmp_path, capsys):
    import enum

    class Sizes(enum.Enum):
        QUICK = "quick"
        MEDIUM = "medium"

    def run(ctx, size):
        s = Section(study="plan", title="Plan study")
        s.declare("value", Tolerance(1.0, Comparison.AT_MOST, unit="mm", false_alarm="test"))
        s.check("value", 2.0 if size is Sizes.MEDIUM else 0.5)
        return s

    assert runner.plan_main("validation.plan", Sizes, run, ["--size", "quick", "--out", str(tmp_path)]) == 0
    assert runner.plan_main("validation.plan", Sizes, run, ["--size", "medium", "--out", str(tmp_path)]) == 1
    assert "FAIL value: 2 mm" in capsys.readouterr().out
    assert "| value | 2 mm | — | x <= 1 mm | test | **FAIL** |" in (tmp_path / "results.md").read_text()
    with pytest.raises(SystemExit) as exc:
        runner.plan_main("validation.plan", Sizes, run, ["--seed", "-1", "--out", str(tmp_path / "new")])
    assert exc.value.code == 2 and "--seed -1" in capsys.readouterr().err and not (tmp_path / "new").exists()


def test_seed_sweep_writes_each_seed_and_resumes_after_an_interruption(tmp_path, fake_studies):
    """Each seed's report is written when its studies are done; an interrupted sweep resumes with
    the seeds still to run (the finished ones are not run again); a finished sweep runs afresh."""
    calls = []
    real = fake_studies["beta"].run

    def beta(ctx):
        calls.append(ctx.seed)
        if ctx.seed == 3 and calls.count(3) == 1:
            raise KeyboardInterrupt  # the batch system's time limit, the first time seed 3 runs
        return real(ctx)

    fake_studies["beta"].run = beta
    with pytest.raises(KeyboardInterrupt):
        runner.run_seed_sweep(RunContext(), tmp_path, [1, 2, 3], progress=False)
    assert json.loads((tmp_path / "sweep.json").read_text())["done"] == [1, 2]
    assert (tmp_path / "seed-2" / "results.json").is_file() and not (tmp_path / "seed-3").exists()
    summary = runner.run_seed_sweep(RunContext(), tmp_path, [1, 2, 3], progress=False)
    assert calls == [1, 2, 3, 3]  # seeds 1 and 2 came from their reports
    assert json.loads((tmp_path / "seed-3" / "results.json").read_text())["studies"]["beta"]["seed"] == 3
    assert json.loads((tmp_path / "sweep.json").read_text())["finished"] is True
    assert "beta" in (tmp_path / "seeds.md").read_text() and summary
    runner.run_seed_sweep(RunContext(), tmp_path, [1, 2, 3], progress=False)
    assert calls == [1, 2, 3, 3, 1, 2, 3]  # finished: run again from the start
