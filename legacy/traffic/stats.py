"""What a traffic run saw: per-route counts, statuses, errors and latency percentiles."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from harness.percentiles import percentile

# Error kinds that make a run fail; an expected status (listed per action) is never an error.
ERROR_KINDS = ("5xx", "unexpected_4xx", "unexpected_status", "bad_body", "connection", "timeout")


@dataclass
class RouteStats:
    role: str
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def count(self) -> int:
        return len(self.latencies_ms)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def record(self, *, latency_ms: float, status: str, error: str | None) -> None:
        self.latencies_ms.append(latency_ms)
        self.statuses[status] += 1
        if error:
            self.errors[error] += 1

    def figures(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)
        return {
            "role": self.role,
            "count": self.count,
            "errors": self.error_count,
            "error_kinds": dict(self.errors),
            "statuses": dict(sorted(self.statuses.items())),
            "p50_ms": round(percentile(ordered, 0.50), 2),
            "p90_ms": round(percentile(ordered, 0.90), 2),
            "p99_ms": round(percentile(ordered, 0.99), 2),
            "max_ms": round(ordered[-1], 2) if ordered else 0.0,
        }


@dataclass
class TrafficSummary:
    base_url: str
    mode: str  # "open" (fixed arrival rate) or "closed" (each slot sends when its last answer came)
    target_rate: float
    duration_s: float = 0.0
    max_dispatch_lag_ms: float = 0.0
    # CPU the generator itself spent, so a run can show the generator was not the bottleneck.
    generator_cpu_s: float = 0.0
    routes: dict[str, RouteStats] = field(default_factory=dict)
    # Error samples (route, kind, detail) so a failing run says what went wrong.
    samples: list[tuple[str, str, str]] = field(default_factory=list)

    def route(self, name: str, role: str) -> RouteStats:
        stats = self.routes.get(name)
        if stats is None:
            stats = self.routes[name] = RouteStats(role=role)
        return stats

    def record(self, *, route: str, role: str, latency_ms: float, status: str, error: str | None,
               detail: str = "") -> None:  # fmt: skip
        self.route(route, role).record(latency_ms=latency_ms, status=status, error=error)
        if error and len(self.samples) < 20:
            self.samples.append((route, error, detail[:300]))

    @property
    def requests(self) -> int:
        return sum(stats.count for stats in self.routes.values())

    @property
    def errors(self) -> int:
        return sum(stats.error_count for stats in self.routes.values())

    @property
    def achieved_rate(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def ok(self) -> bool:
        return self.errors == 0 and self.requests > 0

    def by_role(self) -> dict[str, dict[str, int]]:
        roles: dict[str, dict[str, int]] = {}
        for stats in self.routes.values():
            role = roles.setdefault(stats.role, {"requests": 0, "errors": 0})
            role["requests"] += stats.count
            role["errors"] += stats.error_count
        return roles

    def as_dict(self) -> dict[str, Any]:
        every = sorted(latency for stats in self.routes.values() for latency in stats.latencies_ms)
        return {
            "ok": self.ok,
            "base_url": self.base_url,
            "mode": self.mode,
            "target_rate": self.target_rate,
            "achieved_rate": round(self.achieved_rate, 1),
            "duration_s": round(self.duration_s, 2),
            "requests": self.requests,
            "errors": self.errors,
            "p50_ms": round(percentile(every, 0.50), 2),
            "p99_ms": round(percentile(every, 0.99), 2),
            "max_dispatch_lag_ms": round(self.max_dispatch_lag_ms, 2),
            "generator_cpu_us_per_request": round(self.generator_cpu_s * 1e6 / self.requests)
            if self.requests
            else 0,
            "by_role": self.by_role(),
            "routes": {name: self.routes[name].figures() for name in sorted(self.routes)},
            "error_samples": [list(sample) for sample in self.samples],
        }
