"""``refsuite simulate``: run a simulation engine and write a GATE-style coincidence file.

Two ways to describe the simulation: options (scanner, phantom, misalignment, digitiser;
built-in engine only), or a scenario TOML file (``refsuite simulate SCENARIO.toml``, see
:mod:`simulations.scenario`) that either engine runs: ``--engine builtin`` (the vectorised
MC, also spelled ``refsuite``) or ``--engine gate`` (GATE 10 via opengate, which needs the
Geant4 data sets and stops with instructions when they are missing). The truth (scanner with
its recorded misalignment, phantom) is written next to the events. ``simulations`` is
imported lazily (refsuite never imports it at module level).
"""

from __future__ import annotations

import argparse
import enum
import sys

__all__ = ["register", "Engine"]

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
                    "(mm, MeV, ns) to OUT, plus OUT's stem + .scanner.json and .phantom.json (the truth). "
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
    p.add_argument("--threads", type=int, default=1, help="Geant4 threads (--engine gate)")
    p.add_argument("--scanner", default="thull_sim", help="preset name or a scanner .json file (default thull_sim)")
    p.add_argument("--binning", default=None, help="thull_sim crystal binning, e.g. 2mm, 1mm, planar_2mm")
    p.add_argument("--phantom", default="points",
                   help=f"one of {', '.join(_PHANTOMS)} or a phantom .json file (default points)")
    p.add_argument("--n-sources", type=int, default=10, help="point sources for points/tube (default 10)")
    p.add_argument("--sigma-t-mm", type=float, default=0.0, help="misalignment: translation sigma, mm")
    p.add_argument("--sigma-r-deg", type=float, default=0.0, help="misalignment: rotation sigma, degrees")
    p.add_argument("--group-misalignment", action="store_true", help="share the misalignment per scanner group")
    p.add_argument("--n-decays", type=float, default=None,
                   help="number of decays, e.g. 1e7 (required without a scenario; overrides its acquisition)")
    p.add_argument("--seed", type=int, default=12345, help="random seed (default 12345)")
    p.add_argument("--chunk-size", type=int, default=2**16,  # = refsuite.mc.DEFAULT_CHUNK_SIZE (no numpy here)
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
    p.set_defaults(func=_cmd_simulate, _defaults={k: p.get_default(k) for k in _SCENARIO_CONFLICTS})


def _scanner(args):
    from refsuite.geometry import PRESETS, Scanner, preset

    if args.scanner in PRESETS:
        opts = {"binning": args.binning} if args.binning and args.scanner == "thull_sim" else {}
        return preset(args.scanner, **opts)
    return Scanner.load(args.scanner)


def _phantom(args, rng):
    from refsuite import phantoms as ph

    if args.phantom not in _PHANTOMS:
        return ph.load_phantom(args.phantom)
    if args.phantom in ("points", "tube"):
        pts = ph.PointSources.random(args.n_sources, rng=rng)
        return pts if args.phantom == "points" else ph.Tube(pts.centres_mm)
    return {"shell": ph.CylindricalShell, "hotrod": ph.HotRod, "line": ph.LineSource,
            "cylinder": ph.UniformCylinder}[args.phantom]()


def _cmd_simulate(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from refsuite.geometry import check_block_clearance, perturb
    from refsuite.io import CoincidenceWriter, PetsirdWriter, petsird_suffix_format
    from refsuite.mc import iter_simulate

    if args.scenario is not None or args.engine == Engine.GATE.value:
        return _cmd_scenario(args)
    petsird_fmt = petsird_suffix_format(args.out)
    try:
        engine = Engine(args.engine)
        if args.n_decays is None:
            raise ValueError("--n-decays is required without a scenario file")
        scanner = nominal = _scanner(args)
        rng = np.random.default_rng(args.seed)
        phantom = _phantom(args, rng)
        if args.sigma_t_mm or args.sigma_r_deg:
            scanner = perturb(scanner, sigma_t_mm=args.sigma_t_mm, sigma_r_deg=args.sigma_r_deg,
                              groups=True if args.group_misalignment else None, rng=rng,
                              min_clearance_mm=None if args.allow_overlap else 0.0)
        if not args.allow_overlap:
            check_block_clearance(scanner, hint="pass --allow-overlap to simulate it anyway")
        n = int(args.n_decays)
        if n != args.n_decays:
            raise ValueError(f"--n-decays must be an integer, got {args.n_decays}")
        out = Path(args.out)
        # the header scanner is the nominal one, the truth goes beside it; the TOF bins cover
        # iter_simulate's coincidence window (its default, 5 ns)
        writer = CoincidenceWriter(out) if petsird_fmt is None else PetsirdWriter(
            out, nominal, format=petsird_fmt, ctr_ps=args.ctr_ps, energy_resolution=args.energy_resolution,
            energy_window_kev=tuple(args.energy_window), coincidence_window_ps=5000.0)
    except (ValueError, TypeError, OSError) as exc:
        print(f"refsuite simulate: {exc}", file=sys.stderr)
        return 2
    stem = out.with_suffix("")
    kw = dict(n_decays=n, seed=args.seed, chunk_size=args.chunk_size, acollinearity_fwhm_deg=args.acollinearity_deg,
              attenuation=not args.no_attenuation, energy_resolution=args.energy_resolution,
              energy_window_kev=tuple(args.energy_window), ctr_ps=args.ctr_ps, progress=not args.no_progress,
              allow_overlap=args.allow_overlap)
    totals: dict = {}
    try:
        with writer as w:
            if engine is Engine.REFSUITE:
                for cols, counts in iter_simulate(scanner, phantom, **kw):
                    w.write(cols)
                    for k, v in counts.items():
                        totals[k] = totals.get(k, 0) + v
            if petsird_fmt is None:  # PETSIRD has no place for them: the truth files hold the run
                w.attrs.update({"engine": engine.value, **{k: v for k, v in kw.items() if k != "progress"},
                                "counts": totals, "scanner_file": f"{stem.name}.scanner.json",
                                "phantom_file": f"{stem.name}.phantom.json"})
    except (ValueError, TypeError) as exc:
        print(f"refsuite simulate: {exc}", file=sys.stderr)
        return 2
    scanner.save(f"{stem}.scanner.json")
    phantom.save(f"{stem}.phantom.json")
    print(f"{totals.get('coincidences', 0)} coincidences from {n} decays -> {out} "
          f"(truth: {stem}.scanner.json, {stem}.phantom.json)")
    return 0


def _cmd_scenario(args: argparse.Namespace) -> int:
    from pathlib import Path

    try:
        engine = Engine(args.engine)
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
            n = int(args.n_decays)
            if n != args.n_decays or n < 1:
                raise ValueError(f"--n-decays must be a positive integer, got {args.n_decays}")
        from simulations.scenario import load_scenario

        runs = load_scenario(args.scenario).runs()  # validated before any work
        if engine is Engine.GATE:
            from refsuite.capabilities import require

            require("opengate", "--engine gate")
            require("geant4_data", "--engine gate")
            if n is not None:
                raise ValueError("--n-decays applies to --engine builtin; GATE runs the scenario's acquisition time")
    except (ValueError, TypeError, OSError, RuntimeError) as exc:
        print(f"refsuite simulate: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    for run in runs:
        path = run.output_path(out)
        try:
            if engine is Engine.GATE:
                from simulations.gate import run_gate

                events = run_gate(run, path, threads=args.threads)
                count = events.n_events
            else:
                from simulations.builtin import run_builtin

                count = run_builtin(run, path, n_decays=n, chunk_size=args.chunk_size,
                                    progress=not args.no_progress).get("coincidences", 0)
        except (ValueError, TypeError, RuntimeError) as exc:
            print(f"refsuite simulate: {exc}", file=sys.stderr)
            return 2
        label = "gate" if engine is Engine.GATE else "builtin"
        print(f"{run.scenario.name}{' ' + run.label if run.label else ''}: {count} coincidences ({label}) "
              f"-> {path}")
    return 0
