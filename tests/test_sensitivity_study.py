"""The sensitivity study through the real command: renders, is green, and can turn red."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np

from refsuite.cli import main
from refsuite.report import RunContext
from refsuite.sensitivity import geometric_sensitivity
from validation import sensitivity as study


class _Rows(HTMLParser):
    def __init__(self):
        super().__init__()
        self.classes: list[str] = []
        self.images = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and a.get("class") in ("pass", "fail"):
            self.classes.append(a["class"])
        if tag == "img" and a.get("src", "").startswith("data:image/png;base64,"):
            self.images += 1


def test_quick_report_renders_green(tmp_path):
    assert main(["report", "--quick", "--only", "sensitivity", "--out", str(tmp_path), "--no-progress"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["passed"] and results["mode"] == "quick"
    names = {c["name"] for c in results["checks"]}
    assert any(n.startswith("MC chi-square p-value") for n in names)
    index, page = _Rows(), _Rows()
    index.feed((tmp_path / "index.html").read_text())
    page.feed((tmp_path / "sensitivity.html").read_text())
    assert index.classes == ["pass"] * results["n_checks"]
    assert page.classes.count("pass") == results["n_checks"] and page.images >= 2


def test_one_percent_error_in_closed_form_turns_red():
    """The harness can fail: the closed form scaled by 1.01 must fail the MC checks."""

    def broken(r, z=0.0, *, radius, half_length):
        return 1.01 * geometric_sensitivity(r, z, radius=radius, half_length=half_length)

    section = study.run(RunContext(seed=5), closed_form=broken)
    by_name = {c.name: c for c in section.checks}
    chi = [c for n, c in by_name.items() if n.startswith("MC chi-square p-value")]
    assert len(chi) == 2 and not any(c.passed for c in chi)
    assert not by_name["closed form vs reference quadrature, max abs error"].passed
    assert not section.passed


def test_unknown_study_is_an_error(tmp_path, capsys):
    assert main(["report", "--only", "nope", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "unknown study" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


def test_z_limit_is_sidak():
    assert abs(study._z_limit(64) - 4.3196) < 1e-3  # per-point two-sided tail 1.563e-5
    assert np.isclose(study._z_limit(1, 0.05), 1.959964, atol=1e-5)
