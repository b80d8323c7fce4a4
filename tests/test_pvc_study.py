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
def test_quick_study_is_green(prepared):
    section = study.run(RunContext(), prepared=prepared)
    failed = [(c.name, c.measured) for c in section.checks if not c.passed]
    assert section.passed, failed
    assert not section.undecided()
    assert len(section.figures) == 3 and section.tables
    assert prepared.fwhm_mm["RR_nf"] < prepared.fwhm_mm["noRR_nf"]


@pytest.mark.slow
def test_broken_dl_pvc_turns_red(prepared):
    """A DL-PVC whose output is blurred by one voxel (a plausible fault) must fail SSIM and VAA."""

    def broken(image, model):
        return gaussian_blur(correct(image, model), fwhm_mm=4.8, voxel_size_mm=4.8)

    section = study.run(RunContext(), prepared=prepared, dl_correct=broken)
    by_name = {c.name: c for c in section.checks}
    assert not by_name["RR_n: DL-PVC vs none, SSIM Wilcoxon p (one-sided)"].passed
    assert not by_name["RR_n: DL-PVC - none, mean VAA (%)"].passed
    assert not section.passed
