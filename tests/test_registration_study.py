"""The registration study turns red on deliberately broken inputs, and runs green on sane ones."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import refsuite.registration as reg
from refsuite.report import RunContext
from validation import registration as study

TINY = study.Settings(n_test=1, uniform_weights=(100.0,), iterations=(20, 15, 10), network=False)


def _by_name(section):
    return {c.name: c for c in section.checks}


@pytest.fixture(scope="module")
def sane():
    return _by_name(study.run_with(RunContext(seed=3), TINY))


def test_tiny_study_truth_checks_are_green(sane):
    # (the claim checks on one pair and 45 Adam steps are too noisy to assert here; the quick
    # report runs them on the real settings)
    failed = [f"{c.name}: {c.measured}" for c in sane.values() if c.name.startswith("truth") and not c.passed]
    assert not failed, failed
    assert len(sane) == 8


def test_inverted_ct_map_turns_the_rigidity_check_red(sane):
    # bone weaker than soft tissue: the "CT-guided" map now loosens bone, contradicting the claim
    broken = _by_name(study.run_with(RunContext(seed=3), dataclasses.replace(TINY, bone_factor=0.01)))
    name = "instance: bone rigidity CT-guided / best uniform"
    assert sane[name].passed and not broken[name].passed


def test_wrong_sign_truth_turns_the_truth_check_red(monkeypatch):
    original = reg.simulate_pet_ct_pair

    def flipped(**kwargs):
        pair = original(**kwargs)
        pair.truth["ddf"] = -pair.truth["ddf"]  # a sign error in the recorded truth
        return pair

    monkeypatch.setattr(reg, "simulate_pet_ct_pair", flipped)
    checks = _by_name(study.run_with(RunContext(seed=3), dataclasses.replace(TINY, iterations=(1, 1, 1))))
    assert not checks["truth: soft-organ Dice gain of the true DDF over identity"].passed
    assert np.isfinite(checks["truth: soft-organ Dice gain of the true DDF over identity"].measured)


def test_inverted_ct_map_turns_the_network_rigidity_check_red():
    # the U-Net half: with bone weaker than soft tissue in its training loss the CT-guided network
    # must come out less rigid in bone than the uniform one (a few steps on one pair suffice)
    tiny_net = dataclasses.replace(TINY, iterations=(5, 5, 5), network=True, n_train=1, network_steps=20)
    name = "network: bone rigidity CT-guided / uniform"
    sane = _by_name(study.run_with(RunContext(seed=3), tiny_net))
    broken = _by_name(study.run_with(RunContext(seed=3), dataclasses.replace(tiny_net, bone_factor=0.01)))
    assert sane[name].passed and not broken[name].passed, (sane[name].measured, broken[name].measured)
