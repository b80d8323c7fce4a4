"""refsuite.execution: in-process by default; on a 2-worker LocalCluster the same results, a killed worker retried."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from refsuite.execution import Executor, check_execution, current_executor


def _square_with_noise(i: int) -> float:
    """A task whose randomness comes from its item (never from the worker)."""
    return i * i + float(np.random.default_rng([99, i]).normal())


def _nested(n: int) -> tuple[str, list]:
    ex = current_executor()
    return ex.kind, ex.map(_square_with_noise, range(n))


def _inverse(x: float) -> float:
    return 1.0 / x


def _slow_once(item) -> tuple[float, int]:
    """Item 0 writes its worker's pid and sleeps (long enough to be killed); returns (value, pid)."""
    i, folder = item
    if i == 0:
        Path(folder, f"pid-{os.getpid()}").write_text("")
        time.sleep(4.0)
    return _square_with_noise(i), os.getpid()


# ----------------------------------------------------------------------------- in-process
def test_in_process_is_a_plain_loop_in_order():
    done = []
    ex = Executor()
    out = ex.map(_square_with_noise, range(5), on_done=lambda i, r: done.append(i))
    assert out == [_square_with_noise(i) for i in range(5)] and done == [0, 1, 2, 3, 4]
    assert ex.kind == "in-process" and ex.n_workers == 1 and current_executor().kind == "in-process"
    with pytest.raises(ZeroDivisionError):
        ex.map(lambda x: 1 / x, [1, 0])


@pytest.mark.parametrize("workers, scheduler, match", [
    (0, None, "workers 0: must be 1"), (10_000, None, "must be 1 ..."), (2, "tcp://h:1", "give one of them"),
    (None, "not an address/x y", "expected a Dask scheduler address")])
def test_bad_choices_are_refused_before_work(workers, scheduler, match):
    with pytest.raises(ValueError, match=match):
        check_execution(workers, scheduler)
    with pytest.raises(TypeError, match="integer"):
        check_execution(2.0, None)


def test_unreachable_scheduler_is_one_clear_error():
    pytest.importorskip("distributed")
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"scheduler 'tcp://127.0.0.1:9': no Dask scheduler answered within 1 s"):
        Executor(scheduler="tcp://127.0.0.1:9", connect_timeout_s=1.0)
    assert time.perf_counter() - t0 < 20


