"""The proxy process in front of two controllable backends, over real HTTP, steered through the real
control database: routing, exposure, forwarding headers, limits, cohorts, pinning, shadow, rollback,
fallback, write freeze and convergence of two proxies."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from io import StringIO

import pytest
import requests
from django.core.management import call_command

from harness.waiting import wait_until
from ops.process_group import ProcessGroup
from strangler import services
from strangler.models import AuditEntry, Backend, ShadowRouteStats, Slice
from strangler.proxy.overrides import override_token_issue
from tests.integration.proxy_stack import (
    INTERNAL_TOKEN,
    LoadLoop,
    Stack,
    proxy_caught_up,
    proxy_metrics_text,
    proxy_routing,
    proxy_start,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(databases=["default", "control"], transaction=True),
]


OVERRIDE_SECRET = "dataplane-override-secret"


@pytest.fixture(scope="module")
def proxy_env() -> dict[str, str]:
    return {"STRANGLER_OVERRIDE_SECRET": OVERRIDE_SECRET}


def served_by(response: requests.Response) -> str:
    assert response.status_code < 500, response.text
    return response.headers["x-backend-name"]


def test_routes_by_prefix_and_method(stack: Stack) -> None:
    stack.to_phase("catalogue", "live")
    get = requests.get(f"{stack.proxy_url}/shop/api/products/?page=2", timeout=5)
    assert served_by(get) == "new" and get.json()["query"] == "page=2"
    assert served_by(requests.head(f"{stack.proxy_url}/shop/api/products/", timeout=5)) == "new"
    # The route lists GET and HEAD only: a POST to the same prefix falls through to the default backend.
    assert served_by(requests.post(f"{stack.proxy_url}/shop/api/products/", json={}, timeout=5)) == "legacy"
    assert served_by(requests.get(f"{stack.proxy_url}/crm/api/orders/", timeout=5)) == "legacy"
    stack.to_phase("production", "live")
    assert served_by(requests.get(f"{stack.proxy_url}/shop/api/products/x", timeout=5)) == "new"


def test_internal_routes_are_refused_to_outside_callers(stack: Stack) -> None:
    outside = requests.get(f"{stack.proxy_url}/mes/api/production-orders/", timeout=5)
    assert outside.status_code == 403 and outside.json()["error"]["code"] == "internal_route"
    inside = requests.get(
        f"{stack.proxy_url}/mes/api/production-orders/",
        headers={"X-Strangler-Internal-Token": INTERNAL_TOKEN},
        timeout=5,
    )
    assert served_by(inside) == "legacy"
    wrong = requests.get(
        f"{stack.proxy_url}/mes/api/production-orders/",
        headers={"X-Strangler-Internal-Token": "guess"},
        timeout=5,
    )
    assert wrong.status_code == 403


def test_spoofed_forwarding_headers_are_replaced_and_ids_added(stack: Stack) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = requests.get(
        f"{stack.proxy_url}/echo/headers",
        headers={
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "evil.example",
            "Forwarded": "for=6.6.6.6",
            "X-Real-IP": "6.6.6.6",
            "Connection": "keep-alive, X-Secret",
            "X-Secret": "hop-by-hop",
            "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01",
            "X-Request-ID": "bad id!",
        },
        timeout=5,
    )
    seen = response.json()["headers"]
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == response.request.headers.get("Host", seen["host"])
    assert "forwarded" not in seen and "x-real-ip" not in seen and "x-secret" not in seen
    assert seen["traceparent"].startswith(f"00-{trace_id}-") and "00f067aa0ba902b7" not in seen["traceparent"]
    assert seen["x-request-id"] != "bad id!" and response.headers["x-request-id"] == seen["x-request-id"]
    kept = requests.get(f"{stack.proxy_url}/echo/id", headers={"X-Request-ID": "req-123"}, timeout=5)
    assert kept.json()["headers"]["x-request-id"] == "req-123" == kept.headers["x-request-id"]


def test_oversized_bodies_are_refused(stack: Stack) -> None:
    big = requests.post(f"{stack.proxy_url}/echo/upload", data=b"x" * 70_000, timeout=5)
    assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"y" * 10_000

    streamed = requests.post(f"{stack.proxy_url}/echo/upload", data=chunks(), timeout=5)
    assert streamed.status_code == 413
    ok = requests.post(f"{stack.proxy_url}/echo/upload", data=b"z" * 60_000, timeout=5)
    assert ok.status_code == 201 and ok.json()["body_bytes"] == 60_000
    streamed_ok = requests.post(f"{stack.proxy_url}/echo/upload", data=iter([b"a" * 1000] * 5), timeout=5)
    assert streamed_ok.status_code == 201 and streamed_ok.json()["body_bytes"] == 5000


def _cohort(stack: Stack, customers: int) -> set[int]:
    session = requests.Session()
    return {
        i
        for i in range(customers)
        if served_by(
            session.get(
                f"{stack.proxy_url}/shop/api/products/",
                headers={"Authorization": f"Bearer cohort-{i}"},
                timeout=5,
            )
        )
        == "new"
    }


def test_cohorts_are_sticky_and_monotonic_as_the_weight_rises(stack: Stack) -> None:
    stack.to_phase("catalogue", "canary")
    customers = 300
    previous: set[int] = set()
    for weight in ("10", "20", "50", "100"):
        services.slice_set_weight(name="catalogue", weight=Decimal(weight), who="test")
        proxy_caught_up(stack.proxy_url)
        cohort = _cohort(stack, customers)
        assert previous <= cohort, f"customers moved back at {weight}%: {sorted(previous - cohort)}"
        assert _cohort(stack, customers) == cohort  # sticky: asking again changes nothing
        expected = customers * int(weight) / 100
        assert abs(len(cohort) - expected) <= max(25, expected * 0.35), (weight, len(cohort))
        previous = cohort
    services.slice_set_weight(name="catalogue", weight=Decimal("0"), who="test")
    proxy_caught_up(stack.proxy_url)
    assert _cohort(stack, 50) == set()
    # Authorised testers pick a backend with a signed token in a header or a cookie.
    token = override_token_issue(backend="new", secret=OVERRIDE_SECRET, expires_at=int(time.time()) + 60)
    header = requests.get(
        f"{stack.proxy_url}/shop/api/products/", headers={"X-Strangler-Backend": token}, timeout=5
    )
    cookie = requests.get(
        f"{stack.proxy_url}/shop/api/products/", cookies={"strangler_backend": token}, timeout=5
    )
    assert served_by(header) == served_by(cookie) == "new"


def test_a_customer_who_wrote_reads_from_legacy_until_sync_caught_up(stack: Stack) -> None:
    stack.to_phase("catalogue", "canary")
    services.slice_set_weight(name="catalogue", weight=Decimal("100"), who="test")
    proxy_caught_up(stack.proxy_url)
    session = requests.Session()
    session.headers["Authorization"] = "Bearer writer-1"
    assert served_by(session.get(f"{stack.proxy_url}/shop/api/orders/", timeout=5)) == "new"
    written = session.post(f"{stack.proxy_url}/shop/api/orders/", json={"lines": []}, timeout=5)
    assert served_by(written) == "legacy"  # writes stay on legacy until the live cutover
    wrote_at = time.monotonic()
    assert served_by(session.get(f"{stack.proxy_url}/shop/api/orders/", timeout=5)) == "legacy"
    other = requests.get(
        f"{stack.proxy_url}/shop/api/orders/", headers={"Authorization": "Bearer reader"}, timeout=5
    )
    assert served_by(other) == "new"
    # Browsers carry the pin in a cookie, so a proxy that did not see the write honours it too.
    pin = str(written.cookies["strangler_pin"])
    with_cookie = requests.get(
        f"{stack.proxy_url}/shop/api/orders/",
        cookies={"strangler_pin": pin},
        headers={"Authorization": "Bearer another-reader"},
        timeout=5,
    )
    assert served_by(with_cookie) == "legacy"
    started = time.monotonic()
    wait_until(
        lambda: served_by(session.get(f"{stack.proxy_url}/shop/api/orders/", timeout=5)) == "new",
        seconds=5,
        what="the writer's reads back on new",
    )
    assert 1.0 <= time.monotonic() - wrote_at and time.monotonic() - started < 3.0


def _shadow_totals() -> tuple[int, int]:
    rows = ShadowRouteStats.objects.using("control").filter(slice_name="catalogue")
    return sum(r.compared for r in rows), sum(r.differing for r in rows)


def test_shadow_compares_after_answering_applies_noise_rules_and_reports_diffs(stack: Stack) -> None:
    stack.to_phase("catalogue", "shadow")
    time.sleep(1.2)  # the proxy flushes shadow results of earlier tests once a second
    services.shadow_stats_reset(name="catalogue", who="test")
    session = requests.Session()
    for i in range(20):
        response = session.get(f"{stack.proxy_url}/shop/api/products/?i={i}", timeout=5)
        assert served_by(response) == "legacy"  # the customer's answer always comes from legacy
    # ids and timestamps differ on every answer, but the noise rules ignore them.

    wait_until(lambda: _shadow_totals()[0] >= 20, seconds=5)
    assert _shadow_totals() == (20, 0)
    stack.backend_mode(stack.new_url, diverge=True)
    for i in range(10):
        session.get(f"{stack.proxy_url}/shop/api/products/?d={i}", timeout=5)
    wait_until(lambda: _shadow_totals()[0] >= 30, seconds=5)
    assert _shadow_totals() == (30, 10)
    out = StringIO()
    call_command("strangler", "shadow-report", "--slice", "catalogue", stdout=out)
    report = out.getvalue()
    assert "catalogue/products: compared=30 differing=10" in report
    assert 'body.value: "stable" != "diverged"' in report
    # A slow shadow target never slows the customer: the mirror runs after the answer went out.
    stack.backend_mode(stack.new_url, delay_ms=800, diverge=False)
    started = time.monotonic()
    session.get(f"{stack.proxy_url}/shop/api/products/?slow=1", timeout=5)
    assert time.monotonic() - started < 0.5


def test_failing_new_backend_is_rolled_back_automatically_without_customer_errors(stack: Stack) -> None:
    stack.to_phase("catalogue", "canary")
    services.slice_set_weight(name="catalogue", weight=Decimal("50"), who="test")
    proxy_caught_up(stack.proxy_url)
    with LoadLoop(stack.proxy_url, ["/shop/api/products/"], threads=3) as load:
        time.sleep(1.0)
        stack.backend_mode(stack.new_url, fail_rate=1.0, fail_status=503)

        wait_until(lambda: Slice.objects.using("control").get(name="catalogue").phase == "shadow", seconds=10)
        time.sleep(0.5)
    assert load.errors == [], load.errors[:5]
    slice_ = Slice.objects.using("control").get(name="catalogue")
    assert slice_.canary_weight == 0
    entry = AuditEntry.objects.using("control").filter(action="rollback").latest("id")
    assert entry.who.startswith("proxy:") and entry.from_state["phase"] == "canary"
    assert entry.to_state["phase"] == "shadow" and entry.gate["new_error_rate"] > 0.05
    assert entry.gate["error_bound_broken"] is True and "automatic rollback" in entry.why


def test_idempotent_reads_fall_back_to_legacy_while_the_new_backend_is_down(stack: Stack) -> None:
    stack.to_phase("catalogue", "canary")
    services.slice_set_weight(name="catalogue", weight=Decimal("100"), who="test")
    services.slice_set_paused(name="catalogue", paused=True, who="test")
    proxy_caught_up(stack.proxy_url)
    stack.new.stop()
    try:
        session = requests.Session()
        for i in range(30):
            response = session.get(
                f"{stack.proxy_url}/shop/api/products/",
                headers={"Authorization": f"Bearer down-{i}"},
                timeout=5,
            )
            assert served_by(response) == "legacy"
        # The health checks notice too, and operators see it.
        wait_until(lambda: not Backend.objects.using("control").get(name="new").healthy, seconds=10)
        out = StringIO()
        call_command("strangler", "backends", stdout=out)
        assert re.search(r"^new\s.*\sDOWN since ", out.getvalue(), re.M), out.getvalue()
    finally:
        stack.restart_new()
    wait_until(lambda: Backend.objects.using("control").get(name="new").healthy, seconds=10)


def test_write_freeze_holds_writes_and_releases_them_to_the_new_owner_after_the_flip(stack: Stack) -> None:
    stack.to_phase("catalogue", "canary")
    services.slice_set_weight(name="catalogue", weight=Decimal("100"), who="test")
    services.write_freeze_start(name="catalogue", seconds=10, max_held=2, who="test")
    proxy_caught_up(stack.proxy_url)
    results: list[requests.Response] = []

    def write() -> None:
        results.append(requests.post(f"{stack.proxy_url}/shop/api/orders/", json={}, timeout=15))

    writers = [threading.Thread(target=write) for _ in range(2)]
    for thread in writers:
        thread.start()
    time.sleep(0.6)
    assert results == []  # held
    overflow = requests.post(f"{stack.proxy_url}/shop/api/orders/", json={}, timeout=5)
    assert overflow.status_code == 503 and overflow.headers["retry-after"] == "1"
    # Reads are not held (this reader has not written, so it is not pinned to legacy either).
    reads = requests.get(
        f"{stack.proxy_url}/shop/api/orders/", headers={"Authorization": "Bearer r"}, timeout=5
    )
    assert served_by(reads) == "new"
    flipped_at = time.monotonic()
    services.write_freeze_release(name="catalogue", promote=True, who="test", why="cutover")
    for thread in writers:
        thread.join(timeout=10)
    assert [served_by(r) for r in results] == ["new", "new"]
    assert time.monotonic() - flipped_at < 1.0


def test_two_proxy_processes_converge_on_a_change_within_a_second(stack: Stack) -> None:
    stack.to_phase("catalogue", "canary")
    with ProcessGroup() as group:
        _, second_url = proxy_start(group, stack.env, "second")
        proxy_caught_up(stack.proxy_url, second_url)
        services.slice_set_weight(name="catalogue", weight=Decimal("37.5"), who="test")
        started = time.monotonic()
        proxy_caught_up(stack.proxy_url, second_url)
        took = time.monotonic() - started
        assert took < 1.0, took
        for url in (stack.proxy_url, second_url):
            assert proxy_routing(url)["slices"]["catalogue"]["weight"] == 37.5
        customers = [f"Bearer conv-{i}" for i in range(40)]
        first = [
            requests.get(
                f"{stack.proxy_url}/shop/api/products/", headers={"Authorization": c}, timeout=5
            ).headers["x-backend-name"]
            for c in customers
        ]
        second = [
            requests.get(f"{second_url}/shop/api/products/", headers={"Authorization": c}, timeout=5).headers[
                "x-backend-name"
            ]
            for c in customers
        ]
        assert first == second


def test_large_responses_stream_through_intact(stack: Stack) -> None:
    size = 3 * 1024 * 1024 + 7
    response = requests.get(f"{stack.proxy_url}/stream/{size}", stream=True, timeout=10)
    received = b"".join(response.iter_content(65536))
    assert response.status_code == 200 and len(received) == size
    assert received[:512] == bytes(range(256)) * 2


def test_a_backend_slower_than_the_read_timeout_gets_504_and_reads_fall_back(stack: Stack) -> None:
    stack.backend_mode(stack.legacy_url, delay_ms=2500)
    try:
        slow = requests.get(f"{stack.proxy_url}/other/slow", timeout=10)
        assert slow.status_code == 504 and slow.json()["error"]["code"] == "upstream_timeout"
    finally:
        stack.backend_mode(stack.legacy_url, delay_ms=0)
    stack.to_phase("catalogue", "canary")
    services.slice_set_weight(name="catalogue", weight=Decimal("100"), who="test")
    services.slice_set_paused(name="catalogue", paused=True, who="test")  # no rollback in the middle
    proxy_caught_up(stack.proxy_url)
    stack.backend_mode(stack.new_url, delay_ms=2500)
    started = time.monotonic()
    fallen_back = requests.get(
        f"{stack.proxy_url}/shop/api/products/", headers={"Authorization": "Bearer t"}, timeout=10
    )
    assert served_by(fallen_back) == "legacy" and time.monotonic() - started < 4
    # Legacy too slow as well: the fallback's timeout is a 504 like any other, not a 502.
    stack.backend_mode(stack.legacy_url, delay_ms=2500)
    try:
        both = requests.get(
            f"{stack.proxy_url}/shop/api/products/", headers={"Authorization": "Bearer t"}, timeout=15
        )
        assert both.status_code == 504 and both.json()["error"]["code"] == "upstream_timeout", both.text
    finally:
        stack.backend_mode(stack.legacy_url, delay_ms=0)


def test_metrics_count_requests_per_route_and_backend(stack: Stack) -> None:
    stack.to_phase("catalogue", "live")
    for _ in range(3):
        requests.get(f"{stack.proxy_url}/shop/api/products/", timeout=5)
    text = proxy_metrics_text(stack.proxy_url)
    assert (
        'strangler_proxy_requests_total{backend="new",route="products",slice="catalogue",status="200"}'
        in text
    )
    assert "strangler_proxy_upstream_seconds_bucket" in text


def test_metrics_show_each_slices_phase_and_canary_weight(stack: Stack) -> None:
    stack.to_phase("catalogue", "live")
    text = proxy_metrics_text(stack.proxy_url)
    assert 'strangler_slice_phase{phase="live",slice="catalogue"} 1.0' in text
    assert 'strangler_slice_phase{phase="canary",slice="catalogue"} 0.0' in text
    assert 'strangler_slice_canary_weight_percent{slice="catalogue"}' in text
