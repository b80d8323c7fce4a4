"""The stage store: stored stages are loaded, not recomputed; another run's directory is refused."""

from __future__ import annotations

import numpy as np
import pytest

from refsuite.io import StageStore


def test_a_stored_stage_is_loaded_instead_of_computed(tmp_path):
    store = StageStore(tmp_path, {"seed": 1})
    first = store.load_or_compute("pair-7", lambda: {"ddf": np.arange(6.0)})
    assert store.done("pair-7")

    def must_not_run():
        raise AssertionError("recomputed a stored stage")

    again = StageStore(tmp_path, {"seed": 1}).load_or_compute("pair-7", must_not_run)
    np.testing.assert_array_equal(again["ddf"], first["ddf"])


def test_without_a_root_nothing_is_stored():
    store = StageStore(None, {"seed": 1})
    calls = []
    for _ in range(2):
        store.load_or_compute("x", lambda: calls.append(1))
    assert len(calls) == 2 and store.path("x") is None and not store.done("x")


def test_a_directory_of_another_run_is_refused(tmp_path):
    StageStore(tmp_path, {"seed": 1, "shape": [4, 4]})
    with pytest.raises(ValueError, match="another run.*'seed'"):
        StageStore(tmp_path, {"seed": 2, "shape": [4, 4]})


def test_runs_with_different_fingerprints_get_their_own_directories(tmp_path):
    a = StageStore.for_run(tmp_path, "study", {"seed": 1})
    b = StageStore.for_run(tmp_path, "study", {"seed": 2})
    assert a.root != b.root and a.root.parent == b.root.parent == tmp_path
    assert StageStore.for_run(tmp_path, "study", {"seed": 1}).root == a.root


def test_a_failed_stage_leaves_nothing_behind(tmp_path):
    store = StageStore(tmp_path, {"seed": 1})

    def fails():
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        store.load_or_compute("broken", fails)
    assert not store.done("broken") and sorted(p.name for p in tmp_path.iterdir()) == ["fingerprint.json"]


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden"])
def test_stage_names_must_be_plain_file_names(tmp_path, name):
    with pytest.raises(ValueError, match="stage name"):
        StageStore(tmp_path, {}).path(name)
