"""The routing snapshot: everything a data plane needs to route, read from the control database in
one pass (selectors.routing_snapshot) and compiled by the proxy (RoutingTable) and by the nginx
export alike. Plain frozen values: no model instance or database access past this point.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from strangler.models import Exposure, Phase


@dataclass(frozen=True)
class BackendSnapshot:
    name: str
    urls: tuple[str, ...]
    health_path: str = "/healthz"


@dataclass(frozen=True)
class RouteSnapshot:
    name: str
    prefix: str
    pattern: str
    methods: tuple[str, ...]  # upper case; empty means every method
    exposure: Exposure
    position: int
    read_only: bool = False
    sunset: float | None = None  # epoch seconds; after it the route answers 410 Gone


@dataclass(frozen=True)
class RollbackBounds:
    """How far the new backend may fall behind legacy in a canary interval before it rolls back."""

    max_error_rate_delta: float
    max_p99_ratio: float
    p99_slack_ms: float
    rollback_intervals: int
    min_interval_requests: int


@dataclass(frozen=True)
class SliceSnapshot:
    name: str
    phase: Phase
    legacy: BackendSnapshot
    new: BackendSnapshot
    canary_weight: float  # percent of customers
    shadow_enabled: bool
    shadow_sample_rate: float
    shadow_compare_headers: tuple[str, ...]
    # {"/path/prefix": ("results.*.id", ...)}: JSON paths whose values never count as differences.
    shadow_ignore: Mapping[str, tuple[str, ...]]
    pin_after_write_seconds: float
    rollback: RollbackBounds
    write_freeze_until: float | None  # epoch seconds
    write_freeze_max_held: int
    routes: tuple[RouteSnapshot, ...] = field(default=())


@dataclass(frozen=True)
class RoutingSnapshot:
    version: int
    default_backend: BackendSnapshot | None
    default_exposure: Exposure
    slices: tuple[SliceSnapshot, ...]
