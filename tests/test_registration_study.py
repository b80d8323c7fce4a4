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
    # must come out less rigid in bone than the uniform one (60 steps on one pair: with the
    # articulated truth, 20 steps left the broken network at 0.85, still green; 60 give 0.50 vs 1.12)
    tiny_net = dataclasses.replace(TINY, iterations=(5, 5, 5), network=True, n_train=1, network_steps=60)
    name = "network: bone rigidity CT-guided / uniform"
    sane = _by_name(study.run_with(RunContext(seed=3), tiny_net))
    broken = _by_name(study.run_with(RunContext(seed=3), dataclasses.replace(tiny_net, bone_factor=0.01)))
    assert sane[name].passed and not broken[name].passed, (sane[name].measured, broken[name].measured)


def test_plans_judge_generalisation_only_where_it_is_meant_to_hold():
    # the quick plan is what it was (6 training pairs, 120 steps, the instance optimisation's best
    # weight) and does not judge generalisation; medium and full judge whether the network reads
    # its images, only full whether it beats the image-blind mean training truth
    class Declared(set):
        def declare(self, name, tolerance, **shown):
            self.add(name)

    def declared(settings):
        names = Declared()
        study._declare(names, settings)
        return {name for name in names if "another pair" in name or "image-blind" in name}

    q = study.QUICK
    assert (q.shape, q.n_train, q.network_steps, q.network_weight) == ((66, 24, 33), 6, 120, None)
    assert declared(q) == set()
    reads = "network: held-out TRE own / another pair's DDF, both weights"
    blind = "network: held-out TRE / image-blind mean training truth, both weights"
    assert declared(study.MEDIUM) == declared(study.FULL) == {reads, blind}
    assert study.MEDIUM.n_train >= 100 and study.FULL.n_train >= study.MEDIUM.n_train


def test_reads_images_check_separates_an_oracle_from_an_image_blind_network(monkeypatch):
    # an untrained network (0 steps: DDF ~ 0 whatever the images) must turn the reads-images check
    # red, one that returns each pair's true DDF with the wrong sign the image-blind one; a stand-in
    # that returns each pair's true DDF (a network that reads its images perfectly) both green
    import torch

    truths = {}
    original = reg.simulate_pet_ct_pair

    def recording(**kwargs):
        pair = original(**kwargs)
        truths[id(pair.fixed_pet)] = pair.truth["ddf"]
        return pair

    monkeypatch.setattr(reg, "simulate_pet_ct_pair", recording)
    plan = dataclasses.replace(TINY, n_test=2, iterations=(1, 1, 1), network=True, n_train=1, network_steps=0,
                               network_claims=False, network_reads_images=True, network_beats_blind=True)
    reads = "network: held-out TRE own / another pair's DDF, both weights"
    blind = "network: held-out TRE / image-blind mean training truth, both weights"
    untrained = _by_name(study.run_with(RunContext(seed=3), plan))
    monkeypatch.setattr(reg, "predict_ddf", lambda model, f, m, device="cpu": torch.as_tensor(truths[id(f)])[None])
    oracle = _by_name(study.run_with(RunContext(seed=3), plan))
    monkeypatch.setattr(reg, "predict_ddf", lambda model, f, m, device="cpu": -torch.as_tensor(truths[id(f)])[None])
    flipped = _by_name(study.run_with(RunContext(seed=3), plan))
    assert not untrained[reads].passed and oracle[reads].passed, (untrained[reads].measured, oracle[reads].measured)
    assert not flipped[blind].passed and oracle[blind].passed, (flipped[blind].measured, oracle[blind].measured)


def test_a_run_resumed_from_its_work_directory_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    # the first run is interrupted in the U-Net stage (after the pairs, the instance registrations
    # and the first network's checkpoint are stored); the rerun must load them, not recompute,
    # and report what an uninterrupted run reports
    tiny_net = dataclasses.replace(TINY, iterations=(5, 5, 5), network=True, n_train=2, network_steps=6)
    reference = _by_name(study.run_with(RunContext(seed=3), tiny_net))
    ctx = RunContext(seed=3, work_dir=str(tmp_path))
    original = reg.train_network
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(kwargs["checkpoint"])
        if len(calls) == 2:
            raise KeyboardInterrupt("stopped in the second network's training")
        return original(*args, **kwargs)

    monkeypatch.setattr(reg, "train_network", interrupted)
    with pytest.raises(KeyboardInterrupt):
        study.run_with(ctx, tiny_net)
    monkeypatch.setattr(reg, "train_network", original)
    stored = sorted(p.name for p in next(tmp_path.iterdir()).iterdir())
    assert any(n.startswith("instance-uniform") for n in stored) and any(n.startswith("network-") for n in stored)

    def no_simulation(**kwargs):
        raise AssertionError("a stored pair was simulated again")

    def no_registration(*args, **kwargs):
        raise AssertionError("a stored registration was computed again")

    monkeypatch.setattr(reg, "simulate_pet_ct_pair", no_simulation)
    monkeypatch.setattr(reg, "register", no_registration)
    resumed = _by_name(study.run_with(ctx, tiny_net))
    assert {k: c.measured for k, c in resumed.items()} == pytest.approx({k: c.measured for k, c in reference.items()})


def test_quick_plan_shows_the_claims_it_cannot_judge_and_larger_plans_judge_them():
    from refsuite.report import Section

    def shown(settings):
        sec = Section(study=study.NAME, title="")
        study._declare(sec, settings)
        for name in list(sec._tolerances):
            sec.check(name, 0.0)
        return {c.name for c in sec.shown_checks}, sec.checks

    quick, checks = shown(study.QUICK)
    assert quick == set(study.SHOWN_IN_QUICK) and all(c.note for c in checks if not c.judged)
    assert "instance: bone rigidity CT-guided / best uniform" not in quick  # the robust half of the claim stays judged
    assert shown(study.MEDIUM)[0] == shown(study.FULL)[0] == set()
    with pytest.raises(ValueError, match="shown"):
        dataclasses.replace(study.QUICK, shown=("no such check",))
