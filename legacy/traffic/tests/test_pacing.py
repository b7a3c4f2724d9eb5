"""The open-loop schedule and how many MES API keys keep a run under the rate limit."""

import pytest

from legacy.traffic.pacing import arrival_offsets, keys_needed, rate_per_second


def test_schedule_sends_rate_times_duration_requests_evenly() -> None:
    offsets = list(arrival_offsets(rate=4, duration=2.5))
    assert offsets == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25]


def test_schedule_handles_fractional_rates_without_losing_the_last_request() -> None:
    assert len(list(arrival_offsets(rate=0.1, duration=30))) == 3
    assert len(list(arrival_offsets(rate=333.3, duration=3))) == 999


def test_schedule_refuses_a_non_positive_rate() -> None:
    with pytest.raises(ValueError):
        list(arrival_offsets(rate=0, duration=1))


def test_rate_text_converts_to_per_second() -> None:
    assert rate_per_second("6000/min") == 100
    assert rate_per_second("10/s") == 10
    assert rate_per_second("7200/hour") == 2
    with pytest.raises(ValueError):
        rate_per_second("fast")


def test_enough_keys_to_stay_at_half_the_limit() -> None:
    assert keys_needed(rate=10, per_key_limit=100) == 1
    assert keys_needed(rate=50, per_key_limit=100) == 1
    assert keys_needed(rate=51, per_key_limit=100) == 2
    assert keys_needed(rate=0, per_key_limit=100) == 1
