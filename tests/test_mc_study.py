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


def test_study_red_when_cylinder_differs_from_closed_form(ctx):
    """Simulating a cylinder 5 % wider than the closed form's turns the z-score checks red."""
    section = mc.run(ctx, inputs=mc.StudyInputs(cylinder_radius_scale=1.05))
    status = {c.name: c.passed for c in section.checks}
    assert status["ideal cylinder: max |z| vs closed form"] is False
    assert status["ideal cylinder: chi-square p-value"] is False
    assert status["block pair: |z| vs solid-angle quadrature"] is True


def test_study_red_when_block_attenuation_is_wrong(ctx):
    """The quadrature assumes LYSO mu = 0.087/mm; telling it 0.06/mm must be caught."""
    section = mc.run(ctx, inputs=mc.StudyInputs(block_mu_per_mm=0.06))
    status = {c.name: c.passed for c in section.checks}
    assert status["block pair: |z| vs solid-angle quadrature"] is False
