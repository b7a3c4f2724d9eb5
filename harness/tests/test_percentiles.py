"""The one percentile every benchmark and the traffic report quote: nearest rank."""

import pytest

from harness.percentiles import percentile


def test_nearest_rank_of_a_hundred_values() -> None:
    values = list(range(100, 0, -1))  # any order
    assert percentile(values, 0.99) == 99
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.9) == 90
    assert percentile(values, 1.0) == 100
    assert percentile(values, 0.0) == 1


def test_small_samples_take_the_value_at_or_above_the_fraction() -> None:
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([5.0], 0.99) == 5.0
    # Never interpolated: half of two values is the smaller one, a hair more is the larger.
    assert percentile([3.0, 10.0], 0.5) == 3.0
    assert percentile([3.0, 10.0], 0.51) == 10.0
    assert percentile([], 0.99) == 0.0


def test_a_fraction_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError):
        percentile([1.0], 99)
