"""Prometheus metrics of the proxy per route and backend; label children are cached because
`labels()` costs a dictionary build and lock per call on the hot path."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "strangler_proxy_requests_total",
    "Requests answered by the proxy (its own 502/504 for a failed backend included)",
    ["route", "backend", "slice", "status"],
)
LATENCY = Histogram(
    "strangler_proxy_upstream_seconds",
    "Time from request to the backend's response headers",
    ["route", "backend", "slice"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
UPSTREAM_FAILURES = Counter(
    "strangler_proxy_upstream_failures_total",
    "Backend unreachable, timed out or broke off",
    ["route", "backend", "slice"],
)
FALLBACKS = Counter(
    "strangler_proxy_fallbacks_total",
    "Idempotent requests answered by legacy after the new backend failed",
    ["route"],
)
SHADOW = Counter("strangler_proxy_shadow_total", "Shadow comparisons", ["route", "slice", "result"])
HELD_WRITES = Gauge("strangler_proxy_held_writes", "Writes held by a write freeze", ["slice"])
FREEZE_SECONDS = Histogram(
    "strangler_freeze_seconds",
    "Cutover write freezes as this proxy saw them, from the first table with the slice frozen to the "
    "first without (outcome flipped: the slice changed phase; released: aborted or unfrozen)",
    ["slice", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30),
)
ROUTING_VERSION = Gauge("strangler_proxy_routing_version", "Routing table version in memory")
PINS_EVICTED = Counter(
    "strangler_proxy_pins_evicted_total", "Read-your-writes pins dropped because the pin table was full"
)
CLIENT_READ_TIMEOUTS = Counter(
    "strangler_proxy_client_read_timeouts_total",
    "Requests closed because their headers or body did not arrive within the read deadline",
    ["phase"],
)
ROLLBACKS = Counter("strangler_proxy_automatic_rollbacks_total", "Automatic rollbacks", ["slice"])

# The slice label of routes that belong to no slice (the plan's default backend).
NO_SLICE = "none"

_requests: dict[tuple[str, str, str, int], object] = {}
_latency: dict[tuple[str, str, str], object] = {}


def observe(route: str, backend: str, slice_: str, status: int, seconds: float) -> None:
    child = _requests.get((route, backend, slice_, status))
    if child is None:
        child = _requests[(route, backend, slice_, status)] = REQUESTS.labels(
            route, backend, slice_, str(status)
        )
    child.inc()  # type: ignore[attr-defined]
    timer = _latency.get((route, backend, slice_))
    if timer is None:
        timer = _latency[(route, backend, slice_)] = LATENCY.labels(route, backend, slice_)
    timer.observe(seconds)  # type: ignore[attr-defined]
