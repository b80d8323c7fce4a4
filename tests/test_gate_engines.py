"""The GATE-vs-built-in code path of the ``gate`` study, run here with stand-in engines (no
Geant4 data): green for a stand-in that behaves as GATE is expected to (photopeak losses
only), red, check by check, for stand-ins with a deliberate defect."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from refsuite import phantoms as ph
from refsuite.io import read_coincidences, write_coincidences
from refsuite.report import RunContext, Section
from simulations.builtin import run_builtin
from simulations.scenario import load_scenario, shipped_scenarios
from validation import gate

SHIPPED = shipped_scenarios()
#: the quick sizes but 2 sweep offsets (r = 0 and 375 mm: the ends carry the radial shape)
SIZES = {**gate.ENGINE_SIZES[True], "sweep_offsets_mm": (0.0, 375.0)}


def photopeak_thinned(run, out):
    """GATE-like stand-in: each photon keeps its full-energy deposit with probability 0.7
    (the Compton-escape loss), so coincidences per decay drop to 0.49 at every offset and the
    in-window spectrum is unchanged."""
    run_builtin(run, out)
    ev = read_coincidences(out)
    rng = np.random.default_rng(run.scenario.acquisition.seed + 1)
    keep = (rng.random(ev.n_events) < 0.7) & (rng.random(ev.n_events) < 0.7)
    write_coincidences(out, {k: v[keep] for k, v in ev.items()})


def _then_thinned(modify):
    def engine(run, out):
        photopeak_thinned(modify(run), out)
    engine.__name__ = modify.__name__
    return engine


def _points_shifted(run):
    p = run.phantom
    if isinstance(p, ph.PointSources):
        p = ph.PointSources(p.centres_mm + [10.0, 0.0, 0.0], radius_mm=p.radius_mm, activities_bq=p.activities_bq,
                            cube_mm=p.cube_mm)
    return dataclasses.replace(run, phantom=p)


def _energy_resolution_20(run):
    dig = run.scenario.digitizer.model_copy(update={"energy_resolution": 0.20})
    return dataclasses.replace(run, scenario=run.scenario.model_copy(update={"digitizer": dig}))


def _line_at_half_offset(run):
    p = run.phantom
    if isinstance(p, ph.LineSource):
        p = ph.LineSource(position_mm=tuple(np.asarray(p.position_mm) / 2), radius_mm=p.radius_mm,
                          length_mm=p.length_mm, centre_z_mm=p.centre_z_mm, activity_bq=p.activity_bq)
    return dataclasses.replace(run, phantom=p)


@pytest.fixture(scope="module")
def inputs():
    return (load_scenario(SHIPPED["thull_points"]).runs()[0], load_scenario(SHIPPED["lin_line_sweep"]).runs())


def _status(engine, inputs, label):
    points, sweep = inputs
    s = Section(study="t", title="t")
    rows = gate._engines(s, RunContext(seed=5), points, sweep, engine_a=engine, engine_b=run_builtin,
                         label_a=label, label_b="built-in", sizes=SIZES)
    assert all(r[1].startswith("run (") for r in rows)
    kinds = ("counts per block", "energy spectra, KS", "mean in-window", "mean sensitivity ratio", "radial shape")
    return {k: next(c.passed for c in s.checks if k in c.name) for k in kinds}, s


def test_gate_like_stand_in_passes_every_check(inputs):
    status, s = _status(photopeak_thinned, inputs, "stand-in")
    assert all(status.values()), [(c.name, c.measured, c.detail) for c in s.checks]
    assert len(s.checks) == 5 and all(c.name.startswith("stand-in vs built-in") for c in s.checks)
    table = s.tables[-1]
    assert [row[0] for row in table.rows] == [0.0, 375.0] and len(s.figures) == 1


@pytest.mark.parametrize("modify, red", [
    (_points_shifted, {"counts per block"}),
    (_energy_resolution_20, {"energy spectra, KS", "mean in-window"}),
    (_line_at_half_offset, {"radial shape"}),
])
def test_defective_stand_ins_turn_exactly_their_checks_red(inputs, modify, red):
    status, s = _status(_then_thinned(modify), inputs, "stand-in")
    assert {k for k, ok in status.items() if not ok} == red, [(c.name, c.measured, c.detail) for c in s.checks]


def test_engine_without_compton_losses_is_red_on_the_ratio(inputs):
    """The built-in MC standing in for GATE: everything agrees except the sensitivity ratio,
    which must lie below 0.9 for any engine that simulates Compton escape."""
    status, s = _status(run_builtin, inputs, "built-in copy")
    assert {k for k, ok in status.items() if not ok} == {"mean sensitivity ratio"}


@pytest.mark.requires("geant4_data")
@pytest.mark.slow
def test_gate_against_builtin_where_geant4_data_exists(inputs):
    """The real thing (skipped here): GATE vs built-in at the quick sizes, every check green."""
    from simulations.gate import run_gate

    status, s = _status(run_gate, inputs, "GATE")
    assert all(status.values()), [(c.name, c.measured, c.detail) for c in s.checks]
