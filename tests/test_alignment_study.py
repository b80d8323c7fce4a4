"""The ``alignment`` validation study turns red on a deliberately broken input.

A smaller configuration of the same code (4 mm crystal voxels, 2.5e5 decays, 40 iterations)
keeps this under a minute; the honest run of that configuration is the comparison.
"""

from __future__ import annotations

import numpy as np

from refsuite.report import RunContext, Section
from validation import alignment

SMALL = dict(binning="4mm", n_decays=250_000, n_shell_decays=1_500_000, n_iter=40, batch_size=20_000,
             with_image_quality=False)  # the image-quality checks have their own test below


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


def test_image_quality_red_when_the_aligned_geometry_is_the_blueprint():
    """Broken input: the "aligned" geometry handed to the image-quality evaluation is the blueprint
    itself (an alignment that did nothing): it is not better than the blueprint and not close to the
    truth geometry, so all four checks turn red. (The honest run is the study's own.)"""
    from refsuite.geometry import perturb, preset

    blueprint = preset("thull_sim")
    truth = perturb(blueprint, sigma_t_mm=1.0, sigma_r_deg=1.0, rng=np.random.default_rng(3))
    s = Section(study="alignment", title="t")
    sizes = dict(n_decays=2_000_000, voxel_size_mm=1.0, n_iter=2, n_subsets=6, n_sensitivity_lines=1_500_000)
    alignment._image_quality(s, RunContext(seed=7), truth, blueprint, blueprint, sizes)
    assert len(s.checks) == 4 and not any(c.passed for c in s.checks)
    # the truth geometry itself is measurably better than the blueprint on these data
    by = {c.name: c for c in s.checks}
    assert by["hot-rod PSNR, aligned vs truth geometry"].reference > by["hot-rod PSNR, aligned vs truth geometry"].measured


def test_tube_run_records_its_check_and_row():
    """The full-mode tube run, at a size that only exercises the path (its accuracy is a full-mode
    figure: at 4 mm voxels and 3e4 coincidences it misses 150 um): one declared check measured,
    one table row with three translation and three rotation errors."""
    from refsuite.geometry import perturb, preset
    from refsuite.phantoms import PointSources

    blueprint = preset("thull_sim", binning="4mm")
    rng = np.random.default_rng(5)
    truth = perturb(blueprint, sigma_t_mm=1.0, sigma_r_deg=1.0, rng=rng)
    src = PointSources.random(10, fov_radius_mm=40.0, fov_half_length_mm=50.0, rng=rng)
    s = Section(study="alignment", title="t")
    inp = alignment.StudyInputs(n_decays=50_000, n_iter=2, batch_size=2_000)
    row = alignment._tube_run(s, RunContext(seed=7), inp, blueprint, truth, src, src, None)
    (check,) = s.checks
    assert check.name.startswith("tube") and np.isfinite(check.measured) and check.measured > 0
    assert row[0].startswith("tube") and len(row) == 9 and all(np.isfinite(row[1:7]))
