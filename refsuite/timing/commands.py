"""``refsuite timing simulate | calibrate | apply | evaluate`` on list-mode ``.npz`` files.

Only argparse code at import; the solvers are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "timing", help="residual-physics TOF timing calibration of a detector pair",
        description="Simulate a light-sharing detector pair, calibrate its timing (analytic skews + explicit "
                    "or implicit XGBoost correction), apply a calibration, evaluate it three-fold.")
    sub = p.add_subparsers(dest="timing_command", required=True, metavar="ACTION")

    s = sub.add_parser("simulate", help="simulate coincidences of a 22Na source (events + truth .npz)")
    s.add_argument("--out", required=True, help="output list-mode file (.npz)")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--axial-step-mm", type=float, help="sources along the axis, -150...150 mm in this step")
    g.add_argument("--grid", type=int, help="k x k in-plane source grid at --z-mm")
    g.add_argument("--z-mm", type=float, nargs="+", help="explicit axial source positions (mm)")
    s.add_argument("--grid-z-mm", type=float, default=0.0, help="axial position of --grid (mm, default 0)")
    s.add_argument("--n-per-position", type=int, required=True, help="coincidences per source position")
    s.add_argument("--seed", type=int, default=0, help="event seed (default 0)")
    s.add_argument("--detector-seed", type=int, default=0, help="seed of the per-channel constants (default 0)")
    s.set_defaults(func=_simulate)

    c = sub.add_parser("calibrate", help="analytic skew calibration + GBDT correction -> model file")
    c.add_argument("events", help="labelled calibration coincidences (.npz)")
    c.add_argument("--out", required=True, help="model file (.json or .ubj)")
    c.add_argument("--kind", choices=("explicit", "implicit"), default="explicit")
    c.add_argument("--max-depth", type=int, default=8)
    c.add_argument("--n-estimators", type=int, default=400)
    c.add_argument("--learning-rate", type=float, default=0.1)
    c.add_argument("--skew-method", choices=("least_squares", "l1"), default="least_squares")
    c.add_argument("--skew-events", help="separate coincidences for the analytic step (.npz)")
    c.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(func=_calibrate)

    a = sub.add_parser("apply", help="add corrected time differences (dt_corrected_ps) to a list-mode file")
    a.add_argument("model", help="model file from 'calibrate'")
    a.add_argument("events", help="coincidences (.npz)")
    a.add_argument("--out", required=True, help="output list-mode file (.npz)")
    a.add_argument("--device", default=None)
    a.set_defaults(func=_apply)

    e = sub.add_parser("evaluate", help="three-fold evaluation (MAE, linearity, CTR) on labelled test data")
    e.add_argument("model", help="model file, or 'analytic:<events.npz>' to evaluate the skew calibration alone")
    e.add_argument("events", help="test coincidences at >= 3 axial positions (.npz)")
    e.add_argument("--json", help="write the numbers to this file")
    e.add_argument("--central-range-mm", type=float, nargs=2, help="restrict the linearity fit (mm)")
    e.add_argument("--device", default=None)
    e.set_defaults(func=_evaluate)


def _fail(exc: Exception) -> int:
    print(f"refsuite timing: {exc}", file=sys.stderr)
    return 2


def _simulate(args: argparse.Namespace) -> int:
    from refsuite import timing as T

    try:
        if args.axial_step_mm is not None:
            pos = T.axial_positions(args.axial_step_mm)
        elif args.grid is not None:
            pos = T.in_plane_grid(args.grid, z_mm=args.grid_z_mm)
        else:
            pos = args.z_mm
        events, truth = T.simulate_detector_pair(source_positions_mm=pos, n_per_position=args.n_per_position,
                                                 seed=args.seed, detector_seed=args.detector_seed)
        T.save_events(args.out, events, truth)
    except (ValueError, TypeError, OSError) as exc:
        return _fail(exc)
    print(f"{len(events['source_mm'])} coincidences -> {args.out}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from refsuite import timing as T

    try:
        events = T.load_events(args.events)
        skew_events = T.load_events(args.skew_events) if args.skew_events else None
        model = T.calibrate(events, kind=args.kind, max_depth=args.max_depth, skew_method=args.skew_method,
                            skew_events=skew_events, n_estimators=args.n_estimators,
                            learning_rate=args.learning_rate, device=args.device, seed=args.seed)
        T.save_model(model, args.out)
    except (ValueError, TypeError, OSError) as exc:
        return _fail(exc)
    print(f"{model.kind.value} model, {model.n_trees} trees -> {args.out}")
    return 0


def _apply(args: argparse.Namespace) -> int:
    import numpy as np

    from refsuite import timing as T

    try:
        model = T.load_model(args.model)
        events = T.load_events(args.events)
        out = dict(events)
        out["dt_corrected_ps"] = T.apply_correction(model, events, device=args.device)
        if model.kind is T.CorrectionKind.EXPLICIT:
            out["correction_ps"] = T.predict_correction(model, events, device=args.device)
        out["cluster_time_ps"] = T.cluster_times(events, model.offsets_ps)
        T.save_events(args.out, out)
    except (ValueError, TypeError, OSError) as exc:
        return _fail(exc)
    print(f"{len(np.asarray(events['source_mm']))} coincidences corrected -> {args.out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from refsuite import timing as T

    try:
        if args.model.startswith("analytic:"):
            model = T.skew_calibration(T.load_events(args.model[len("analytic:"):]))
        else:
            model = T.load_model(args.model)
        events = T.load_events(args.events)
        ev = T.evaluate_timing(model, events, central_range_mm=args.central_range_mm, gate=False,
                               device=args.device)
    except (ValueError, TypeError, OSError) as exc:
        return _fail(exc)
    lin, ctr = ev.linearity, ev.ctr
    print(f"model: {ev.kind}; levels passed: {ev.passed}")
    print(f"weighted MAE {ev.mae['weighted_mae_ps']:.1f} ps (dummy {ev.mae['weighted_dummy_mae_ps']:.1f} ps)")
    print(f"linearity: slope {lin['slope']:.4f} +- {lin['slope_err']:.4f} ps/mm (2/c {lin['expected_slope']:.4f}), "
          f"chi2_red {lin['chi2_red']:.2f}, p {lin['p_value']:.3g}, n_sigma {lin['n_sigma']:.2f}")
    print(f"CTR iso 430-590 keV {ctr['iso_photopeak'].fwhm:.1f} +- {ctr['iso_photopeak'].fwhm_err:.1f} ps, "
          f"300-700 keV {ctr['iso_wide'].fwhm:.1f} ps, mean along axis {ctr['axis_mean_ctr_ps']:.1f} ps")
    if args.json:
        from refsuite.io.atomic import atomic_write_text

        def plain(v):
            if isinstance(v, np.ndarray):
                return v.tolist()
            if hasattr(v, "_asdict"):
                return v._asdict()
            if isinstance(v, (np.floating, np.integer, np.bool_)):
                return v.item()
            return v

        doc = {"label": ev.label, "kind": ev.kind, "passed": ev.passed,
               "mae": {k: plain(v) for k, v in ev.mae.items()},
               "linearity": {k: plain(v) for k, v in lin.items()},
               "ctr": {k: plain(v) for k, v in ctr.items()}}
        atomic_write_text(args.json, json.dumps(doc, indent=1))
    return 0
