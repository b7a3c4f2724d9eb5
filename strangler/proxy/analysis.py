"""Canary analysis: per interval, compare the new backend's error rate and p99 with legacy's on the
same slice; past the slice's bounds for N intervals in a row, the proxy rolls the slice back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from strangler.models import Phase
from strangler.proxy.routing import NEW, RoutingTable

MAX_LATENCY_SAMPLES = 5000


@dataclass
class IntervalStats:
    requests: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)

    def add(self, seconds: float, error: bool) -> None:
        self.requests += 1
        if error:
            self.errors += 1
        if len(self.latencies) < MAX_LATENCY_SAMPLES:
            self.latencies.append(seconds)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p99_ms(self) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


@dataclass
class SliceWindow:
    legacy: IntervalStats = field(default_factory=IntervalStats)
    new: IntervalStats = field(default_factory=IntervalStats)
    bad_intervals: int = 0


class CanaryAnalyzer:
    def __init__(self) -> None:
        self.windows: dict[str, SliceWindow] = {}

    def record(self, slice_name: str, generation: str, seconds: float, error: bool) -> None:
        window = self.windows.get(slice_name)
        if window is None:
            window = self.windows[slice_name] = SliceWindow()
        (window.new if generation == NEW else window.legacy).add(seconds, error)

    def evaluate(self, table: RoutingTable) -> list[tuple[str, dict[str, Any]]]:
        """Closes the interval; returns the slices to roll back with the figures that condemned them."""
        verdicts: list[tuple[str, dict[str, Any]]] = []
        for name, window in list(self.windows.items()):
            slice_ = table.slices.get(name)
            legacy, new = window.legacy, window.new
            self.windows[name] = SliceWindow(bad_intervals=window.bad_intervals)
            if slice_ is None or slice_.phase != Phase.CANARY or slice_.weight <= 0:
                self.windows[name].bad_intervals = 0
                continue
            bounds = slice_.rollback
            if new.requests < bounds["min_interval_requests"]:
                continue  # too little traffic to judge this interval
            error_bad = new.error_rate > legacy.error_rate + bounds["max_error_rate_delta"]
            latency_bad = legacy.requests >= bounds["min_interval_requests"] and (
                new.p99_ms > legacy.p99_ms * bounds["max_p99_ratio"] + bounds["p99_slack_ms"]
            )
            streak = window.bad_intervals + 1 if (error_bad or latency_bad) else 0
            self.windows[name].bad_intervals = streak
            if streak >= bounds["rollback_intervals"]:
                self.windows[name].bad_intervals = 0
                verdicts.append(
                    (
                        name,
                        {
                            "gate": "automatic canary analysis",
                            "new_requests": new.requests,
                            "new_error_rate": round(new.error_rate, 4),
                            "legacy_requests": legacy.requests,
                            "legacy_error_rate": round(legacy.error_rate, 4),
                            "new_p99_ms": round(new.p99_ms, 2),
                            "legacy_p99_ms": round(legacy.p99_ms, 2),
                            "bad_intervals": streak,
                            "error_bound_broken": error_bad,
                            "latency_bound_broken": latency_bad,
                            **bounds,
                        },
                    )
                )
        return verdicts
