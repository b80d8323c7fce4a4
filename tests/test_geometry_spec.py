"""refsuite.geometry.spec.ScannerSpec: the one [scanner] table of scenarios and acceptance plans."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from refsuite.geometry import preset
from refsuite.geometry.spec import ScannerSpec


def test_scenarios_and_plans_share_the_model():
    from refsuite.acceptance.plan import AcceptancePlan
    from simulations.scenario import Scenario

    assert Scenario.model_fields["scanner"].annotation is ScannerSpec
    assert AcceptancePlan.model_fields["scanner"].annotation is ScannerSpec


def test_preset_with_options_and_relative_file(tmp_path):
    s = ScannerSpec(preset="thull_sim", options={"binning": "4mm"}).build()
    ref = preset("thull_sim", binning="4mm")
    np.testing.assert_array_equal(s.positions, ref.positions)
    assert s.crystals.n_crystals == ref.crystals.n_crystals
    moved = ref.transform(np.zeros((ref.n_blocks, 3)), np.full((ref.n_blocks, 3), 0.25))
    moved.save(tmp_path / "bp.json")
    spec = ScannerSpec(file="bp.json")
    assert spec.path(tmp_path) == tmp_path / "bp.json" and ScannerSpec(preset="lin_clinical").path() is None
    np.testing.assert_allclose(spec.build(tmp_path).positions, moved.positions)


@pytest.mark.parametrize("kwargs, match", [
    ({}, "exactly one of 'preset' or 'file'"),
    ({"preset": "thull_sim", "file": "x.json"}, "exactly one of 'preset' or 'file'"),
    ({"file": "x.json", "options": {"binning": "4mm"}}, "presets only"),
    ({"preset": "siemens_vision"}, "thull_sim"),
    ({"preset": "thull_sim", "bogus": 1}, "bogus"),
])
def test_bad_specs_are_refused(kwargs, match):
    with pytest.raises(ValidationError, match=match):
        ScannerSpec(**kwargs)


def test_plan_names_an_unknown_preset(tmp_path):
    from refsuite.acceptance.plan import PlanError, plan_from_dict

    (tmp_path / "shell.npz").write_bytes(b"x")
    d = {"name": "p", "scanner": {"preset": "nope"}, "data": {"shell": "shell.npz"},
         "checks": {"efficiency": {"min_fraction": 0.5}}}
    with pytest.raises(PlanError, match=r"scanner\.preset.*'nope'"):
        plan_from_dict(d, base_dir=tmp_path)