def test_cli_flags_are_checked_first(tmp_path, capsys):
    from refsuite.cli import main

    assert main(["report", "--workers", "0", "--only", "mc", "--out", str(tmp_path / "r")]) == 2
    assert main(["report", "--seeds", "5-2", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--workers 0: must be 1" in err and "--seeds '5-2'" in err and not (tmp_path / "r").exists()


def test_parse_seeds():
    from validation._runner import parse_seeds

    assert parse_seeds("1-3,7") == [1, 2, 3, 7] and parse_seeds("0") == [0]
    for bad in ("3-1", "", "a", "1,1", "-2"):
        with pytest.raises(ValueError, match="seeds"):
            parse_seeds(bad)


# ----------------------------------------------------------------------------- LocalCluster
@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("distributed")
    with Executor(workers=2) as ex:
        yield ex


def _judged_values(results: dict) -> dict:
    """Measured value of every check, except speeds and run times (they depend on the machine's load)."""
    return {(c["study"], c["name"]): (c["measured"], c["met"]) for c in results["checks"]
            if not (c["unit"] == "s" or c["unit"].endswith("/s"))}


@pytest.mark.slow
def test_quick_report_on_the_cluster_equals_in_process(cluster, tmp_path):
    from refsuite.report import RunContext
    from validation._runner import run_report

    ctx = RunContext(seed=3)
    here = run_report(ctx, tmp_path / "here", only=["sensitivity", "mc"], progress=False)
    there = run_report(ctx, tmp_path / "there", only=["sensitivity", "mc"], progress=False, executor=cluster)
    assert cluster.n_workers == 2 and cluster.kind == "local cluster"
    a, b = _judged_values(here), _judged_values(there)
    assert len(a) >= 15 and a == b
    on_disk = json.loads((tmp_path / "there" / "results.json").read_text())
    assert list(on_disk["studies"]) == ["sensitivity", "mc"] and (tmp_path / "there" / "mc.html").is_file()


def test_pvc_dataset_on_the_cluster_is_bitwise_equal(cluster, tmp_path):
    from refsuite.pvc import DatasetConfig, load_dataset, simulate_dataset

    tiny = DatasetConfig(shape=(8, 16, 16), n_views=8, time_per_view_s=450.0, recons=("RR", "noRR"))
    a = load_dataset(simulate_dataset(tmp_path / "a", 5, config=tiny, seed=7, chunk_size=2, progress=False))
    path = simulate_dataset(tmp_path / "b", 5, config=tiny, seed=7, chunk_size=2, progress=False, executor=cluster)
    b = load_dataset(path)
    assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)
    manifest = json.loads(path.read_text())
    assert manifest["complete"] and list(manifest["chunks"]) == ["00000", "00001", "00002"]
    # resume on the cluster: a chunk dropped from the manifest is recomputed identically
    del manifest["chunks"]["00001"]
    path.write_text(json.dumps(manifest))
    simulate_dataset(tmp_path / "b", 5, config=tiny, seed=7, chunk_size=2, progress=False, executor=cluster)
    assert np.array_equal(load_dataset(path)["RR_n"], a["RR_n"])


def test_acceptance_demo_scans_on_the_cluster_are_identical(cluster, tmp_path):
    from refsuite.acceptance.demo import DemoSizes, write_demo

    sizes = DemoSizes("2mm", point_decays=20_000, shell_decays=20_000, timing_decays=5_000, sweep_decays=2_000,
                      n_iter=2, batch_size=1_000)

    def digests(folder):
        out = {}
        for f in sorted(Path(folder).rglob("*.npz")):
            with np.load(f) as z:
                out[str(f.relative_to(folder))] = hashlib.sha1(b"".join(z[k].tobytes() for k in sorted(z.files))).digest()
        return out

    write_demo(tmp_path / "a", sizes=sizes, seed=5)
    write_demo(tmp_path / "b", sizes=sizes, seed=5, executor=cluster)
    a = digests(tmp_path / "a")
    assert len(a) >= 30 and a == digests(tmp_path / "b")


def test_tasks_inside_a_task_use_the_same_cluster(cluster):
    out = cluster.map(_nested, [2, 3])
    assert out == [("worker", [_square_with_noise(i) for i in range(n)]) for n in (2, 3)]


def test_a_running_cluster_is_reached_by_its_address(cluster):
    address = cluster._cluster.scheduler_address
    with Executor(scheduler=address) as ex:
        assert ex.kind == "scheduler" and ex.n_workers == 2 and address in ex.describe()
        assert ex.map(_square_with_noise, range(4)) == [_square_with_noise(i) for i in range(4)]
    assert cluster.map(_inverse, [2.0]) == [0.5]  # closing a client leaves the cluster running


def test_a_failing_task_raises_its_error_here(cluster):
    with pytest.raises(ZeroDivisionError):
        cluster.map(_inverse, [1.0, 0.0, 2.0])
    assert cluster.map(_inverse, [4.0, 2.0]) == [0.25, 0.5]  # the executor is still usable


def test_a_killed_worker_is_retried_and_changes_nothing(cluster, tmp_path):
    items = [(i, str(tmp_path)) for i in range(6)]
    killed = []

    def kill_first_sleeper():
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            pids = list(tmp_path.glob("pid-*"))
            if pids:
                pid = int(pids[0].name[4:])
                time.sleep(0.5)  # mid-task: the task sleeps 4 s
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_first_sleeper)
    killer.start()
    out = cluster.map(_slow_once, items, progress=False)
    killer.join()
    assert killed, "the worker was never killed"
    assert [v for v, _ in out] == [_square_with_noise(i) for i in range(6)]
    assert out[0][1] != killed[0]  # item 0 finished on another (or a restarted) worker process
    assert len(list(tmp_path.glob("pid-*"))) == 2  # it ran twice: killed once, retried once
    deadline = time.time() + 60
    while cluster.n_workers < 2 and time.time() < deadline:  # the nanny restarts the worker
        time.sleep(0.2)
    assert cluster.n_workers == 2


