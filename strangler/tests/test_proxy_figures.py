"""The ops page's traffic figures from a proxy registry: per slice and backend, errors, p99."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from strangler.proxy_figures import histogram_quantile, traffic_between, traffic_read


def test_p99_is_interpolated_inside_its_bucket_as_promql_does() -> None:
    buckets = {0.01: 50.0, 0.1: 90.0, 1.0: 100.0, math.inf: 100.0}
    # rank 99 of 100 lies 9/10 of the way through the (0.1, 1.0] bucket
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.1 + 0.9 * 0.9)
    assert histogram_quantile(0.5, buckets) == 0.01
    assert histogram_quantile(0.99, {0.1: 0.0, math.inf: 0.0}) is None
    assert histogram_quantile(0.99, {0.1: 1.0, math.inf: 10.0}) == 0.1  # beyond the last bound


def test_traffic_is_summed_per_slice_and_backend_with_failures_counted_as_errors() -> None:
    registry = CollectorRegistry()
    requests = Counter(
        "strangler_proxy_requests_total", "", ["route", "backend", "status"], registry=registry
    )
    failures = Counter("strangler_proxy_upstream_failures_total", "", ["route", "backend"], registry=registry)
    latency = Histogram(
        "strangler_proxy_upstream_seconds", "", ["route", "backend"], buckets=(0.01, 0.1), registry=registry
    )
    requests.labels("products", "legacy", "200").inc(8)
    requests.labels("orders", "legacy", "503").inc(2)
    failures.labels("products", "shop").inc(1)
    requests.labels("products", "shop", "200").inc(4)
    requests.labels("default", "legacy", "200").inc(5)
    latency.labels("products", "shop").observe(0.05)
    routes = {"products": "catalogue", "orders": "catalogue"}

    before = traffic_read(route_slices=routes, registry=registry)
    legacy, shop = before[("catalogue", "legacy")], before[("catalogue", "shop")]
    assert (legacy.attempts, legacy.errors, legacy.error_rate) == (10, 2, 0.2)
    assert (shop.attempts, shop.errors, shop.error_rate) == (5, 1, 0.2)
    assert before[("", "legacy")].attempts == 5  # the default route belongs to no slice
    assert shop.p99_ms is not None and 10 < shop.p99_ms <= 100

    requests.labels("products", "shop", "200").inc(5)
    latency.labels("products", "shop").observe(0.005)
    interval = traffic_between(before, traffic_read(route_slices=routes, registry=registry))
    assert interval[("catalogue", "shop")].attempts == 5
    assert interval[("catalogue", "shop")].error_rate == 0
    assert interval[("catalogue", "legacy")].attempts == 0
