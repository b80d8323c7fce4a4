"""The ``refsuite`` command.

``refsuite report`` runs the validation studies (package :mod:`validation`, imported
lazily so that the library never depends on it) and writes the HTML report.

Solver sub-packages add their own sub-commands: a module ``refsuite/<pkg>/commands.py``
defining ``register(subparsers)`` is picked up automatically. Those modules import only
argparse-level code at the top; the heavy work is imported inside the command handler.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import Sequence

__all__ = ["main", "build_parser"]


def _cmd_report(args: argparse.Namespace) -> int:
    from refsuite.report import Mode, RunContext
    from validation import run_report

    ctx = RunContext(mode=Mode.FULL if args.full else Mode.QUICK, seed=args.seed, device=args.device)
    only = [s for item in (args.only or []) for s in item.split(",") if s]
    try:
        results = run_report(ctx, args.out, only=only or None, progress=not args.no_progress)
    except ValueError as exc:
        print(f"refsuite report: {exc}", file=sys.stderr)
        return 2
    n_fail = results["n_checks"] - results["n_passed"]
    print(
        f"{results['n_passed']}/{results['n_checks']} checks passed "
        f"({n_fail} failed) in {results['runtime_s']:.1f} s; report: {args.out}/index.html"
    )
    for c in results["checks"]:
        if not c["passed"]:
            print(f"  FAIL {c['study']}: {c['name']}: measured {c['measured']} ({c['tolerance']['text']})")
    return 0 if results["passed"] else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refsuite",
        description="Analytic and simulation reference suite for PET and quantitative SPECT.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rep = sub.add_parser(
        "report",
        help="run the validation studies and write the HTML report",
        description="Run the validation studies and write DIR/index.html, one page per study "
        "and DIR/results.json. Exit status 1 when any check fails.",
    )
    size = rep.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller runs of the same code (default)")
    size.add_argument("--full", action="store_true", help="the papers' scale (long)")
    rep.add_argument("--only", action="append", metavar="STUDY", help="run only this study (repeat or comma-separate)")
    rep.add_argument("--seed", type=int, default=12345, help="random seed of every simulation (default 12345)")
    rep.add_argument("--device", default="cpu", help="torch device for solvers, e.g. cpu or cuda (default cpu)")
    rep.add_argument("--out", default="reports", metavar="DIR", help="output directory (default reports)")
    rep.add_argument("--no-progress", action="store_true", help="hide progress bars")
    rep.set_defaults(func=_cmd_report)
    for pkg in _COMMAND_PACKAGES:
        name = f"refsuite.{pkg}.commands"
        if importlib.util.find_spec(f"refsuite.{pkg}") and importlib.util.find_spec(name):
            importlib.import_module(name).register(sub)
    return parser


# Sub-packages that may contribute sub-commands, in the order shown by --help.
_COMMAND_PACKAGES = ("mc", "alignment", "timing", "pvc", "registration", "acceptance", "geometry", "recon")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
