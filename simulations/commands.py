"""``refsuite simulate``: run a simulation engine and write a GATE-style coincidence file.

Two ways to describe the simulation, one path to run it: a scenario TOML file
(``refsuite simulate SCENARIO.toml``, see :mod:`simulations.scenario`) that either engine
runs (``--engine builtin``, the vectorised MC, also spelled ``refsuite``; or ``--engine gate``,
GATE 10 via opengate, which needs the Geant4 data sets and stops with instructions when they
are missing), or options (scanner, phantom, misalignment, digitiser; built-in engine only),
from which :func:`scenario_from_options` builds the same :class:`~simulations.scenario.Scenario`.
Next to the events go the truth (scanner with its recorded misalignment, phantom) and the
blueprint (the nominal scanner): :func:`simulations.builtin.save_truth`.

``refsuite.cli`` imports this module only when ``simulate`` is the command being run (it sits
above refsuite: refsuite never imports ``simulations``); nothing heavy is imported at module
level, so ``refsuite simulate --help`` starts quickly.
"""

from __future__ import annotations

import argparse
import enum
import sys

from refsuite._cli_errors import count, nonnegative_int, one_line, positive_int
from refsuite.execution import add_execution_flags, check_execution, executor_from_args

__all__ = ["register", "Engine", "scenario_from_options"]

_PHANTOMS = ("points", "tube", "shell", "hotrod", "line", "cylinder")


class Engine(enum.Enum):
    """Simulation engines of ``refsuite simulate`` (``"builtin"`` is accepted for REFSUITE)."""

    REFSUITE = "refsuite"  #: built-in vectorised MC (refsuite.mc.simulate)
    GATE = "gate"  #: GATE 10 (opengate) from a scenario file (simulations.gate)

    @classmethod
    def _missing_(cls, value):
        return cls.REFSUITE if value == "builtin" else None


