"""Units of the data plane: cohort hashing, route matching, decisions and pins, the header policy and
signed overrides, shadow comparison, canary analysis."""

from __future__ import annotations

import dataclasses
from typing import Any

from strangler.models import Exposure, Phase
from strangler.proxy.analysis import CanaryAnalyzer
from strangler.proxy.cohort import in_canary, murmur2, weight_threshold
from strangler.proxy.pins import Pins
from strangler.proxy.request import ProxyRequest
from strangler.proxy.routing import LEGACY, NEW, RoutingTable, decide
from strangler.proxy.shadow import responses_compare
from strangler.routing_snapshot import (
    BackendSnapshot,
    RollbackBounds,
    RouteSnapshot,
    RoutingSnapshot,
    SliceSnapshot,
)


def _slice(name: str, phase: Phase, routes: list[dict[str, Any]], weight: float = 0.0) -> SliceSnapshot:
    return SliceSnapshot(
        name=name,
        phase=phase,
        canary_weight=weight,
        legacy=BackendSnapshot("legacy", ("http://127.0.0.1:1",)),
        new=BackendSnapshot(f"{name}-svc", ("http://127.0.0.1:2", "http://127.0.0.1:3")),
        shadow_enabled=False,
        shadow_sample_rate=1.0,
        shadow_compare_headers=(),
        shadow_ignore={},
        pin_after_write_seconds=5.0,
        rollback=RollbackBounds(
            max_error_rate_delta=0.05,
            max_p99_ratio=2.0,
            p99_slack_ms=10.0,
            rollback_intervals=2,
            min_interval_requests=10,
        ),
        write_freeze_until=None,
        write_freeze_max_held=10,
        routes=tuple(
            RouteSnapshot(
                name=r["name"],
                prefix=r.get("prefix", ""),
                pattern=r.get("pattern", ""),
                methods=tuple(r.get("methods", ())),
                exposure=Exposure.PUBLIC,
                position=i,
                read_only=r.get("read_only", False),
            )
            for i, r in enumerate(routes)
        ),
    )


TABLE = RoutingTable(
    RoutingSnapshot(
        version=1,
        default_backend=BackendSnapshot("legacy", ("http://127.0.0.1:1",)),
        default_exposure=Exposure.PUBLIC,
        slices=(
            _slice(
                "catalogue",
                Phase.LIVE,
                [{"name": "products", "prefix": "/shop/api/products/", "methods": ["GET"]}],
            ),
            _slice(
                "orders",
                Phase.CANARY,
                [{"name": "orders", "prefix": "/shop/api/", "methods": ["GET", "POST"]}],
                50,
            ),
            _slice(
                "special", Phase.LIVE, [{"name": "special", "pattern": r"^/shop/api/products/special-\d+/$"}]
            ),
        ),
    )
)


def test_murmur2_is_stable_and_cohorts_only_grow_with_the_weight() -> None:
    assert murmur2(b"") == murmur2(b"")
    assert murmur2(b"customer-1") != murmur2(b"customer-2")
    keys = [f"Bearer k{i}".encode() for i in range(2000)]
    previous: set[bytes] = set()
    for weight in (0, 1, 10, 10.5, 20, 50, 99.99, 100):
        cohort = {k for k in keys if in_canary(k, weight_threshold(weight))}
        assert previous <= cohort
        assert abs(len(cohort) - 20 * weight) < 80
        previous = cohort
    assert weight_threshold(100) == 0xFFFFFFFF and weight_threshold(0) == 0


def test_patterns_first_then_longest_prefix_with_method_fall_through() -> None:
    assert TABLE.match("GET", "/shop/api/products/special-7/").name == "special"
    assert TABLE.match("GET", "/shop/api/products/1/").name == "products"
    # POST is not a method of the products route: the shorter /shop/api/ prefix (orders) takes it.
    assert TABLE.match("POST", "/shop/api/products/1/").name == "orders"
    assert TABLE.match("DELETE", "/shop/api/products/1/").name == "default"
    assert TABLE.match("GET", "/crm/").name == "default"
    assert TABLE.slices["special"].new.next_address({}, 0) != TABLE.slices["special"].new.next_address({}, 0)


def _request(method: str, key: bytes, *, override: str | None = None, pinned_until: int = 0) -> ProxyRequest:
    return ProxyRequest(
        method=method,
        path="/shop/api/orders/",
        target=b"/shop/api/orders/",
        http_version="1.1",
        peer="127.0.0.1",
        forward_headers=[],
        has_host=True,
        customer_key=key,
        request_id=b"r",
        content_length=-1,
        internal_token=b"",
        override=override,
        pinned_until=pinned_until,
    )


def _decide(method: str, key: bytes, now: float, pins: Pins, **request: Any) -> str:
    route = TABLE.match(method, "/shop/api/orders/")
    decision = decide(
        table=TABLE, route=route, request=_request(method, key, **request), pins=pins, now=now, sample=0.5
    )
    return decision.generation


def test_canary_writes_stay_on_legacy_and_pin_the_writer() -> None:
    pins = Pins(max_entries=10)
    key = next(f"k{i}".encode() for i in range(100) if in_canary(f"k{i}".encode(), weight_threshold(50)))
    assert _decide("GET", key, 1000.0, pins) == NEW
    route = TABLE.match("POST", "/shop/api/orders/")
    write = decide(table=TABLE, route=route, request=_request("POST", key), pins=pins, now=1000.0, sample=0.5)
    assert write.generation == LEGACY and write.pin_seconds == 5.0
    assert _decide("GET", key, 1004.0, pins) == LEGACY
    assert _decide("GET", key, 1005.1, pins) == NEW
    assert _decide("GET", key, 1005.1, pins, override="legacy") == LEGACY