def test_timing_model_grid_on_the_cluster_equals_in_process(cluster):
    from refsuite.report import RunContext
    from validation import timing as study

    tiny = study.Sizes(n_train=4000, n_test_per_position=300, n_test_iso=2000, n_calib_per_position=1000,
                       depths=(4,), steps_mm=(50.0, 100.0), grids=(1,), n_estimators=20, learning_rate=0.3,
                       max_bin=32, n_jobs=1)
    jobs = study._model_jobs(tiny, 7, "cpu", np.zeros((2, 16)), None)
    assert [j.key for j in jobs] == ["timing-implicit-50mm-d4", "timing-explicit-50mm-d4", "timing-implicit-100mm-d4",
                                     "timing-explicit-100mm-d4", "timing-explicit-1x1-d4"]
    here = study._study(RunContext(seed=7), tiny)
    there = study._study(RunContext(seed=7), tiny, executor=cluster)
    measured = [(c.name, c.measured) for c in here.checks]
    assert len(measured) == 3 + 3 * 3 + 1 and measured == [(c.name, c.measured) for c in there.checks]
    assert [t.rows for t in here.tables] == [t.rows for t in there.tables]


def test_timing_scaling_evaluations_on_the_cluster_are_bitwise_equal(cluster):
    from test_execution_scaling import TINY

    from validation import _scaling
    from validation import timing as study

    jobs = _scaling.timing_jobs(TINY, seed=3, n_models=2)
    here, there = ([ev for _, ev in study._train_and_evaluate(jobs, ex, progress=False)] for ex in (None, cluster))
    # every number of both models' evaluations, the corrected time differences included
    assert _scaling.compare_evaluations(here, there) == {"bitwise_equal": True, "max_abs_diff": 0.0}


def test_a_large_timing_model_trains_with_xgboost_dask(cluster):
    pytest.importorskip("xgboost.dask")
    from refsuite import timing as T

    pos = T.axial_positions(10.0)
    train, _ = T.simulate_detector_pair(source_positions_mm=pos, n_per_position=300, seed=20)
    test, _ = T.simulate_detector_pair(source_positions_mm=pos, n_per_position=300, seed=2)
    kw = dict(kind="explicit", max_depth=5, offsets_ps=T.skew_calibration(train), n_estimators=40, learning_rate=0.3,
              max_bin=64, seed=0)
    here = T.train_correction(train, n_jobs=1, **kw)
    there = T.train_correction(train, executor=cluster, distributed_min_rows=1000, **kw)
    small = T.train_correction(train, executor=cluster, distributed_min_rows=10**6, n_jobs=1, **kw)
    assert there.params["distributed"] and not here.params["distributed"] and not small.params["distributed"]
    assert len(there.history["validation_mae_ps"]) >= there.n_trees > 5
    a, b = (T.evaluate_timing(m, test, gate=False).mae for m in (here, there))
    # one booster trained over both workers' partitions: as accurate as the single-process one
    assert b["weighted_mae_ps"] < 0.8 * b["weighted_dummy_mae_ps"]
    assert abs(b["weighted_mae_ps"] - a["weighted_mae_ps"]) < 0.05 * a["weighted_mae_ps"]
    with pytest.raises(ValueError, match="distributed_min_rows"):
        T.train_correction(train, executor=cluster, distributed_min_rows=0, **kw)


