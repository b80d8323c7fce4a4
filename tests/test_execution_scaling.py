"""validation._scaling's timing rows: every number of every model's evaluation compared, bitwise.

The same comparison between in-process and a 2-worker cluster is in tests/test_execution.py (it
uses that file's cluster, started once).
"""

from __future__ import annotations

import numpy as np
import pytest

from validation import _scaling
from validation import timing as study

TINY = study.Sizes(n_train=3000, n_test_per_position=200, n_test_iso=1500, n_calib_per_position=800, depths=(3,),
                   steps_mm=(100.0,), grids=(1,), n_estimators=10, learning_rate=0.3, max_bin=32, n_jobs=1)


def test_timing_rows_are_reproducible_and_a_one_ulp_change_is_seen():
    jobs = _scaling.timing_jobs(TINY, seed=3, n_models=2)
    assert [j.key for j in jobs] == ["timing-implicit-100mm-d3", "timing-explicit-100mm-d3"]
    row, first = _scaling.measure_timing(0, jobs)
    assert row["workers"] == 0 and row["models"] == 2 and row["wall_s"] > 0 and row["cpu_s"] > 0
    assert row["start_s"] < 1.0  # in-process: no cluster to start
    _, again = _scaling.measure_timing(0, jobs)
    assert len(_scaling.evaluation_numbers(first[0])) > 20  # MAE, linearity, CTR fits and the corrected times
    assert _scaling.compare_evaluations(first, again) == {"bitwise_equal": True, "max_abs_diff": 0.0}
    bumped = again[1].corrected_ps.copy()
    bumped[5] = np.nextafter(bumped[5], np.inf)
    again[1].corrected_ps = bumped
    same = _scaling.compare_evaluations(first, again)
    assert same["bitwise_equal"] is False and 0 < same["max_abs_diff"] < 1e-9
    again[1].linearity["slope"] += 1e-12  # a scalar of a dictionary is seen too
    again[1].corrected_ps = first[1].corrected_ps
    assert _scaling.compare_evaluations(first, again)["bitwise_equal"] is False
    assert _scaling.compare_evaluations(first, again[:1])["bitwise_equal"] is False


@pytest.mark.parametrize("argv", [["--workers", "1,x"], ["--workers", "-1"], ["--study", "timing", "--models", "0"]])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        _scaling.main(argv)
    assert exc.value.code == 2 and "--" in capsys.readouterr().err
