"""Discover, run and report the validation studies."""

from __future__ import annotations

import importlib
import pkgutil
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Sequence

from tqdm.auto import tqdm

from refsuite.report import Comparison, RunContext, Section, Tolerance, render_report

_STUDY_FAILED = Tolerance(
    1.0,
    Comparison.AT_LEAST,
    justification="a study must run to completion and measure every check it declared",
)


def discover_studies() -> dict[str, ModuleType]:
    """Map study name -> module for every public module in :mod:`validation`."""
    import validation

    studies: dict[str, ModuleType] = {}
    for info in sorted(pkgutil.iter_modules(validation.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"validation.{info.name}")
        if not (hasattr(module, "NAME") and hasattr(module, "run")):
            continue
        if module.NAME in studies:
            raise RuntimeError(f"two studies are named {module.NAME!r}")
        studies[module.NAME] = module
    return studies


def run_study(module: ModuleType, ctx: RunContext) -> Section:
    """Run one study; an exception or an undecided check becomes a red check, not a crash."""
    start = time.perf_counter()
    try:
        section = module.run(ctx)
    except Exception:  # the report must still be written and exit 1
        section = Section(study=module.NAME, title=getattr(module, "TITLE", module.NAME))
        section.declare("study completed", _STUDY_FAILED)
        section.check("study completed", 0.0, detail="the study raised; see the traceback below")
        section.notes.append(traceback.format_exc())
    else:
        missing = section.undecided()
        if missing:
            section.declare("study completed", _STUDY_FAILED)
            section.check("study completed", 0.0, detail=f"declared but never measured: {', '.join(missing)}")
    section.runtime_s = time.perf_counter() - start
    return section


def run_report(
    ctx: RunContext,
    out_dir: str | Path,
    *,
    only: Sequence[str] | None = None,
    progress: bool = True,
) -> dict:
    """Run the studies (all, or those named in ``only``) and write the report into ``out_dir``.

    Returns the results dictionary (also written to ``out_dir/results.json``); its
    ``"passed"`` entry is False when any check failed.
    """
    studies = discover_studies()
    if only:
        unknown = sorted(set(only) - set(studies))
        if unknown:
            raise ValueError(f"only: unknown stud{'y' if len(unknown) == 1 else 'ies'} {unknown}; available: {sorted(studies)}")
        studies = {name: studies[name] for name in only}
    start = time.perf_counter()
    sections = []
    bar = tqdm(studies.items(), desc="studies", unit="study", disable=not progress)
    for name, module in bar:
        bar.set_postfix_str(name)
        sections.append(run_study(module, ctx))
    return render_report(sections, out_dir, ctx, time.perf_counter() - start)


def plan_main(prog: str, sizes: type, run, argv: Sequence[str] | None = None) -> int:
    """``python -m PROG --size S --seed N --out DIR [--work DIR] [--threads N]``: one plan of a study as a report.

    ``sizes`` is the study's plan enum (values ``quick``, ``medium``, ``full``; QUICK runs in
    quick mode, the others in full mode) and ``run(ctx, size=...)`` the study. Prints each check
    and returns 0 when all pass, 1 otherwise.
    """
    import argparse

    from refsuite.report import Mode

    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=f"Run one plan of the {prog} study and write its HTML report to DIR.")
    parser.add_argument("--size", choices=[s.value for s in sizes], default="medium")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--work", metavar="DIR", default=None,
                        help="keep finished stages and checkpoints here; rerunning with the same DIR, plan and seed "
                             "resumes an interrupted run (studies that support it: registration)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads the study may use (default 1)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    size = sizes(args.size)
    ctx = RunContext(mode=Mode.QUICK if size.value == "quick" else Mode.FULL, seed=args.seed, device=args.device,
                     work_dir=args.work, threads=args.threads)
    t0 = time.perf_counter()
    section = run(ctx, size=size)
    render_report([section], args.out, ctx, time.perf_counter() - t0)
    for c in section.checks:
        print(f"{'PASS' if c.passed else 'FAIL'} {c.name}: {c.measured:.4g} {c.detail}")
    print(f"{time.perf_counter() - t0:.0f} s; report in {args.out}")
    return 0 if section.passed else 1
