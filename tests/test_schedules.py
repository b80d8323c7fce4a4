import math

import pytest

from refsuite.schedules import Schedule, scheduled_learning_rate


def test_cosine_anneals_from_base_towards_zero():
    rates = [scheduled_learning_rate(Schedule.COSINE, 0.02, k, 4) for k in range(4)]
    assert rates == pytest.approx([0.02, 0.01 * (1 + math.cos(math.pi / 4)), 0.01, 0.01 * (1 + math.cos(3 * math.pi / 4))])
    assert all(a > b for a, b in zip(rates, rates[1:]))


def test_constant_and_string_values():
    assert {scheduled_learning_rate("constant", 3e-3, k, 10) for k in range(10)} == {3e-3}
    assert scheduled_learning_rate("cosine", 1.0, 0, 10) == 1.0


@pytest.mark.parametrize("kwargs, match", [
    (dict(schedule="linear", base=1.0, step=0, total=2), "not a valid Schedule"),
    (dict(schedule="cosine", base=0.0, step=0, total=2), "base learning rate must be > 0, got 0.0"),
    (dict(schedule="cosine", base=1.0, step=2, total=2), r"step must lie in \[0, total=2\), got 2"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        scheduled_learning_rate(**kwargs)
