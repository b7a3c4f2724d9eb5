"""The proxy's own traffic figures for the ops page, read from this process's Prometheus registry:
requests, errors and latency buckets per slice and backend (cumulative since the process started),
and the error rate and p99 of the interval between two readings.

Pure functions over metric samples (no database, no clock): the ops page takes a reading on each
poll and charts the differences between consecutive readings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import REGISTRY
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

REQUESTS_METRIC = "strangler_proxy_requests"  # _total: answers relayed, by route, backend, status
FAILURES_METRIC = "strangler_proxy_upstream_failures"  # _total: backend unreachable, timed out, broke off
LATENCY_METRIC = "strangler_proxy_upstream_seconds"  # histogram: request to response headers

# Requests the proxy's default route sends to the default backend belong to no slice.
NO_SLICE = ""


@dataclass
class BackendTraffic:
    """One backend's traffic on one slice. `answers` are responses relayed (any status), `failures`
    attempts that got no response; errors are 5xx answers plus failures, as the canary analysis counts."""

    answers: float = 0.0
    server_errors: float = 0.0
    failures: float = 0.0
    # Cumulative histogram: upper bound -> observations at or below it (math.inf included).
    buckets: dict[float, float] = field(default_factory=dict)

    @property
    def attempts(self) -> float:
        return self.answers + self.failures

    @property
    def errors(self) -> float:
        return self.server_errors + self.failures

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.attempts if self.attempts else None

    @property
    def p99_ms(self) -> float | None:
        seconds = histogram_quantile(0.99, self.buckets)
        return None if seconds is None else seconds * 1000

    def minus(self, earlier: BackendTraffic) -> BackendTraffic:
        """The traffic between an earlier reading and this one (a restart resets: then all of this)."""
        if self.attempts < earlier.attempts:
            return self
        return BackendTraffic(
            answers=self.answers - earlier.answers,
            server_errors=self.server_errors - earlier.server_errors,
            failures=self.failures - earlier.failures,
            buckets={le: count - earlier.buckets.get(le, 0.0) for le, count in self.buckets.items()},
        )


# (slice, backend) -> traffic
Traffic = dict[tuple[str, str], BackendTraffic]


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The q-quantile of a cumulative histogram, interpolated linearly inside its bucket the way
    PromQL's histogram_quantile() does; None without observations. In the +Inf bucket it is the
    highest finite bound (all that is known)."""
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def traffic_read(*, route_slices: Mapping[str, str], registry: Collector | None = None) -> Traffic:
    """This process's proxy traffic per (slice, backend). A sample's `slice` label is used when the
    metrics carry one; else its route name is looked up in `route_slices` (route name -> slice)."""
    traffic: Traffic = {}
    source = registry if registry is not None else REGISTRY

    def entry(labels: Mapping[str, str]) -> BackendTraffic:
        slice_name = labels.get("slice") or route_slices.get(labels.get("route", ""), NO_SLICE)
        key = (slice_name, labels.get("backend", "?"))
        found = traffic.get(key)
        if found is None:
            found = traffic[key] = BackendTraffic()
        return found

    for family in source.collect():
        if family.name == REQUESTS_METRIC:
            for sample in _named(family.samples, f"{REQUESTS_METRIC}_total"):
                item = entry(sample.labels)
                item.answers += sample.value
                if sample.labels.get("status", "").startswith("5"):
                    item.server_errors += sample.value
        elif family.name == FAILURES_METRIC:
            for sample in _named(family.samples, f"{FAILURES_METRIC}_total"):
                entry(sample.labels).failures += sample.value
        elif family.name == LATENCY_METRIC:
            for sample in _named(family.samples, f"{LATENCY_METRIC}_bucket"):
                bound = float(sample.labels["le"])
                item = entry(sample.labels)
                item.buckets[bound] = item.buckets.get(bound, 0.0) + sample.value
    return traffic


def _named(samples: Iterable[Sample], name: str) -> Iterable[Sample]:
    return (s for s in samples if s.name == name)


def traffic_between(earlier: Traffic, later: Traffic) -> Traffic:
    """Per (slice, backend), what happened between two readings."""
    return {key: now.minus(earlier.get(key, BackendTraffic())) for key, now in later.items()}
