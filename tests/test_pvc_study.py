"""The ``pvc`` study: green on the quick plan, red with a deliberately broken DL-PVC.

The expensive part (dataset, training, resolution, cubes) is prepared once and evaluated
twice; ``refsuite report --quick --only pvc`` runs the same code end to end.
"""

from __future__ import annotations

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
    assert {c.name for c in section.shown_checks} == {conservation, "RR_n: DL-PVC better than IY-PVC, SSIM Wilcoxon p"}
    assert {c.name: c for c in section.checks}[conservation].met
    for fault, check in ((blurred, "RR_n: DL-PVC vs none, SSIM Wilcoxon p (one-sided)"),
                         (no_correction, "RR_n: DL-PVC vs none, VAA Wilcoxon p (one-sided)")):
        broken = study.evaluate(RunContext(), prepared, dl_correct=fault)
        assert not {c.name: c for c in broken.checks}[check].passed
        assert not broken.passed
    broken = study.evaluate(RunContext(), prepared, dl_correct=unconserved)
    assert not {c.name: c for c in broken.checks}[conservation].met  # the shown property still shows the fault
