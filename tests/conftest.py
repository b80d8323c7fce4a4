"""Shared pytest configuration: figures printed at the end of the run, capability skips."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# CI explores a fixed, reproducible set of examples (a red CI run can be replayed exactly);
# local runs explore new random examples each time. Select with HYPOTHESIS_PROFILE.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

_FIGURES: list[str] = []


@pytest.fixture
def record_figure(request):
    """Record a figure (speed, accuracy) to print in the terminal summary.

    ``record_figure("points/s", 1.2e6, reference=1020, reference_label="scipy quad")``
    prints the value and, with a reference, the ratio value/reference.
    """

    def _record(label: str, value: float, *, unit: str = "", reference: float | None = None,
                reference_label: str = "") -> None:
        text = f"{request.node.nodeid}: {label} = {value:.4g} {unit}".rstrip()
        if reference:
            text += f"  (ratio {value / reference:.4g} vs {reference_label or 'reference'} {reference:.4g})"
        _FIGURES.append(text)

    return _record


@pytest.fixture(scope="session")
def write_gate9():
    """``write_gate9(path, events)``: write event columns as GATE 9's GateToRoot coincidence tree
    (``Coincidences``; ``eventID1``, ``time1`` in s, ``energy1`` in MeV, ``globalPosX1`` mm)."""

    def _write(path, events):
        import numpy as np
        import uproot

        n = len(events["EventID1"])
        cols = {"runID": np.zeros(n, np.int32)}
        for k in (1, 2):
            cols[f"eventID{k}"] = np.asarray(events[f"EventID{k}"]).astype(np.int32)
            cols[f"time{k}"] = np.asarray(events[f"GlobalTime{k}"], float) / 1e9
            cols[f"energy{k}"] = np.asarray(events[f"TotalEnergyDeposit{k}"], float)
            for a in "XYZ":
                cols[f"globalPos{a}{k}"] = np.asarray(events[f"PostPosition_{a}{k}"], float)
        with uproot.recreate(path) as f:
            f.mktree("Coincidences", {k: v.dtype for k, v in cols.items()}).extend(cols)
        return path

    return _write


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread (modules opt in with ``pytestmark``).

    Small torch problems gain nothing from a second thread, and on a shared 2-core machine
    every parallel op waits for the other thread to be scheduled (seen: 1.3 s vs 18 s).
    """
    from refsuite._threads import limited_threads

    with limited_threads(1):
        yield


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "requires(name): skip, saying what is missing, unless refsuite.capabilities reports "
        "capability `name` (cuda, opengate, geant4_data, parallelproj)",
    )


def pytest_runtest_setup(item):
    from refsuite.capabilities import capability

    for mark in item.iter_markers(name="requires"):
        for name in mark.args:
            cap = capability(name)
            if not cap.available:
                pytest.skip(f"needs {name}: {cap.detail}")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _FIGURES:
        terminalreporter.section("refsuite figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)


def run_timed(benchmark, fn, *args, rounds: int | None = None, **kwargs):
    """Run ``fn`` under pytest-benchmark and return ``(result, best_seconds)``.

    The wall time of every call is taken here too, so the figure exists whatever the
    benchmark options (``--benchmark-disable`` runs the function once, untimed by the plugin).
    ``rounds`` fixes the number of rounds (``benchmark.pedantic``) for slow workloads.
    """
    import time

    seconds: list[float] = []

    def timed(*a, **k):
        start = time.perf_counter()
        out = fn(*a, **k)
        seconds.append(time.perf_counter() - start)
        return out

    if rounds is None:
        result = benchmark(timed, *args, **kwargs)
    else:
        result = benchmark.pedantic(timed, args=args, kwargs=kwargs, rounds=rounds, iterations=1)
    return result, min(seconds)
