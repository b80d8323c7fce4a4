"""The ``refsuite`` command.

``refsuite report`` runs the validation studies (package :mod:`validation`, imported
lazily so that the library never depends on it) and writes the HTML report.

Solver sub-packages add their own sub-commands: ``refsuite/<pkg>/commands.py`` defines
``register(subparsers)``, and :data:`COMMANDS` names the command and its package. Only the
package of the command being run is imported (importing a package runs its ``__init__``,
which for the solvers means torch, MONAI or xgboost: seconds per package), so
``refsuite --help`` and each command start quickly (the solver packages export lazily).

Errors take one path (:mod:`refsuite._cli_errors`): each command checks its inputs and output
location before any work and raises ``UsageError`` (or the library's ``ValueError``/``TypeError``/
``OSError``); :func:`main` prints one line on stderr and returns 2. Failed checks return 1.
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Sequence

from refsuite._cli_errors import CliParser, UsageError, device, one_line
from refsuite.execution import add_execution_flags

__all__ = ["main", "build_parser"]


def _cmd_report(args: argparse.Namespace) -> int:
    from refsuite.execution import Executor, check_execution
    from refsuite.report import Mode, RunContext
    from validation import _runner as r

    try:  # every flag is checked before any study runs (a cluster is started or reached last)
        seeds = None if args.seeds is None else r.parse_seeds(args.seeds, name="--seeds")
        if seeds is not None and args.results_md is not None:
            raise ValueError("--results-md is for a report of one seed; a --seeds sweep writes DIR/seeds.md")
        r.check_seed(args.seed, name="--seed")
        r.check_device(args.device, name="--device")
        r.check_output_dir(args.out, name="--out")
        if args.results_md is not None:
            r.check_output_file(args.results_md, name="--results-md")
        check_execution(args.workers, args.scheduler, names=("--workers", "--scheduler"))
        only = r.select_studies(args.only, list(r.discover_studies()), name="--only")  # imports the studies: last
        ctx = RunContext(mode=Mode.FULL if args.full else Mode.QUICK, seed=args.seed, device=args.device)
        with Executor(workers=args.workers, scheduler=args.scheduler, names=("--workers", "--scheduler")) as ex:
            if seeds is not None:
                return _print_sweep(r.run_seed_sweep(ctx, args.out, seeds, only=only, progress=not args.no_progress,
                                                     executor=ex), args.out)
            results = r.run_report(ctx, args.out, only=only, progress=not args.no_progress,
                                   results_md=args.results_md, executor=ex)
    except ValueError as exc:
        print(f"refsuite report: {exc}", file=sys.stderr)
        return 2
    return _print_results(results, args.out)


def _print_results(results: dict, out: str) -> int:
    from refsuite.report.render import value_text

    shown = f", {results['n_shown']} shown only" if results["n_shown"] else ""
    print(
        f"{results['n_passed']}/{results['n_checks']} judged checks passed "
        f"({results['n_failed']} failed{shown}) in {results['runtime_s']:.1f} s; report: {out}/index.html"
    )
    for c in results["checks"]:
        if c["status"] == "fail":
            measured = value_text(c["measured"], c["unit"], c.get("measured_reason"))
            print(f"  FAIL {c['study']}: {c['name']}: measured {measured} ({c['tolerance']['text']})")
    return 0 if results["passed"] else 1


def _print_sweep(summary: dict, out: str) -> int:
    """One line per check: criterion met in k of n seeds. Exit 0: the sweep ran (it judges nothing itself)."""
    n = len(summary["seeds"])
    for c in summary["checks"]:
        flag = "" if c["judged"] else " (shown)"
        print(f"{c['met']:>3}/{c['n']} {c['study']}: {c['name']}{flag}")
    print(f"{n} seeds; reports: {out}/seed-N/index.html; summary: {out}/seeds.md")
    return 0


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; the sub-parser of ``command`` (if any) is built in full."""
    parser = CliParser(
        prog="refsuite",
        description="Analytic and simulation reference suite for PET and quantitative SPECT. "
        "Exit status: 0 success, 1 a check failed (or an unexpected error), 2 a bad input.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error (may also follow the command)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rep = sub.add_parser(
        "report",
        help="run the validation studies and write the HTML report",
        description="Run the validation studies and write DIR/index.html (failed checks first), one page "
        "per study, DIR/results.json and DIR/results.md (the key numbers as Markdown). With --only, the "
        "studies run are merged into the report already in DIR; the others keep their results and pages. "
        "Exit status 1 when a judged check fails, 2 for a bad flag (checked before any study runs).",
    )
    size = rep.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller runs of the same code (default)")
    size.add_argument("--full", action="store_true", help="the papers' scale (long)")
    rep.add_argument("--only", action="append", metavar="STUDY",
                     help="run only this study (repeat or comma-separate) and merge it into the report in DIR")
    seed = rep.add_mutually_exclusive_group()
    seed.add_argument("--seed", type=int, default=12345, help="random seed of every simulation, >= 0 (default 12345)")
    rep.add_argument("--device", type=device, default="cpu", help="torch device for solvers: cpu, cuda or cuda:N (default cpu)")
    rep.add_argument("--out", default="reports", metavar="DIR", help="output directory (default reports)")
    rep.add_argument("--results-md", metavar="FILE", default=None,
                     help="also write DIR/results.md to FILE, e.g. docs/results.md (what `make report` does)")
    seed.add_argument("--seeds", metavar="SEEDS", default=None,
                     help="a seed sweep instead of one seed, e.g. 1-10 or 1,4,7: each seed's report in DIR/seed-N/ "
                          "as soon as it is done, and DIR/seeds.md / seeds.json: per check, in how many seeds its "
                          "criterion was met; the same command resumes an interrupted sweep (DIR/sweep.json)")
    add_execution_flags(rep, what="the studies (as tasks; the report is written here)")
    rep.add_argument("--no-progress", action="store_true", help="hide progress bars")
    rep.set_defaults(func=_cmd_report)
    for name, (pkg, summary) in COMMANDS.items():
        if not (Path(__file__).parent / pkg / "commands.py").is_file():
            continue  # that solver has not landed in this checkout
        if name == command:
            importlib.import_module(f"refsuite.{pkg}.commands").register(sub)
        else:  # listed in --help without importing its package
            sub.add_parser(name, help=summary, add_help=False)
    # simulate lives with the scenarios (package simulations, above refsuite): reached lazily, as report reaches validation
    if command == "simulate":
        importlib.import_module("simulations.commands").register(sub)
    else:
        sub.add_parser("simulate", help=SIMULATE_SUMMARY, add_help=False)
    return parser


