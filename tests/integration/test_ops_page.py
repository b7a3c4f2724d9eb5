"""The staff ops page (/_strangler/ops/) on a running stack: the proxy started as the README says in
front of two controllable backends, a slice moved to shadow and canary through the staff API, real
traffic through the proxy; Debian's Chromium (driven by Playwright) logs in as staff and reads the
page, whose figures must match the proxy's /_strangler/metrics and the staff API. A screenshot is
kept in .local/test-artifacts/ops-page.png."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from harness.waiting import wait_until
from ops.process_group import PROJECT_ROOT
from strangler.proxy_figures import BackendTraffic
from tests.integration.proxy_stack import (
    INTERNAL_TOKEN,
    STAFF_PASSWORD,
    LoadLoop,
    Stack,
    proxy_caught_up,
    proxy_staff_token,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(databases=["default", "control"], transaction=True),
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = PROJECT_ROOT / ".local" / "test-artifacts"
STAFF = "ops-staff"
SLICE = "catalogue"
SLICE_ROUTES = {"products", "orders", "echo"}  # the catalogue slice's routes in proxy_stack's plan
PATHS = ["/shop/api/products/", "/shop/api/products/7/"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the ops page test drives Debian's Chromium "
            "(`make system-packages`, or `apt-get install chromium`)."
        )
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread, which makes Django refuse the test's
    # own database calls (setup, flush) as "async"; they are plain sync calls, so allow them while
    # the browser runs.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


def _api(stack: Stack, token: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    url = f"{stack.proxy_url}/_strangler/api/{path}"
    headers = {"Authorization": f"Token {token}"}
    response = (
        requests.post(url, json=body, headers=headers, timeout=10)
        if body is not None
        else requests.get(url, headers=headers, timeout=10)
    )
    assert response.status_code == 200, (path, response.status_code, response.text[:500])
    return response.json()


def _promote_to(stack: Stack, token: str, phase: str) -> None:
    """Through the staff API, as an operator would (forced: the test's traffic is no real evidence)."""
    while _api(stack, token, f"slices/{SLICE}/")["phase"] != phase:
        _api(stack, token, f"slices/{SLICE}/promote/", {"force": True, "why": "ops page test"})
    proxy_caught_up(stack.proxy_url)


def _slice_in_canary(stack: Stack, token: str) -> None:
    """The slice rolled back to legacy, then legacy -> syncing -> shadow with mirrored traffic until
    the control database holds every comparison this proxy made, then canary at weight 50 with
    shadowing off (so the shadow figures stay put while the page is read)."""
    if _api(stack, token, f"slices/{SLICE}/")["phase"] != "legacy":
        _api(stack, token, f"slices/{SLICE}/rollback/", {"to": "legacy", "why": "ops page test"})
    _promote_to(stack, token, "shadow")  # starts a fresh comparison window in the control database
    before = _shadow_compared_in_metrics(stack)  # this proxy's counter runs since it started
    with LoadLoop(stack.proxy_url, PATHS, threads=2) as load:
        wait_until(lambda: load.total >= 60, seconds=30, what="60 requests in shadow")
    wait_until(
        lambda: _shadow_compared_in_db(stack, token) == _shadow_compared_in_metrics(stack) - before > 0,
        seconds=20,
        what="the proxy's shadow comparisons stored in the control database",
    )
    _promote_to(stack, token, "canary")
    _api(stack, token, f"slices/{SLICE}/shadow/", {"enabled": False, "why": "ops page test"})
    _api(stack, token, f"slices/{SLICE}/weight/", {"weight": "50", "why": "ops page test"})
    proxy_caught_up(stack.proxy_url)
    # Legacy fails some requests (errors without an automatic rollback: the new side is compared
    # with legacy's error rate); the new backend is a little slower.
    stack.backend_mode(stack.legacy_url, fail_rate=0.2, delay_ms=0, diverge=False)
    stack.backend_mode(stack.new_url, fail_rate=0, delay_ms=4, diverge=False)


def _metrics(stack: Stack) -> list[Any]:
    response = requests.get(
        f"{stack.proxy_url}/_strangler/metrics",
        headers={"X-Strangler-Internal-Token": INTERNAL_TOKEN},
        timeout=10,
    )
    assert response.status_code == 200, response.text[:300]
    return list(text_string_to_metric_families(response.text))


def _ours(labels: dict[str, str]) -> bool:
    return labels.get("slice") == SLICE if "slice" in labels else labels.get("route") in SLICE_ROUTES


def _shadow_compared_in_metrics(stack: Stack) -> int:
    return int(
        sum(
            s.value
            for family in _metrics(stack)
            if family.name == "strangler_proxy_shadow"
            for s in family.samples
            if s.name.endswith("_total")
            and s.labels.get("route") in SLICE_ROUTES
            and s.labels.get("result") in ("match", "differ")
        )
    )


def _shadow_compared_in_db(stack: Stack, token: str) -> int:
    return sum(r["compared"] for r in _api(stack, token, f"shadow/?slice={SLICE}")["results"])


def _traffic_in_metrics(stack: Stack) -> dict[str, BackendTraffic]:
    """Per backend, the slice's traffic as the proxy's /_strangler/metrics text says it."""
    traffic: dict[str, BackendTraffic] = {}
    for family in _metrics(stack):
        for sample in family.samples:
            if "backend" not in sample.labels or not _ours(sample.labels):
                continue
            item = traffic.setdefault(sample.labels["backend"], BackendTraffic())
            if sample.name == "strangler_proxy_requests_total":
                item.answers += sample.value
                item.server_errors += sample.value if sample.labels["status"].startswith("5") else 0
            elif sample.name == "strangler_proxy_upstream_failures_total":
                item.failures += sample.value
            elif sample.name == "strangler_proxy_upstream_seconds_bucket":
                bound = float(sample.labels["le"])
                item.buckets[bound] = item.buckets.get(bound, 0.0) + sample.value
    return traffic


def _log_in(page: Any, stack: Stack) -> None:
    page.goto(f"{stack.proxy_url}/_strangler/ops/")
    assert "/_strangler/admin/login/" in page.url, page.url  # anonymous: the admin's login first
    page.fill("#id_username", STAFF)
    page.fill("#id_password", STAFF_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{stack.proxy_url}/_strangler/ops/")


def _cell(page: Any, backend: str, field: str) -> str:
    return page.locator(
        f'#traffic tr[data-slice="{SLICE}"][data-backend="{backend}"] [data-field="{field}"]'
    ).inner_text()


def _shown(value: float | None, digits: int) -> str:
    return "n/a" if value is None else str(round(value, digits))


def test_anonymous_clients_get_the_login_page_or_a_refusal(stack: Stack) -> None:
    page = requests.get(f"{stack.proxy_url}/_strangler/ops/", allow_redirects=False, timeout=10)
    assert page.status_code == 302
    assert page.headers["location"].startswith("/_strangler/admin/login/?next=/_strangler/ops/")
    data = requests.get(f"{stack.proxy_url}/_strangler/api/ops/", timeout=10)
    assert data.status_code in (401, 403) and "error" in data.json(), data.text[:300]


def test_the_page_shows_each_slice_and_its_traffic_as_the_metrics_and_the_api_say(
    stack: Stack, browser: Any
) -> None:
    token = proxy_staff_token(STAFF)
    _slice_in_canary(stack, token)
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    page = context.new_page()
    _log_in(page, stack)
    assert page.locator(f'#slices tr[data-slice="{SLICE}"] [data-field="phase"]').inner_text() == "canary"

    # Traffic while the page polls: each poll is a reading; the charts draw the intervals between.
    with LoadLoop(stack.proxy_url, PATHS, threads=2) as load:
        page.wait_for_function(
            """slice => ['errors-' + slice, 'p99-' + slice].every(id => {
                 const lines = document.querySelectorAll(`svg[data-chart="${id}"] polyline`);
                 return lines.length >= 2 && [...lines].every(l => +l.dataset.points >= 2);
               })""",
            arg=SLICE,
            timeout=60_000,
        )
        assert load.total > 0
    assert load.statuses[500] > 0, load.statuses  # legacy's injected failures reached customers

    # Quiet now: the page as rendered and the proxy's metrics describe the same requests.
    page.reload()
    metrics = _traffic_in_metrics(stack)
    detail = _api(stack, token, f"slices/{SLICE}/")
    row = page.locator(f'#slices tr[data-slice="{SLICE}"]')
    assert row.locator('[data-field="phase"]').inner_text() == detail["phase"] == "canary"
    assert float(row.locator('[data-field="weight"]').inner_text()) == float(detail["canary_weight"]) == 50
    for backend in ("legacy", "new"):
        expected = metrics[backend]
        assert int(_cell(page, backend, "requests")) == expected.attempts > 0, backend
        assert int(_cell(page, backend, "errors")) == expected.errors, backend
        assert _cell(page, backend, "error_rate") == _shown(expected.error_rate, 4), backend
        assert _cell(page, backend, "p99_ms") == _shown(expected.p99_ms, 2), backend
    assert metrics["legacy"].errors > 0 and metrics["new"].errors == 0
    # Every customer request was answered by one of the two (no fallbacks: the new side never failed).
    shown_total = sum(int(_cell(page, b, "requests")) for b in ("legacy", "new"))
    assert shown_total >= load.total
    # The shadow figures are the control database's, as the staff API reports them.
    shadow = _api(stack, token, f"shadow/?slice={SLICE}")["results"]
    compared = sum(r["compared"] for r in shadow)
    differing = sum(r["differing"] for r in shadow)
    diff_cell = row.locator('[data-field="diff-rate"]').inner_text()
    assert diff_cell.startswith(_shown(differing / compared, 4)), diff_cell
    assert f"{differing} of {compared}" in diff_cell
    # The canary gate's rows: weight against 100, new against legacy over the window.
    gate = row.locator('[data-field="gate"]').inner_text()
    assert "canary -> live" in gate and "canary weight (%)" in gate and "new error rate" in gate, gate
    # The last audit entries include the operator's moves through the staff API.
    audit = page.locator("#audit").inner_text()
    assert "weight" in audit and "promote" in audit and "ops page test" in audit

    # Charts are drawn again right away from the readings this proxy keeps.
    lines = page.locator(f'svg[data-chart="errors-{SLICE}"] polyline')
    assert lines.count() == 2
    assert {lines.nth(i).get_attribute("data-series") for i in range(2)} == {"legacy", "new"}
    assert all(int(lines.nth(i).get_attribute("data-points") or 0) >= 2 for i in range(2))
    page.wait_for_function("() => +(document.body.dataset.polls || 0) >= 1", timeout=15_000)
    assert page.evaluate("document.body.dataset.pollError || ''") == ""

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "ops-page.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"ops page screenshot: {shot}")
    assert shot.stat().st_size > 10_000
    context.close()


def test_without_javascript_the_page_still_shows_the_tables(stack: Stack, browser: Any) -> None:
    token = proxy_staff_token(STAFF)
    _slice_in_canary(stack, token)
    with LoadLoop(stack.proxy_url, PATHS, threads=2) as load:
        wait_until(lambda: load.total >= 40, seconds=30, what="40 requests in canary")
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    _log_in(page, stack)
    row = page.locator(f'#slices tr[data-slice="{SLICE}"]')
    assert row.locator('[data-field="phase"]').inner_text() == "canary"
    assert float(row.locator('[data-field="weight"]').inner_text()) == 50
    metrics = _traffic_in_metrics(stack)
    for backend in ("legacy", "new"):
        assert int(_cell(page, backend, "requests")) == metrics[backend].attempts > 0
    assert page.locator('#slices tr[data-slice="production"]').count() == 1
    assert "charts need JavaScript" in page.locator("#charts").inner_text()
    context.close()
