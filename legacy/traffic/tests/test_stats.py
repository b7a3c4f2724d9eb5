"""Percentiles and the run summary's verdict."""

import pytest

from legacy.traffic.stats import TrafficSummary, percentile


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.90) == 90.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile(values, 0.0) == 1.0


def test_percentile_of_few_values_never_interpolates() -> None:
    assert percentile([3.0, 10.0], 0.5) == 3.0
    assert percentile([3.0, 10.0], 0.51) == 10.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.99) == 0.0


def test_percentile_refuses_a_fraction_outside_zero_to_one() -> None:
    with pytest.raises(ValueError):
        percentile([1.0], 99)


def test_summary_fails_on_any_error_and_groups_by_route_and_role() -> None:
    summary = TrafficSummary(base_url="http://x", mode="open", target_rate=10)
    summary.record(route="GET /a/", role="customer", latency_ms=2.0, status="200", error=None)
    summary.record(route="GET /a/", role="customer", latency_ms=4.0, status="200", error=None)
    summary.duration_s = 1.0
    assert summary.ok
    summary.record(route="POST /b/", role="staff", latency_ms=9.0, status="500", error="5xx", detail="boom")
    figures = summary.as_dict()
    assert not summary.ok
    assert figures["requests"] == 3 and figures["errors"] == 1
    assert figures["by_role"] == {
        "customer": {"requests": 2, "errors": 0},
        "staff": {"requests": 1, "errors": 1},
    }
    assert figures["routes"]["GET /a/"]["p50_ms"] == 2.0
    assert figures["routes"]["POST /b/"]["error_kinds"] == {"5xx": 1}
    assert figures["error_samples"] == [["POST /b/", "5xx", "boom"]]


def test_a_run_that_sent_nothing_is_not_ok() -> None:
    assert not TrafficSummary(base_url="http://x", mode="open", target_rate=10).ok
