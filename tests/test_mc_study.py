"""The ``mc`` validation study: green on the honest run, red on a deliberately broken input."""

from __future__ import annotations

import pytest

from refsuite.report import RunContext
from validation import mc, run_study


@pytest.fixture(scope="module")
def ctx():
    return RunContext(seed=2024)


def test_study_green_in_quick_mode(ctx):
    section = run_study(mc, ctx)
    failed = [(c.name, c.measured) for c in section.checks if not c.passed]
    assert not failed
    assert len(section.checks) == 11 and len(section.figures) == 3


def test_study_red_on_broken_inputs(ctx):
    """A simulated cylinder 5 % wider than the closed form's, and a quadrature told that LYSO
    has mu = 0.06/mm instead of 0.087/mm: the checks that compare them turn red, the rest
    stay green."""
    section = mc.run(ctx, inputs=mc.StudyInputs(cylinder_radius_scale=1.05, block_mu_per_mm=0.06))
    status = {c.name: c.passed for c in section.checks}
    assert status.pop("ideal cylinder: max |z| vs closed form") is False
    assert status.pop("ideal cylinder: chi-square p-value") is False
    assert status.pop("block pair: |z| vs solid-angle quadrature") is False
    assert all(status.values()), status