def test_registration_weight_sweep_on_the_cluster_equals_in_process(cluster, tmp_path):
    from refsuite.io import StageStore
    from refsuite.registration import evaluate_registration, register, simulate_pet_ct_pair
    from refsuite.report import RunContext
    from validation import registration as study

    pairs = [simulate_pet_ct_pair(shape=(34, 12, 17), seed=k) for k in (1, 2)]
    settings = {"uniform 30": [30.0, 30.0], "uniform 100": [100.0, 100.0]}
    ctx, its = RunContext(seed=1), (4, 3, 2)
    here = study._sweep(settings, pairs, StageStore(None, {}), its, ctx, progress=False)
    store = StageStore(tmp_path, {"test": 1})
    there = study._sweep(settings, pairs, store, its, ctx, progress=False, executor=cluster)
    direct = [evaluate_registration(p, register(p.fixed_pet, p.moving_pet, weight_map=100.0, spacing=p.spacing,
                                                iterations=its)) for p in pairs]
    np.testing.assert_equal(here["uniform 100"][0], direct)  # the tasks are the plain loop's registrations
    assert list(there) == list(settings) and here["uniform 30"][0] != here["uniform 100"][0]
    for key in settings:
        np.testing.assert_equal(there[key][0], here[key][0])
        assert there[key][1].shape[-4:] == (3, 34, 12, 17) and np.array_equal(there[key][1], here[key][1])
        assert store.done(study._stage_name("instance", key))  # kept per setting: a rerun loads it
    np.testing.assert_equal(study._sweep(settings, pairs, store, its, ctx, progress=False, executor=cluster), there)


def test_mc_chunks_on_the_cluster_are_bitwise_equal(cluster, tmp_path, capsys):
    from refsuite.cli import main
    from refsuite.geometry import preset
    from refsuite.io import read_coincidences
    from refsuite.mc import simulate
    from refsuite.phantoms import PointSources

    scanner, phantom = preset("thull_sim"), PointSources([[0.0, 0.0, 0.0], [20.0, 5.0, -10.0]])
    kw = dict(n_decays=70_000, seed=3, chunk_size=4096)  # 18 chunks: several tasks per worker
    here = simulate(scanner, phantom, **kw)
    there = simulate(scanner, phantom, executor=cluster, **kw)
    assert len(here["EventID1"]) > 1000 and here.attrs["counts"] == there.attrs["counts"]
    assert all(np.array_equal(here[c], there[c]) for c in here)
    # the command: --scheduler reaches the cluster; the file holds the in-process events
    base = ["simulate", "--n-decays", "30000", "--chunk-size", "4096", "--seed", "4", "--no-progress"]
    assert main(base + ["--out", str(tmp_path / "a.root")]) == 0
    assert main(base + ["--out", str(tmp_path / "b.root"), "--scheduler", cluster._cluster.scheduler_address]) == 0
    a, b = read_coincidences(tmp_path / "a.root"), read_coincidences(tmp_path / "b.root")
    assert len(a["EventID1"]) > 100 and all(np.array_equal(a[c], b[c]) for c in a)
    assert main(base + ["--out", str(tmp_path / "c.root"), "--workers", "0"]) == 2
    assert "--workers 0: must be 1" in capsys.readouterr().err and not (tmp_path / "c.root").exists()


def test_imap_streams_in_order_with_a_bounded_window(cluster):
    pulled = []

    def items():
        for i in range(8):
            pulled.append(i)
            yield i

    stream = cluster.imap(_square_with_noise, items(), window=3)
    first = next(stream)
    assert first == _square_with_noise(0) and len(pulled) <= 4  # the window, plus the one refilled
    assert [first, *stream] == [_square_with_noise(i) for i in range(8)]
    assert list(Executor().imap(_square_with_noise, range(3))) == [_square_with_noise(i) for i in range(3)]
    with pytest.raises(ZeroDivisionError):
        list(cluster.imap(_inverse, [1.0, 0.0, 2.0]))
    with pytest.raises(ValueError, match="window"):
        next(cluster.imap(_inverse, [1.0], window=0))
