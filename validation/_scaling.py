"""Scaling of the PVC dataset simulation over Dask workers (the measurement in docs/studies/pvc.md).

``python -m validation._scaling --workers 0,1,2,4 --cases 96 --chunk-size 8`` simulates the same
dataset in-process (0) and on local clusters of 1, 2 and 4 workers, checks that every run's
arrays are bitwise equal to the in-process run's, and prints one JSON line per run: cluster start
time, simulation wall time, CPU seconds of the processes that ran the tasks, the parallelism the
run obtained (CPU / wall) and the machine's load averages before and after.
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


def measure(workers: int, cfg: DatasetConfig, n_cases: int, chunk_size: int, seed: int, folder: str) -> dict:
    """One run: wall and CPU time of ``n_cases`` cases on ``workers`` workers (0: in-process)."""
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    with Executor(workers=workers or None) as ex:
        t1, c1 = time.perf_counter(), ex.cpu_seconds()
        simulate_dataset(folder, n_cases, config=cfg, seed=seed, chunk_size=chunk_size, progress=False, executor=ex)
        wall, cpu = time.perf_counter() - t1, ex.cpu_seconds() - c1
    return {"workers": workers, "cases": n_cases, "chunk_size": chunk_size, "start_s": round(t1 - t0, 2),
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "wall_per_case_s": round(wall / n_cases, 3),
            "cpu_per_case_s": round(cpu / n_cases, 3), "parallelism": round(cpu / wall, 2),
            "load_before": [round(x, 2) for x in load0], "load_after": [round(x, 2) for x in os.getloadavg()]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation._scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="0,1,2,4", help="comma-separated worker counts; 0 = in-process")
    parser.add_argument("--config", choices=sorted(SHAPES), default="quick")
    parser.add_argument("--cases", type=int, default=96)
    parser.add_argument("--chunk-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    ref = None
    with tempfile.TemporaryDirectory(prefix="refsuite-scaling-") as tmp:
        for w in (int(x) for x in args.workers.split(",")):
            folder = os.path.join(tmp, f"w{w}")
            row = measure(w, SHAPES[args.config], args.cases, args.chunk_size, args.seed, folder)
            data = load_dataset(folder)
            row["bitwise_equal_to_first"] = ref is None or all(np.array_equal(ref[k], data[k]) for k in ref)
            ref = ref if ref is not None else data
            shutil.rmtree(folder)
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
