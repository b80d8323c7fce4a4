"""Foundation pieces: atomic writes, argument checks, capability probes, the CLI."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from refsuite._checks import check_choice, check_in_range, check_positive
from refsuite.capabilities import capability, require
from refsuite.io import atomic_open, atomic_path, atomic_write_text


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "first")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as fh:
            fh.write("half-written")
            raise RuntimeError("interrupted")
    assert target.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_path_for_libraries(tmp_path):
    target = tmp_path / "sub" / "arr.npy"
    with atomic_path(target) as tmp:
        np.save(tmp, np.arange(3))
        assert not target.exists()
    assert np.load(target).tolist() == [0, 1, 2]


def test_checks_name_parameter_value_and_range():
    with pytest.raises(ValueError, match=r"sigma must be > 0 ps, got -1.0 ps"):
        check_positive("sigma", -1.0, unit="ps")
    with pytest.raises(ValueError, match=r"fraction must lie in \[0, 1\), got 1.0"):
        check_in_range("fraction", np.array([0.5, 1.0]), 0.0, 1.0, high_inclusive=False)
    with pytest.raises(ValueError, match=r"kind must be one of \('a', 'b'\), got 'c'"):
        check_choice("kind", "c", ("a", "b"))
    with pytest.raises(TypeError, match="must be a real number"):
        check_positive("x", "abc")


@pytest.mark.parametrize("name", ["cuda", "opengate", "geant4_data", "parallelproj"])
def test_capabilities_say_what_they_found(name):
    cap = capability(name)
    assert isinstance(cap.available, bool) and cap.detail
    if not cap.available:
        with pytest.raises(RuntimeError, match=name):
            require(name, "this test")


def test_unknown_capability():
    with pytest.raises(ValueError, match="name must be one of"):
        capability("quantum")


@pytest.mark.requires("cuda")
def test_cuda_marker_runs_only_with_cuda():
    import torch

    assert torch.cuda.is_available()


def test_console_help_lists_report():
    out = subprocess.run([sys.executable, "-m", "refsuite", "report", "--help"], capture_output=True, text=True, check=True)
    assert "--quick" in out.stdout and "--only" in out.stdout and "--seed" in out.stdout
