"""The run summary: its figures per route and role, and its verdict (the percentile itself is
harness.percentiles', tested in harness/tests)."""

from legacy.traffic.stats import TrafficSummary


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
