"""The ``pvc`` study: green on the quick plan, red with a deliberately broken DL-PVC.

The expensive part (dataset, training, resolution, cubes) is prepared once and evaluated
twice; ``refsuite report --quick --only pvc`` runs the same code end to end.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from refsuite.pvc import correct, gaussian_blur
from refsuite.report import RunContext
from validation import pvc as study


@pytest.fixture(scope="module")
def prepared():
    return study.prepare(RunContext())


@pytest.mark.slow
def test_quick_study_is_green_and_a_broken_dl_pvc_turns_it_red(prepared):
    section = study.run(RunContext(), prepared=prepared)
    failed = [(c.name, c.measured) for c in section.checks if not c.passed]
    assert section.passed, failed
    assert not section.undecided()
    assert len(section.figures) == 3 and section.tables
    assert prepared.fwhm_mm["RR_nf"] < prepared.fwhm_mm["noRR_nf"]

    def blurred(image, model):  # a plausible fault: the output smoothed by two voxels (a wrong PSF step)
        return gaussian_blur(correct(image, model), fwhm_mm=9.6, voxel_size_mm=4.8)

    def unconserved(image, model):  # the conservation step forgotten (output 5 % high)
        return 1.05 * correct(image, model)

    def no_correction(image, model):  # a network that learnt nothing (the identity)
        return image

    # shown, not judged: the conservation design property and the claim the quick network is too small for
    conservation = "DL-PVC activity conservation, max |sum(out) / sum(in) - 1|"
    vaa_p = "RR_n: DL-PVC vs none, VAA Wilcoxon p (one-sided)"
    assert {c.name for c in section.shown_checks} == {conservation, vaa_p, "RR_n: DL-PVC better than IY-PVC, SSIM Wilcoxon p"}
    assert {c.name: c for c in section.checks}[conservation].met
    for fault in (blurred, no_correction):
        broken = study.evaluate(RunContext(), prepared, dl_correct=fault)
        assert not {c.name: c for c in broken.checks}["RR_n: DL-PVC vs none, SSIM Wilcoxon p (one-sided)"].passed
        assert not broken.passed
    assert not {c.name: c for c in study.evaluate(RunContext(), prepared, dl_correct=no_correction).checks}[vaa_p].met
    # no partial-volume loss (a reconstruction without the collimator blur): the RC check turns red
    unblurred = replace(prepared, cubes={**prepared.cubes, "RR_nf": prepared.cubes["truth"]})
    rc = {c.name: c for c in study.evaluate(RunContext(), unblurred).checks}
    assert not rc["RC without PVC (noise-free): largest cube - 1-voxel cube"].passed
    broken = study.evaluate(RunContext(), prepared, dl_correct=unconserved)
    assert not {c.name: c for c in broken.checks}[conservation].met  # the shown property still shows the fault


def test_evaluation_tasks_give_the_same_result_on_a_cluster_as_in_process():
    """IY-PVC + DL-PVC + metrics per test case are executor tasks; two workers change nothing."""
    pytest.importorskip("distributed")
    import types

    import numpy as np
    import torch

    from refsuite.execution import Executor
    from refsuite.pvc import DatasetConfig, Output, build_network, simulate_cases

    cfg = DatasetConfig(shape=(12, 16, 16), n_views=8, time_per_view_s=450.0, recons=("RR", "noRR"))  # SSIM: >= 11
    test = simulate_cases(range(3), cfg, seed=5)
    torch.manual_seed(0)
    model = build_network(features=(2, 4), output=Output.DIRECT).eval()  # random weights: not the identity
    prep = types.SimpleNamespace(test=test, plan=types.SimpleNamespace(dataset=cfg), models={"RR_n": model})
    here = study._per_case(prep, correct, 9.0, 18.0)
    with Executor(workers=2) as cluster:
        there = study._per_case(prep, correct, 9.0, 18.0, executor=cluster)
    assert here[2] == there[2] < 1e-12  # DL-PVC conserves the activity
    for key in ("RR_n", "RR_nf", "noRR_n", "noRR_nf"):
        assert set(here[0][key]) == ({"none", "IY-PVC", "DL-PVC"} if key == "RR_n" else {"none", "IY-PVC"})
        for m in here[0][key]:
            assert here[0][key][m].shape == (3, 4) and np.array_equal(here[0][key][m], there[0][key][m])
            assert all(np.array_equal(a, b) for a, b in zip(here[1][key][m], there[1][key][m]))
    # the methods differ (the comparison is not trivially equal): IY-PVC changes the image
    assert not np.array_equal(here[0]["RR_n"]["IY-PVC"], here[0]["RR_n"]["none"])
