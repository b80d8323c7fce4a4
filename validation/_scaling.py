"""Scaling of the studies' parallel work over Dask workers (the measurements in the study documents).

``python -m validation._scaling --workers 0,1,2,4 --cases 96 --chunk-size 8`` simulates the same
PVC dataset in-process (0) and on local clusters of 1, 2 and 4 workers (docs/studies/pvc.md);
``--study timing`` trains and evaluates the timing study's model grid at the quick sizes, one
model per task (docs/studies/timing.md). Every run's results are compared with the first run's
(bitwise: the PVC arrays, or every number of each model's evaluation; null for the first run,
the reference) and one JSON line is printed per run: cluster start time, wall time, CPU seconds
of the processes that ran the tasks, the parallelism the run obtained (CPU / wall) and the
machine's load averages before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import numpy as np

from refsuite.execution import Executor
from refsuite.pvc import DatasetConfig, load_dataset, simulate_dataset

SHAPES = {"quick": DatasetConfig(shape=(16, 24, 24), n_views=24, time_per_view_s=150.0),
          "scaled": DatasetConfig(shape=(32, 64, 64), n_views=60, time_per_view_s=60.0),
          "full": DatasetConfig()}


def _timed(workers: int, work) -> tuple[dict, object]:
    """Run ``work(executor)`` on ``workers`` workers (0: in-process): ``(times row, its result)``."""
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    with Executor(workers=workers or None) as ex:
        t1, c1 = time.perf_counter(), ex.cpu_seconds()
        out = work(ex)
        wall, cpu = time.perf_counter() - t1, ex.cpu_seconds() - c1
    return {"start_s": round(t1 - t0, 2), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "parallelism": round(cpu / wall, 2), "load_before": [round(x, 2) for x in load0],
            "load_after": [round(x, 2) for x in os.getloadavg()]}, out


def measure(workers: int, cfg: DatasetConfig, n_cases: int, chunk_size: int, seed: int, folder: str) -> dict:
    """One PVC run: wall and CPU time of ``n_cases`` cases on ``workers`` workers (0: in-process)."""
    times, _ = _timed(workers, lambda ex: simulate_dataset(folder, n_cases, config=cfg, seed=seed, chunk_size=chunk_size,
                                                           progress=False, executor=ex))
    return {"workers": workers, "cases": n_cases, "chunk_size": chunk_size, **times,
            "wall_per_case_s": round(times["wall_s"] / n_cases, 3), "cpu_per_case_s": round(times["cpu_s"] / n_cases, 3)}


def timing_jobs(sizes=None, *, seed: int = 1, n_models: int | None = None) -> list:
    """The timing study's model grid (its ``_ModelJob`` tasks) at ``sizes`` (default: the quick plan's).

    Built as :func:`validation.timing.run` builds it (analytic calibration first, then one job per
    kind x step or grid x depth); ``n_models``: only the first ones, in the order of the tables.
    """
    from refsuite.report import RunContext
    from validation import timing

    sizes = timing._sizes(RunContext(seed=seed)) if sizes is None else sizes
    offsets = timing._analytic_calibration(sizes, seed)[2]
    jobs = timing._model_jobs(sizes, seed, "cpu", offsets, None)
    return jobs if n_models is None else jobs[:n_models]


def measure_timing(workers: int, jobs: list) -> tuple[dict, list]:
    """One timing run: every job of ``jobs`` trained and evaluated as a task; ``(row, evaluations)``."""
    from validation import timing

    times, out = _timed(workers, lambda ex: timing._train_and_evaluate(jobs, ex, progress=False))
    row = {"workers": workers, "models": len(jobs), **times,
           "wall_per_model_s": round(times["wall_s"] / len(jobs), 2),
           "cpu_per_model_s": round(times["cpu_s"] / len(jobs), 2)}
    return row, [ev for _, ev in out]


def evaluation_numbers(ev) -> list[np.ndarray]:
    """Every number of a :class:`refsuite.timing.TimingEvaluation` (MAE, linearity, CTR fits, corrected times).

    Flattened in a fixed order (dictionaries by key) as float arrays, so two evaluations can be
    compared number by number; labels and pass flags are left out.
    """
    out = []

    def walk(v):
        if isinstance(v, dict):
            for k in sorted(v, key=str):
                walk(v[k])
        elif isinstance(v, (tuple, list)):
            for x in v:
                walk(x)
        elif v is not None and not isinstance(v, str):
            out.append(np.asarray(v, dtype=float))

    walk([ev.mae, ev.linearity, ev.ctr, ev.corrected_ps])
    return out


def compare_evaluations(ref: list, evs: list) -> dict:
    """``bitwise_equal`` (every number of every model identical, NaN equal to NaN) and ``max_abs_diff``."""
    a, b = [evaluation_numbers(e) for e in ref], [evaluation_numbers(e) for e in evs]
    pairs = [(x, y) for xs, ys in zip(a, b) for x, y in zip(xs, ys)]
    same_shape = len(a) == len(b) and all(len(xs) == len(ys) for xs, ys in zip(a, b)) and all(
        x.shape == y.shape for x, y in pairs)
    if not same_shape:
        return {"bitwise_equal": False, "max_abs_diff": None}
    diff = max((float(np.nanmax(np.abs(x - y), initial=0.0)) for x, y in pairs), default=0.0)
    return {"bitwise_equal": all(np.array_equal(x, y, equal_nan=True) for x, y in pairs), "max_abs_diff": diff}


def _run_pvc(args, workers: list[int]) -> None:
    ref = None
    with tempfile.TemporaryDirectory(prefix="refsuite-scaling-") as tmp:
        for w in workers:
            folder = os.path.join(tmp, f"w{w}")
            row = measure(w, SHAPES[args.config], args.cases, args.chunk_size, args.seed, folder)
            data = load_dataset(folder)
            row["bitwise_equal_to_first"] = None if ref is None else all(np.array_equal(ref[k], data[k]) for k in ref)
            ref = ref if ref is not None else data
            shutil.rmtree(folder)
            print(json.dumps(row), flush=True)


def _run_timing(args, workers: list[int]) -> None:
    jobs = timing_jobs(seed=args.seed, n_models=args.models)
    ref = None
    for w in workers:
        row, evs = measure_timing(w, jobs)
        same = {"bitwise_equal": None, "max_abs_diff": None} if ref is None else compare_evaluations(ref, evs)
        row["bitwise_equal_to_first"], row["max_abs_diff_to_first"] = same["bitwise_equal"], same["max_abs_diff"]
        ref = ref if ref is not None else evs
        print(json.dumps(row), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation._scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", choices=("pvc", "timing"), default="pvc",
                        help="pvc: the dataset simulation; timing: the quick plan's model grid, one model per task")
    parser.add_argument("--workers", default="0,1,2,4", help="comma-separated worker counts; 0 = in-process")
    parser.add_argument("--config", choices=sorted(SHAPES), default="quick", help="pvc: the acquisition")
    parser.add_argument("--cases", type=int, default=96, help="pvc: cases simulated")
    parser.add_argument("--chunk-size", type=int, default=8, help="pvc: cases per task")
    parser.add_argument("--models", type=int, default=None, help="timing: only the first MODELS models of the grid")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        workers = [int(x) for x in args.workers.split(",")]
    except ValueError:
        parser.error(f"--workers {args.workers!r}: comma-separated integers >= 0 expected, e.g. 0,1,2,4")
    if any(w < 0 for w in workers) or (args.models is not None and args.models < 1):
        parser.error(f"--workers {args.workers!r} must be >= 0 and --models {args.models!r} >= 1")
    (_run_timing if args.study == "timing" else _run_pvc)(args, workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
