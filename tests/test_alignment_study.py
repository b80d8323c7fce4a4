"""The ``alignment`` validation study turns red on a deliberately broken input.

A smaller configuration of the same code (4 mm crystal voxels, 2.5e5 decays, 40 iterations)
keeps this under a minute; the honest run of that configuration is the comparison.
"""

from __future__ import annotations

from refsuite.report import RunContext
from validation import alignment

SMALL = dict(binning="4mm", n_decays=250_000, n_shell_decays=1_500_000, n_iter=40, batch_size=20_000)


def test_study_red_on_wrong_phantom():
    ctx = RunContext(seed=7)
    honest = {c.name: c for c in alignment.run(ctx, inputs=alignment.StudyInputs(**SMALL)).checks}
    broken = {c.name: c for c in alignment.run(ctx, inputs=alignment.StudyInputs(source_jitter_mm=3.0, **SMALL)).checks}
    name = "translation error after alignment (worst axis mean)"
    assert broken[name].passed is False
    assert broken["translation error reduction factor"].passed is False
    # the honest run of the same configuration does better, so the red comes from the input
    assert honest[name].measured < 0.5 * broken[name].measured
    assert honest["translation error reduction factor"].measured < 0.5 * broken["translation error reduction factor"].measured
    assert broken["run time"].passed and honest["NLL decrease over the run"].passed