# options that describe the simulation and so cannot be combined with a scenario file
_SCENARIO_CONFLICTS = ("scanner", "binning", "phantom", "n_sources", "sigma_t_mm", "sigma_r_deg",
                       "group_misalignment", "ctr_ps", "energy_resolution", "energy_window", "acollinearity_deg",
                       "no_attenuation", "allow_overlap")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="simulate coincidences of a phantom in a (misaligned) scanner; write a ROOT or PETSIRD file",
        description="Simulate back-to-back 511 keV pairs and write coincidences with GATE 10 branch names "
                    "(mm, MeV, ns) to OUT, plus OUT's stem + .scanner.json and .phantom.json (the truth) and "
                    ".blueprint.json (the nominal scanner, without the drawn misalignment: the input of "
                    "`refsuite align --scanner`). "
                    "An OUT ending in .petsird or .bin (binary) or .ndjson (text) is written as a PETSIRD file "
                    "instead: the nominal scanner (before the drawn misalignment, as a real scanner's export "
                    "holds it) and the prompts as crystal ids, 25 ps TOF bins of t1 - t2 and 1 ms time blocks. "
                    "PETSIRD encodes each coincidence as a Python object: tens of microseconds per coincidence "
                    "(minutes per 1e7), written as the simulation runs (memory does not grow with the scan). "
                    "With a SCENARIO.toml the scenario defines scanner, phantom and digitiser; a sweep "
                    "scenario writes one OUT_<label>.root per run.",
    )
    p.add_argument("scenario", nargs="?", default=None,
                   help="scenario TOML file (simulations/scenarios/*.toml); replaces the description options")
    p.add_argument("--engine", choices=[*(e.value for e in Engine), "builtin"], default=Engine.REFSUITE.value,
                   help="simulation engine: builtin (= refsuite, default) or gate (needs a scenario)")
    p.add_argument("--threads", type=positive_int, default=1, help="Geant4 threads (--engine gate)")
    p.add_argument("--scanner", default="thull_sim", help="preset name or a scanner .json file (default thull_sim)")
    p.add_argument("--binning", default=None, help="thull_sim crystal binning, e.g. 2mm, 1mm, planar_2mm")
    p.add_argument("--phantom", default="points",
                   help=f"one of {', '.join(_PHANTOMS)} or a phantom .json file (default points)")
    p.add_argument("--n-sources", type=positive_int, default=10, help="point sources for points/tube (default 10)")
    p.add_argument("--sigma-t-mm", type=float, default=0.0, help="misalignment: translation sigma, mm")
    p.add_argument("--sigma-r-deg", type=float, default=0.0, help="misalignment: rotation sigma, degrees")
    p.add_argument("--group-misalignment", action="store_true", help="share the misalignment per scanner group")
    p.add_argument("--n-decays", type=count, default=None,
                   help="number of decays, e.g. 1e7 (required without a scenario; overrides its acquisition)")
    p.add_argument("--seed", type=nonnegative_int, default=12345, help="random seed (default 12345)")
    p.add_argument("--chunk-size", type=positive_int, default=2**16,  # = refsuite.mc.DEFAULT_CHUNK_SIZE (no numpy here)
                   help="decays per vectorised pass (does not change the events)")
    p.add_argument("--ctr-ps", type=float, default=250.0, help="coincidence time resolution FWHM, ps")
    p.add_argument("--energy-resolution", type=float, default=0.12, help="energy FWHM / 511 keV")
    p.add_argument("--energy-window", type=float, nargs=2, default=(450.0, 650.0), metavar=("LOW", "HIGH"),
                   help="energy window, keV")
    p.add_argument("--acollinearity-deg", type=float, default=0.0, help="acollinearity FWHM, degrees")
    p.add_argument("--no-attenuation", action="store_true", help="ignore attenuation in the phantom")
    p.add_argument("--allow-overlap", action="store_true",
                   help="accept interpenetrating blocks: draw the misalignment without the clearance rule and "
                        "simulate the overlap (each block counts the shared volume; GATE would reject it). "
                        "Default: misalignments keep blocks clear and an overlapping scanner is refused")
    p.add_argument("--out", required=True, help="output .root file, or .petsird / .bin / .ndjson for PETSIRD "
                                                "(not with a scenario file)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_execution_flags(p, what="the chunks of the built-in engine (a few per task; the same events; OUT is "
                                "written here)")
    p.set_defaults(func=_cmd_simulate, _defaults={k: p.get_default(k) for k in _SCENARIO_CONFLICTS})


def scenario_from_options(args: argparse.Namespace):
    """The :class:`~simulations.scenario.Scenario` described by the options of ``refsuite simulate``.

    ``--seed`` seeds the acquisition, the misalignment and random point-source positions;
    ``--phantom FILE.json`` becomes a ``kind = "file"`` phantom, a name one of the scenario
    phantoms with its defaults (``tube`` threads the sources in their drawn order).
    Raises ValueError (one line, naming the option) on an invalid combination.
    """
    from refsuite.geometry import PRESETS

    from .scenario import ScenarioError, scenario_from_dict

    if args.n_decays is None:
        raise ValueError("--n-decays is required without a scenario file")
    n = int(args.n_decays)  # a whole number >= 1 (argparse type)
    if args.scanner in PRESETS:
        opts = {"binning": args.binning} if args.binning and args.scanner == "thull_sim" else {}
        scanner = {"preset": args.scanner, "options": opts}
    else:
        scanner = {"file": args.scanner}
    if args.phantom not in _PHANTOMS:
        phantom = {"kind": "file", "path": args.phantom}
    elif args.phantom in ("points", "tube"):
        phantom = {"kind": args.phantom, "n_sources": args.n_sources, "seed": args.seed,
                   **({"order": "as_given"} if args.phantom == "tube" else {})}
    else:
        phantom = {"kind": args.phantom}
    d = {"name": "options", "scanner": scanner, "phantom": phantom, "attenuation": not args.no_attenuation,
         "source": {"acollinearity_fwhm_deg": args.acollinearity_deg},
         "acquisition": {"n_decays": n, "seed": args.seed},
         "digitizer": {"energy_resolution": args.energy_resolution, "ctr_ps": args.ctr_ps,
                       "energy_window_kev": tuple(args.energy_window)}}
    if args.sigma_t_mm or args.sigma_r_deg or args.allow_overlap:
        d["misalignment"] = {"seed": args.seed, "sigma_t_mm": args.sigma_t_mm, "sigma_r_deg": args.sigma_r_deg,
                             "groups": args.group_misalignment, "allow_overlaps": args.allow_overlap}
    try:
        return scenario_from_dict(d, source="options")
    except ScenarioError as exc:
        raise ValueError(one_line(exc, 1000)) from None


def _cmd_simulate(args: argparse.Namespace) -> int:
    """Validate everything (options or scenario file) before any work, then run each run."""
    from refsuite._cli_errors import output_file

    try:
        output_file(args.out, "--out", suffixes=(".root", ".petsird", ".bin", ".ndjson"))
        check_execution(args.workers, args.scheduler, names=("--workers", "--scheduler"))
        engine = Engine(args.engine)
        if engine is Engine.GATE and (args.workers is not None or args.scheduler is not None):
            raise ValueError("--workers/--scheduler apply to --engine builtin (GATE runs its own --threads)")
        options_form = args.scenario is None and engine is Engine.REFSUITE
        if options_form:
            runs = scenario_from_options(args).runs(overlap_hint="pass --allow-overlap to simulate it anyway")
            n = None  # in the scenario
        else:
            runs, n = _scenario_runs(args, engine)
        if engine is Engine.REFSUITE:
            _check_chunk_memory(args.chunk_size, max(n or run.n_decays for run in runs))
    except (ValueError, TypeError, OSError, RuntimeError) as exc:
        print(f"refsuite simulate: {one_line(exc, 1000)}", file=sys.stderr)
        return 2
    try:
        executor = executor_from_args(args)
    except ValueError as exc:
        print(f"refsuite simulate: {one_line(exc, 1000)}", file=sys.stderr)
        return 2
    with executor:
        return _run_all(args, runs, n, engine, options_form, executor)


#: peak memory of the built-in MC per decay of one vectorised pass, bytes: 283 measured with
#: ``/usr/bin/time -f %M`` (points phantom in thull_sim 4mm, chunk 2**16 vs 2**20), rounded up
_BYTES_PER_DECAY = 400


def _check_chunk_memory(chunk_size: int, n_decays: int) -> None:
    """Refuse a ``--chunk-size`` whose vectorised pass would not fit in memory (one pass holds
    ``min(chunk_size, n_decays)`` decays; the file is streamed, so n_decays alone never is)."""
    from refsuite._cli_errors import check_memory

    check_memory(min(int(chunk_size), int(n_decays)) * _BYTES_PER_DECAY, "--chunk-size", chunk_size,
                 f"one vectorised pass holds that many decays; the default {2**16} streams any n_decays")


def _run_all(args: argparse.Namespace, runs, n, engine: Engine, options_form: bool, executor) -> int:
    """Simulate every run of the command and print one line each (exit status 2 on a refused run)."""
    from pathlib import Path

    out = Path(args.out)
    for run in runs:
        path = run.output_path(out)
        try:
            if engine is Engine.GATE:
                from .gate import run_gate

                count = run_gate(run, path, threads=args.threads).n_events
                totals = {"coincidences": count}
            else:
                from .builtin import run_builtin

                totals = run_builtin(run, path, n_decays=n, chunk_size=args.chunk_size, progress=not args.no_progress,
                                     executor=executor)
        except (ValueError, TypeError, RuntimeError) as exc:
            print(f"refsuite simulate: {one_line(exc, 1000)}", file=sys.stderr)
            return 2
        stem = path.with_suffix("")
        if options_form:
            print(f"{totals.get('coincidences', 0)} coincidences from {run.n_decays} decays -> {path} "
                  f"(truth: {stem}.scanner.json, {stem}.phantom.json; blueprint: {stem}.blueprint.json)")
        else:
            print(f"{run.scenario.name}{' ' + run.label if run.label else ''}: {totals.get('coincidences', 0)} "
                  f"coincidences ({'gate' if engine is Engine.GATE else 'builtin'}) -> {path}")
    return 0


def _scenario_runs(args: argparse.Namespace, engine: Engine):
    """The runs of the scenario file and the ``--n-decays`` override (None: the scenario's)."""
    if args.scenario is None:
        raise ValueError("--engine gate needs a scenario file: refsuite simulate SCENARIO.toml --engine gate")
    from refsuite.io import petsird_suffix_format

    if petsird_suffix_format(args.out) is not None:
        raise ValueError(f"--out {args.out}: PETSIRD output is written without a scenario file (options "
                         "describe the simulation); scenarios write ROOT files")
    changed = [k for k, v in args._defaults.items() if getattr(args, k) != v]
    if changed:
        raise ValueError("options " + ", ".join("--" + k.replace("_", "-") for k in changed)
                         + " describe the simulation and cannot be combined with a scenario file")
    n = None
    if args.n_decays is not None:
        n = int(args.n_decays)  # a whole number >= 1 (argparse type)
    from .scenario import load_scenario

    runs = load_scenario(args.scenario).runs()  # validated before any work
    if engine is Engine.GATE:
        from refsuite.capabilities import require

        require("opengate", "--engine gate")
        require("geant4_data", "--engine gate")
        if n is not None:
            raise ValueError("--n-decays applies to --engine builtin; GATE runs the scenario's acquisition time")
    return runs, n
