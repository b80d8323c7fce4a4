"""Acceptance testing after a hardware change (new modules, re-mounted blocks).

A plan (:func:`load_plan`, TOML validated with pydantic) names the blueprint, the calibration
scans and a tolerance with its unit for every check; :func:`run_acceptance` runs the checks
(:mod:`refsuite.acceptance.checks`: geometry by ML alignment, detection efficiency by fan
sums, timing by skew calibration and CTR, sensitivity by a line-source sweep), compares them with a baseline and writes an HTML
page and ``results.json``. The same plan runs as pytest tests: ``pytest --acceptance PLAN``.
"""

from refsuite._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".checks": ("CheckResult", "Criterion", "check_efficiency", "check_geometry", "check_image_quality",
                "check_sensitivity", "check_timing"),
    ".plan": ("AcceptancePlan", "PlanError", "load_plan", "plan_from_dict"),
    ".quantities": ("Dimension", "Quantity", "parse_quantity"),
    ".runner": ("AcceptanceRun", "BaselineError", "load_baseline", "read_events", "run_acceptance"),
})
