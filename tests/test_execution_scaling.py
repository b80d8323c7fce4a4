"""validation._scaling's timing rows: every number of every model's evaluation compared, bitwise."""

from __future__ import annotations

import numpy as np
import pytest

from validation import _scaling
from validation import timing as study

_TINY = study.Sizes(n_train=3000, n_test_per_position=200, n_test_iso=1500, n_calib_per_position=800, depths=(3,),
                    steps_mm=(100.0,), grids=(1,), n_estimators=10, learning_rate=0.3, max_bin=32, n_jobs=1)


@pytest.mark.slow
def test_timing_rows_in_process_and_on_two_workers_are_bitwise_equal():
    pytest.importorskip("distributed")
    jobs = _scaling.timing_jobs(_TINY, seed=3, n_models=2)
    assert [j.key for j in jobs] == ["timing-implicit-100mm-d3", "timing-explicit-100mm-d3"]
    here_row, here = _scaling.measure_timing(0, jobs)
    there_row, there = _scaling.measure_timing(2, jobs)
    assert here_row["models"] == there_row["models"] == 2 and there_row["workers"] == 2
    assert here_row["wall_s"] > 0 and there_row["cpu_s"] > 0 and there_row["start_s"] > 0
    assert len(_scaling.evaluation_numbers(here[0])) > 20  # MAE, linearity, CTR fits and the corrected times
    assert _scaling.compare_evaluations(here, there) == {"bitwise_equal": True, "max_abs_diff": 0.0}
    # one ulp in one model's corrected times is seen
    bumped = there[1].corrected_ps.copy()
    bumped[5] = np.nextafter(bumped[5], np.inf)
    there[1].corrected_ps = bumped
    same = _scaling.compare_evaluations(here, there)
    assert same["bitwise_equal"] is False and 0 < same["max_abs_diff"] < 1e-9
    assert _scaling.compare_evaluations(here, there[:1])["bitwise_equal"] is False


@pytest.mark.parametrize("argv", [["--workers", "1,x"], ["--workers", "-1"], ["--study", "timing", "--models", "0"]])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        _scaling.main(argv)
    assert exc.value.code == 2 and "--" in capsys.readouterr().err
