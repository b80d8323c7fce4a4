"""``refsuite acceptance PLAN.toml --out DIR [--baseline FILE]`` and ``--write-demo DIR``.

Only argparse code at import; the checks are imported inside the handler.
"""

from __future__ import annotations

import argparse

from refsuite._cli_errors import UsageError, device, input_file, nonnegative_int, output_dir, require_device
from refsuite.execution import add_execution_flags, check_execution, executor_from_args

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "acceptance", help="acceptance tests of a scanner after a hardware change",
        description="Run the checks of an acceptance plan (TOML: blueprint, calibration scans, a tolerance with its "
                    "unit per check) and write DIR/index.html and DIR/results.json (the next baseline). Exit status "
                    "0: every check passed; 1: a check failed (a scan that cannot be read fails its check); "
                    "2: bad plan or baseline. "
                    "`--write-demo DIR` writes the shipped demonstration (built-in MC scans of thull_sim before and "
                    "after a module swap, with their plans).",
        epilog="example: refsuite acceptance --write-demo demo && refsuite acceptance demo/baseline/plan.toml "
               "--out acc/baseline && refsuite acceptance demo/b/plan.toml --out acc/b "
               "--baseline acc/baseline/results.json")
    p.add_argument("plan", nargs="?", help="acceptance plan (.toml)")
    p.add_argument("--out", metavar="DIR", help="output folder (index.html, results.json, accepted_geometry.json)")
    p.add_argument("--baseline", metavar="FILE", help="results.json of the last accepted state")
    p.add_argument("--device", type=device, default=None,
                   help="torch device of the alignment (default cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--write-demo", metavar="DIR", help="write the demonstration scans and plans into DIR and exit")
    p.add_argument("--full", action="store_true", help="with --write-demo: the papers' scan sizes (long)")
    p.add_argument("--seed", type=nonnegative_int, default=2026, help="with --write-demo: random seed (default 2026)")
    p.add_argument("--scan-format", choices=("npz", "petsird"), default="npz",
                   help="with --write-demo: scans as refsuite .npz (default) or PETSIRD files (slower to write)")
    add_execution_flags(p, what="the --write-demo scans")
    p.set_defaults(func=_cmd_acceptance)


def _cmd_acceptance(args: argparse.Namespace) -> int:
    require_device(args.device)
    if args.write_demo:
        return _write_demo(args)
    if not args.plan or not args.out:
        raise UsageError("needs PLAN and --out DIR (or --write-demo DIR)")
    from .plan import PlanError, load_plan
    from .runner import BaselineError, load_baseline, run_acceptance

    input_file(args.plan, "PLAN", "an acceptance plan (.toml)")
    output_dir(args.out, "--out")
    try:
        plan = load_plan(args.plan)
        if args.baseline:
            input_file(args.baseline, "--baseline", "the results.json of an accepted run")
            load_baseline(args.baseline)  # fail before any work
    except (PlanError, BaselineError) as exc:
        raise UsageError(str(exc)) from exc
    run = run_acceptance(plan, out_dir=args.out, baseline=args.baseline, device=args.device,
                         progress=not args.no_progress)
    for r in run.results:
        print(("PASS " if r.passed else "FAIL ") + r.summary())
    print(f"{'ACCEPTED' if run.passed else 'NOT ACCEPTED'} ({len(run.results) - len(run.failed)}/{len(run.results)} "
          f"checks passed) in {run.seconds:.0f} s; report: {run.files['html']}")
    return 0 if run.passed else 1


def _write_demo(args: argparse.Namespace) -> int:
    """Write the demo; a folder this call created is removed again if it fails (no partial demo)."""
    import shutil
    from pathlib import Path

    from .demo import FULL, QUICK, write_demo

    out = output_dir(args.write_demo, "--write-demo")
    check_execution(args.workers, args.scheduler, names=("--workers", "--scheduler"))
    created = next((p for p in reversed([out, *out.parents]) if not p.exists()), None)
    try:
        with executor_from_args(args) as ex:
            plans = write_demo(out, sizes=FULL if args.full else QUICK, seed=args.seed, executor=ex,
                               progress=not args.no_progress, scan_format=args.scan_format)
    except BaseException:
        if created is not None:
            shutil.rmtree(Path(created), ignore_errors=True)
        raise
    for name, path in plans.items():
        print(f"{name}: {path}")
    return 0