def test_a_read_only_post_route_is_canaried_and_shadowed_like_a_read_and_pins_nobody() -> None:
    quotes = _slice(
        "pricing",
        Phase.CANARY,
        [{"name": "quotes", "prefix": "/mes/api/quotes/", "methods": ["POST"], "read_only": True}],
        50,
    )
    quotes = dataclasses.replace(quotes, shadow_enabled=True)
    table = RoutingTable(
        RoutingSnapshot(
            version=1,
            default_backend=BackendSnapshot("legacy", ("http://127.0.0.1:1",)),
            default_exposure=Exposure.PUBLIC,
            slices=(quotes,),
        )
    )
    route = table.match("POST", "/mes/api/quotes/")
    keys = [f"k{i}".encode() for i in range(200)]
    inside = next(k for k in keys if in_canary(k, weight_threshold(50)))
    outside = next(k for k in keys if not in_canary(k, weight_threshold(50)))
    pins = Pins(max_entries=10)
    to_new = decide(
        table=table, route=route, request=_request("POST", inside), pins=pins, now=1.0, sample=0.5
    )
    assert (to_new.generation, to_new.pin_seconds) == (NEW, 0.0)
    mirrored = decide(
        table=table, route=route, request=_request("POST", outside), pins=pins, now=1.0, sample=0.5
    )
    assert (mirrored.generation, mirrored.shadow, mirrored.pin_seconds) == (LEGACY, True, 0.0)
    # The same POST on a route not marked read-only stays a write: legacy, pinned, never mirrored.
    write = decide(
        table=TABLE,
        route=TABLE.match("POST", "/shop/api/orders/"),
        request=_request("POST", inside),
        pins=pins,
        now=1.0,
        sample=0.5,
    )
    assert (write.generation, write.shadow) == (LEGACY, False) and write.pin_seconds > 0


def test_a_pin_cookie_is_believed_only_up_to_the_longest_pin_and_never_recorded() -> None:
    pins = Pins(max_entries=10)
    key = next(f"k{i}".encode() for i in range(100) if in_canary(f"k{i}".encode(), weight_threshold(50)))
    assert _decide("GET", key, 1000.0, pins, pinned_until=1005) == LEGACY
    assert _decide("GET", key, 1000.0, pins, pinned_until=1000 + 3600) == NEW  # not a pin the proxy set
    assert _decide("GET", key, 1000.0, pins, pinned_until=999) == NEW  # expired
    assert len(pins) == 0


def test_pins_are_bounded_least_recently_written_first() -> None:
    pins = Pins(max_entries=3)
    for i in range(10):
        pins.pin(f"customer-{i}".encode() * 1000, 60, 1000.0)
    assert len(pins) == 3
    assert pins.pinned(b"customer-9" * 1000, 1001.0) and not pins.pinned(b"customer-0" * 1000, 1001.0)
    pins.pin(b"customer-7" * 1000, 60, 1002.0)  # written again: now the most recent
    pins.pin(b"customer-x", 60, 1002.0)
    assert pins.pinned(b"customer-7" * 1000, 1003.0) and not pins.pinned(b"customer-8" * 1000, 1003.0)
    pins.purge(1100.0)
    assert len(pins) == 0


def test_shadow_comparison_ignores_noise_by_path_and_names_real_differences() -> None:
    legacy = (200, {"content-type": "application/json"}, b'{"results": [{"id": 1, "sku": "A", "at": 1}]}')
    new = (200, {"content-type": "application/json"}, b'{"results": [{"id": 9, "sku": "B", "at": 2}]}')
    rules = {"/shop/api/": ["results.*.id", "*.at"]}
    assert responses_compare(
        path="/shop/api/x", legacy=legacy, new=new, compare_headers=[], ignore=rules
    ) == ['body.results.0.sku: "A" != "B"']
    unruled = responses_compare(path="/other", legacy=legacy, new=new, compare_headers=[], ignore=rules)
    assert len(unruled) == 3
    status = responses_compare(
        path="/",
        legacy=legacy,
        new=(500, {"content-type": "text/html"}, b"x"),
        compare_headers=["content-type"],
        ignore={},
    )
    assert status[:2] == ["status: 200 != 500", "header content-type: 'application/json' != 'text/html'"]


def test_analysis_condemns_only_after_consecutive_bad_intervals() -> None:
    analyzer = CanaryAnalyzer()

    def interval(new_errors: int) -> list[tuple[str, dict[str, Any]]]:
        for i in range(20):
            analyzer.record("orders", LEGACY, 0.01, False)
            analyzer.record("orders", NEW, 0.01, i < new_errors)
        return analyzer.evaluate(TABLE)

    assert interval(5) == []  # first bad interval
    assert interval(0) == []  # a good one resets the streak
    assert interval(5) == []
    verdicts = interval(5)
    assert [name for name, _ in verdicts] == ["orders"]
    assert verdicts[0][1]["new_error_rate"] == 0.25 and verdicts[0][1]["error_bound_broken"] is True
