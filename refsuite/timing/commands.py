"""``refsuite timing simulate | calibrate | apply | evaluate`` on list-mode ``.npz`` files.

Only argparse code at import; the solvers are imported inside the handlers. Every handler
checks its input files and output location first (:mod:`refsuite._cli_errors`); a bad input
is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib

from refsuite._cli_errors import (
    UsageError, check_memory, count, device, finite_float, input_file, nonnegative_int, one_line, output_file,
    positive_float, positive_int, reading, require_device,
)
from refsuite.execution import add_execution_flags, check_execution, executor_from_args

__all__ = ["register"]

_EVENTS = "a timing list-mode .npz (time_ps, energy_au, source_mm)"
_MODEL = "a timing model from 'refsuite timing calibrate' (.json or .ubj)"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "timing", help="residual-physics TOF timing calibration of a detector pair",
        description="Simulate a light-sharing detector pair, calibrate its timing (analytic skews + explicit "
                    "or implicit XGBoost correction), apply a calibration, evaluate it three-fold.")
    sub = p.add_subparsers(dest="timing_command", required=True, metavar="ACTION")

    s = sub.add_parser("simulate", help="simulate coincidences of a 22Na source (events + truth .npz)")
    s.add_argument("--out", required=True, help="output list-mode file (.npz)")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--axial-step-mm", type=positive_float, help="sources along the axis, -150...150 mm in this step")
    g.add_argument("--grid", type=positive_int, help="k x k in-plane source grid at --z-mm")
    g.add_argument("--z-mm", type=finite_float, nargs="+", help="explicit axial source positions (mm)")
    s.add_argument("--grid-z-mm", type=finite_float, default=0.0, help="axial position of --grid (mm, default 0)")
    s.add_argument("--n-per-position", type=count, required=True,
                   help="coincidences per source position (memory grows with it; refused if it would not fit)")
    s.add_argument("--seed", type=nonnegative_int, default=0, help="event seed (default 0)")
    s.add_argument("--detector-seed", type=nonnegative_int, default=0,
                   help="seed of the per-channel constants (default 0)")
    s.set_defaults(func=_simulate)

    c = sub.add_parser("calibrate", help="analytic skew calibration + GBDT correction -> model file")
    c.add_argument("events", help="labelled calibration coincidences (.npz)")
    c.add_argument("--out", required=True, help="model file (.json or .ubj)")
    c.add_argument("--kind", choices=("explicit", "implicit"), default="explicit")
    c.add_argument("--max-depth", type=positive_int, default=8)
    c.add_argument("--n-estimators", type=positive_int, default=400)
    c.add_argument("--learning-rate", type=positive_float, default=0.1)
    c.add_argument("--skew-method", choices=("least_squares", "l1"), default="least_squares")
    c.add_argument("--skew-events", help="separate coincidences for the analytic step (.npz)")
    c.add_argument("--device", type=device, default=None, help="cpu or cuda (default: cuda when available)")
    c.add_argument("--seed", type=nonnegative_int, default=0)
    add_execution_flags(c, what="the training (xgboost.dask over the workers from 1e6 calibration rows)")
    c.set_defaults(func=_calibrate)

    a = sub.add_parser("apply", help="add corrected time differences (dt_corrected_ps) to a list-mode file")
    a.add_argument("model", help="model file from 'calibrate'")
    a.add_argument("events", help="coincidences (.npz)")
    a.add_argument("--out", required=True, help="output list-mode file (.npz)")
    a.add_argument("--device", type=device, default=None)
    a.set_defaults(func=_apply)

    e = sub.add_parser("evaluate", help="three-fold evaluation (MAE, linearity, CTR) on labelled test data")
    e.add_argument("model", help="model file, or 'analytic:<events.npz>' to evaluate the skew calibration alone")
    e.add_argument("events", help="test coincidences at >= 3 axial positions (.npz)")
    e.add_argument("--json", help="write the numbers to this file")
    e.add_argument("--central-range-mm", type=finite_float, nargs=2, help="restrict the linearity fit (mm)")
    e.add_argument("--device", type=device, default=None)
    e.set_defaults(func=_evaluate)


def _load_events(path, flag: str):
    """Events of ``path``; every coincidence needs a triggered channel (finite time and
    energy; untriggered channels are NaN) in both detectors and a finite source position."""
    import numpy as np

    from refsuite import timing as T

    input_file(path, flag, _EVENTS)
    with reading(path, flag, _EVENTS):
        events = T.load_events(path)
    t, e = np.asarray(events["time_ps"], float), np.asarray(events["energy_au"], float)
    if np.isinf(t).any() or np.isinf(e).any():
        raise UsageError(f"{flag} {str(path)!r}: time_ps/energy_au hold infinite values (expected finite, "
                         "NaN for channels that did not trigger)")
    dead = ~(np.isfinite(t) & np.isfinite(e)).any(axis=-1).all(axis=-1)
    if dead.any():
        raise UsageError(f"{flag} {str(path)!r}: {int(dead.sum())} of {len(dead)} coincidences have no triggered "
                         "channel (all NaN) in a detector; expected >= 1 finite time_ps and energy_au per detector")
    if not np.isfinite(np.asarray(events["source_mm"], float)).all():
        raise UsageError(f"{flag} {str(path)!r}: source_mm holds NaN or infinite values (expected mm)")
    return events


@contextlib.contextmanager
def _about(flag: str, path):
    """A ValueError of the library on these events becomes one line naming the file (exit 2)."""
    try:
        yield
    except ValueError as exc:
        raise UsageError(f"{flag} {path}: {one_line(exc, 500)}") from None


def _load_model(path, flag: str = "MODEL"):
    from refsuite import timing as T

    input_file(path, flag, _MODEL)
    with reading(path, flag, _MODEL):
        return T.load_model(path)


def _bytes_per_event() -> float:
    """Peak memory per simulated coincidence: columns + truth of a small run, times 3
    (the per-chunk parts, their concatenation and the compressed writer's buffers)."""
    import numpy as np

    from refsuite import timing as T

    n = 256
    events, truth = T.simulate_detector_pair(source_positions_mm=[0.0], n_per_position=n, seed=0)
    arrays = [*events.values(), *(v for v in truth.values() if isinstance(v, np.ndarray) and v.shape[:1] == (n,))]
    return 3.0 * sum(np.asarray(a).nbytes for a in arrays) / n


def _simulate(args: argparse.Namespace) -> int:
    from refsuite import timing as T

    output_file(args.out, "--out", suffixes=(".npz",))
    if args.axial_step_mm is not None:
        if 300.0 / args.axial_step_mm > 10_000:
            raise UsageError(f"--axial-step-mm {args.axial_step_mm}: expected at least 0.03 mm "
                             "(at most 10000 positions over -150...150 mm)")
        pos = T.axial_positions(args.axial_step_mm)
    elif args.grid is not None:
        if args.grid > 1000:
            raise UsageError(f"--grid {args.grid}: expected at most 1000 (a k x k grid of source positions)")
        pos = T.in_plane_grid(args.grid, z_mm=args.grid_z_mm)
    else:
        pos = args.z_mm
    n_total = len(pos) * args.n_per_position
    check_memory(n_total * _bytes_per_event(), "--n-per-position", args.n_per_position,
                 f"{len(pos)} positions x {args.n_per_position} coincidences; simulate fewer per run "
                 "(different --seed) and combine the files")
    events, truth = T.simulate_detector_pair(source_positions_mm=pos, n_per_position=args.n_per_position,
                                             seed=args.seed, detector_seed=args.detector_seed)
    T.save_events(args.out, events, truth)
    print(f"{len(events['source_mm'])} coincidences -> {args.out}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from refsuite import timing as T

    check_execution(args.workers, args.scheduler, names=("--workers", "--scheduler"))
    require_device(args.device)
    output_file(args.out, "--out", suffixes=(".json", ".ubj"))
    events = _load_events(args.events, "EVENTS")
    skew_events = _load_events(args.skew_events, "--skew-events") if args.skew_events else None
    with executor_from_args(args) as ex, _about("EVENTS", args.events):
        model = T.calibrate(events, kind=args.kind, max_depth=args.max_depth, skew_method=args.skew_method,
                            skew_events=skew_events, n_estimators=args.n_estimators,
                            learning_rate=args.learning_rate, device=args.device, seed=args.seed, executor=ex)
    T.save_model(model, args.out)
    print(f"{model.kind.value} model, {model.n_trees} trees -> {args.out}")
    return 0


def _apply(args: argparse.Namespace) -> int:
    import numpy as np

    from refsuite import timing as T

    require_device(args.device)
    output_file(args.out, "--out", suffixes=(".npz",))
    model = _load_model(args.model)
    events = _load_events(args.events, "EVENTS")
    out = dict(events)
    out["dt_corrected_ps"] = T.apply_correction(model, events, device=args.device)
    if model.kind is T.CorrectionKind.EXPLICIT:
        out["correction_ps"] = T.predict_correction(model, events, device=args.device)
    out["cluster_time_ps"] = T.cluster_times(events, model.offsets_ps)
    T.save_events(args.out, out)
    print(f"{len(np.asarray(events['source_mm']))} coincidences corrected -> {args.out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from refsuite import timing as T

    require_device(args.device)
    if args.json:
        output_file(args.json, "--json")
    if args.central_range_mm is not None and not args.central_range_mm[0] < args.central_range_mm[1]:
        raise UsageError(f"--central-range-mm {args.central_range_mm[0]} {args.central_range_mm[1]}: "
                         "expected LOW < HIGH (mm)")
    if args.model.startswith("analytic:"):
        model = T.skew_calibration(_load_events(args.model[len("analytic:"):], "MODEL (analytic:EVENTS)"))
    else:
        model = _load_model(args.model)
    events = _load_events(args.events, "EVENTS")
    if args.central_range_mm is not None:
        import numpy as np

        lo, hi = args.central_range_mm
        z = np.unique(np.asarray(events["source_mm"]))
        inside = int(((z >= lo) & (z <= hi)).sum())
        if inside < 3:
            raise UsageError(f"--central-range-mm {lo:g} {hi:g}: holds {inside} of the {z.size} source positions of "
                             f"{args.events} ({z.min():g} ... {z.max():g} mm); the linearity fit needs >= 3")
    with _about("EVENTS", args.events):
        ev = T.evaluate_timing(model, events, central_range_mm=args.central_range_mm, gate=False, device=args.device)
    lin, ctr = ev.linearity, ev.ctr
    print(f"model: {ev.kind}; levels passed: {ev.passed}")
    print(f"weighted MAE {ev.mae['weighted_mae_ps']:.1f} ps (dummy {ev.mae['weighted_dummy_mae_ps']:.1f} ps)")
    print(f"linearity: slope {lin['slope']:.4f} +- {lin['slope_err']:.4f} ps/mm (2/c {lin['expected_slope']:.4f}), "
          f"chi2_red {lin['chi2_red']:.2f}, p {lin['p_value']:.3g}, n_sigma {lin['n_sigma']:.2f}")
    print(f"CTR iso 430-590 keV {ctr['iso_photopeak'].fwhm:.1f} +- {ctr['iso_photopeak'].fwhm_err:.1f} ps, "
          f"300-700 keV {ctr['iso_wide'].fwhm:.1f} ps, mean along axis {ctr['axis_mean_ctr_ps']:.1f} ps")
    if args.json:
        from refsuite.io.atomic import atomic_write_text
        from refsuite.io.jsonsafe import dumps_strict

        doc = {"label": ev.label, "kind": ev.kind, "passed": ev.passed, "mae": ev.mae, "linearity": lin, "ctr": ctr}
        atomic_write_text(args.json, dumps_strict(doc, indent=1))
    return 0