# command -> (sub-package holding commands.py, one-line summary for `refsuite --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "recon": ("recon", "list-mode OSEM reconstruction"),
    "align": ("alignment", "maximum-likelihood detector alignment from list-mode data"),
    "timing": ("timing", "residual-physics TOF timing calibration of a detector pair"),
    "pvc": ("pvc", "177Lu SPECT partial-volume correction: dataset, training, correction, evaluation"),
    "register": ("registration", "deformable PET registration with CT-guided regularisation"),
    "acceptance": ("acceptance", "acceptance tests of a scanner after a hardware change"),
}
SIMULATE_SUMMARY = "simulate coincidences of a scenario or phantom (built-in MC or GATE 10); ROOT output"


def _command_of(argv: Sequence[str]) -> str | None:
    """The sub-command named in ``argv`` (the first word that is not an option)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return None


def _prefix(args: argparse.Namespace) -> str:
    """``refsuite COMMAND [ACTION]`` of the parsed arguments, for one-line messages."""
    words = ["refsuite", str(getattr(args, "command", "") or "")]
    words += [v for k, v in sorted(vars(args).items()) if k.endswith("_command") and isinstance(v, str)]
    return " ".join(w for w in words if w)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 1 failed checks or an unexpected error, 2 bad input).

    A bad input (:class:`~refsuite._cli_errors.UsageError`, and the ``ValueError``,
    ``TypeError`` and ``OSError`` the library raises for bad arguments or files) is one line
    on stderr; any other error is one line too, with exit status 1. ``--debug`` (anywhere on
    the command line) re-raises instead, showing the traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        args = build_parser(_command_of(argv)).parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed as one line
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    prefix = _prefix(args)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    except (UsageError, ValueError, TypeError, OSError) as exc:
        if debug:
            raise
        print(f"{prefix}: {one_line(exc, 1000)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 (one line, not a traceback; --debug shows it)
        if debug:
            raise
        print(f"{prefix}: error: {one_line(f'{type(exc).__name__}: {exc}', 1000)} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
