"""The in-memory routing table compiled from a control-plane snapshot, and the per-request decision.

Matching: regex patterns first in plan order, then the longest matching path prefix whose methods
include the request's (the order nginx uses for `location ~` and prefix locations). A path no route
claims goes to the default backend. No database access happens per request.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from strangler.models import Phase
from strangler.proxy.cohort import in_canary, weight_threshold
from strangler.proxy.pins import Pins
from strangler.proxy.request import ProxyRequest
from strangler.routing_snapshot import BackendSnapshot, RoutingSnapshot

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LEGACY, NEW = "legacy", "new"
_CACHE_LIMIT = 20_000
# Paths longer than this are matched every time, not cached: a client choosing long distinct paths
# must not be able to fill the cache with kilobytes each.
_CACHE_MAX_PATH = 256


@dataclass
class BackendTarget:
    """A named backend with one or more host:port addresses, picked round robin."""

    name: str
    addresses: list[tuple[str, int]]
    health_path: str = "/healthz"
    _cycle: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._cycle = itertools.cycle(range(len(self.addresses)))

    def next_address(self, unhealthy: dict[tuple[str, int], float], now: float) -> tuple[str, int]:
        for _ in range(len(self.addresses)):
            address = self.addresses[next(self._cycle)]
            if unhealthy.get(address, 0.0) <= now:
                return address
        return self.addresses[next(self._cycle)]  # all marked down: try anyway rather than fail


def _target(backend: BackendSnapshot) -> BackendTarget:
    addresses = []
    for url in backend.urls:
        parts = urlsplit(url)
        addresses.append((parts.hostname or "127.0.0.1", parts.port or 80))
    return BackendTarget(backend.name, addresses, backend.health_path)


@dataclass
class SliceRuntime:
    name: str
    phase: Phase
    legacy: BackendTarget
    new: BackendTarget
    weight: float
    threshold: int
    shadow_enabled: bool
    shadow_sample_rate: float
    shadow_compare_headers: list[str]
    shadow_ignore: dict[str, list[str]]
    pin_seconds: float
    rollback: dict[str, float]
    freeze_until: float | None
    freeze_max_held: int

    def frozen(self, now: float) -> bool:
        return self.freeze_until is not None and self.freeze_until > now


@dataclass
class RouteRuntime:
    name: str
    slice: SliceRuntime | None
    exposure: str
    methods: frozenset[str]
    prefix: str = ""
    pattern: re.Pattern[str] | None = None
    sunset: float | None = None  # epoch seconds
    read_only: bool = False  # every method only reads (see strangler.plan.RouteSpec.read_only)

    def reads(self, method: str) -> bool:
        return self.read_only or method in SAFE_METHODS


@dataclass
class Decision:
    route: RouteRuntime
    generation: str  # LEGACY or NEW
    backend: BackendTarget
    shadow: bool = False
    reason: str = ""
    pin_seconds: float = 0.0  # set when this write pinned the customer to legacy
    version: int = 0  # of the routing table that decided; access logs show which change routed what


class RoutingTable:
    def __init__(self, snapshot: RoutingSnapshot) -> None:
        self.version: int = snapshot.version
        self.slices: dict[str, SliceRuntime] = {}
        self.patterns: list[RouteRuntime] = []
        self.prefixes: list[tuple[str, list[RouteRuntime]]] = []
        default = snapshot.default_backend
        self.default_backend = _target(default) if default else None
        self.default_route = RouteRuntime(
            name="default", slice=None, exposure=snapshot.default_exposure, methods=frozenset()
        )
        by_prefix: dict[str, list[RouteRuntime]] = {}
        for raw in snapshot.slices:
            slice_ = SliceRuntime(
                name=raw.name,
                phase=raw.phase,
                legacy=_target(raw.legacy),
                new=_target(raw.new),
                weight=raw.canary_weight,
                threshold=weight_threshold(raw.canary_weight),
                shadow_enabled=raw.shadow_enabled,
                shadow_sample_rate=raw.shadow_sample_rate,
                shadow_compare_headers=[h.lower() for h in raw.shadow_compare_headers],
                shadow_ignore={prefix: list(paths) for prefix, paths in raw.shadow_ignore.items()},
                pin_seconds=raw.pin_after_write_seconds,
                rollback=dataclasses.asdict(raw.rollback),
                freeze_until=raw.write_freeze_until,
                freeze_max_held=raw.write_freeze_max_held,
            )
            self.slices[slice_.name] = slice_
            for r in sorted(raw.routes, key=lambda r: r.position):
                route = RouteRuntime(
                    r.name,
                    slice_,
                    r.exposure,
                    frozenset(r.methods),
                    r.prefix,
                    read_only=r.read_only,
                    sunset=r.sunset,
                )
                if r.pattern:
                    route.pattern = re.compile(r.pattern)
                    self.patterns.append(route)
                else:
                    by_prefix.setdefault(r.prefix, []).append(route)
        self.prefixes = sorted(by_prefix.items(), key=lambda item: len(item[0]), reverse=True)
        # A write outside every slice may still change data a canary slice reads: pin for the longest.
        self.default_pin_seconds = max(
            (s.pin_seconds for s in self.slices.values() if s.phase == Phase.CANARY), default=0.0
        )
        self._cache: dict[tuple[str, str], RouteRuntime] = {}

    def match(self, method: str, path: str) -> RouteRuntime:
        if len(path) > _CACHE_MAX_PATH:
            return self._match(method, path)
        key = (method, path)
        route = self._cache.get(key)
        if route is not None:
            return route
        route = self._match(method, path)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = route
        return route

    def _match(self, method: str, path: str) -> RouteRuntime:
        for route in self.patterns:
            if (not route.methods or method in route.methods) and route.pattern and route.pattern.match(path):
                return route
        for prefix, routes in self.prefixes:
            if path.startswith(prefix):
                for route in routes:
                    if not route.methods or method in route.methods:
                        return route
        return self.default_route


def decide(
    *, table: RoutingTable, route: RouteRuntime, request: ProxyRequest, pins: Pins, now: float, sample: float
) -> Decision:
    """Which generation answers this request, and whether a shadow copy goes to the new backend.

    Pins are written only where read-your-writes needs them: a write while a slice is in canary."""
    slice_ = route.slice
    method = request.method
    key = request.customer_key
    if slice_ is None:
        assert table.default_backend is not None
        if method not in SAFE_METHODS and table.default_pin_seconds:
            pins.pin(key, table.default_pin_seconds, now)
            return Decision(
                route, LEGACY, table.default_backend, reason="default", pin_seconds=table.default_pin_seconds
            )
        return Decision(route, LEGACY, table.default_backend, reason="default")
    phase = slice_.phase
    read = route.reads(method)
    if phase in (Phase.LIVE, Phase.RETIRED):
        return Decision(route, NEW, slice_.new, reason=phase)
    if phase in (Phase.LEGACY, Phase.SYNCING) or not read:
        if not read and phase == Phase.CANARY:
            pins.pin(key, slice_.pin_seconds, now)
            return Decision(
                route, LEGACY, slice_.legacy, reason="writes stay on legacy", pin_seconds=slice_.pin_seconds
            )
        return Decision(route, LEGACY, slice_.legacy, reason="writes stay on legacy" if not read else phase)
    # shadow or canary, and a read
    override = request.override
    if override == NEW:
        return Decision(route, NEW, slice_.new, reason="override")
    if override == LEGACY:
        return Decision(route, LEGACY, slice_.legacy, reason="override")
    canary = phase == Phase.CANARY
    pinned = canary and (pins.pinned(key, now) or _cookie_pinned(table, request.pinned_until, now))
    if canary and slice_.threshold and not pinned and in_canary(key, slice_.threshold):
        return Decision(route, NEW, slice_.new, reason="cohort")
    shadow = slice_.shadow_enabled and sample < slice_.shadow_sample_rate
    return Decision(
        route, LEGACY, slice_.legacy, shadow=shadow, reason="pinned after write" if pinned else "cohort"
    )


def _cookie_pinned(table: RoutingTable, until: int, now: float) -> bool:
    """A pin cookie (set on an earlier write, perhaps by another proxy) is believed only up to the
    longest pin a canary slice gives (plus the second the cookie was rounded up by); it is read per
    request and never recorded, so cookies cannot fill this process's memory."""
    return now < until <= now + table.default_pin_seconds + 1


def wall_now() -> float:
    """Epoch seconds: freeze deadlines come from the database as wall-clock times."""
    return time.time()
