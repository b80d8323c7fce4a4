"""The ``gate`` validation study: green on the honest run, red on deliberately broken inputs."""

from __future__ import annotations

import pytest

from refsuite.capabilities import capability
from refsuite.report import RunContext
from validation import gate, run_study

pytestmark = pytest.mark.requires("opengate")

POSE_CHECKS = {f"poses {n}: block corners and crystal centres vs Scanner (max)" for n in
               ("thull_points", "thull_tube", "thull_shell", "thull_hotrod", "lin_line_sweep")}


@pytest.fixture(scope="module")
def ctx():
    return RunContext(seed=2024)


def test_study_green_in_quick_mode(ctx):
    section = run_study(gate, ctx)
    failed = [(c.name, c.measured, c.detail) for c in section.checks if not c.passed]
    assert not failed
    names = {c.name for c in section.checks}
    assert POSE_CHECKS <= names and len(section.figures) == 2
    agreement = next(t for t in section.tables if t.title == "GATE vs built-in agreement")
    if not capability("geant4_data").available:
        # no fake pass: the engine comparison is reported as not run and has no check
        assert all(row[1] == "not run" and "Geant4 data missing" in row[2] for row in agreement.rows)
        assert not any(n.startswith("GATE vs built-in") for n in names)


def test_study_red_on_broken_inputs(ctx):
    """Blocks placed with A instead of A.T, and a coincidence window of 0.2 ns instead of the
    scenario's 5 ns: exactly the pose checks and the sorter check turn red.

    The same run wires a stand-in for run_gate into the study (no Geant4 data here): the
    engine comparison then runs end to end, its checks named after the stand-in (never
    "GATE"), green for a stand-in that loses photopeak events uniformly
    (tests/test_gate_engines.py turns them red one by one)."""
    from test_gate_engines import photopeak_thinned  # tests/ is on sys.path (no __init__.py)

    section = gate.run(ctx, inputs=gate.StudyInputs(transpose_rotations=True, sorter_window_ns=0.2,
                                                    gate_engine=photopeak_thinned))
    status = {c.name: c.passed for c in section.checks}
    for name in POSE_CHECKS:
        assert status.pop(name) is False, name
    assert status.pop("offline GATE sorter on built-in singles: pairs or values differing") is False
    assert all(status.values()), status
    engine = [n for n in status if " vs built-in: " in n]
    assert len(engine) == 5 and all(n.startswith("stand-in photopeak_thinned vs built-in") for n in engine)
    agreement = next(t for t in section.tables if t.title == "GATE vs built-in agreement")
    assert all(row[1] == "run (stand-in photopeak_thinned vs built-in)" for row in agreement.rows)

