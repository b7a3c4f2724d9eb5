"""The running monolith's operational surface and HTML pages: health, metrics, request ids, JSON
logs, JSON 404s, the OpenAPI schema, and the shop pages a person uses in a browser."""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from django.core.management import call_command
from prometheus_client.parser import text_string_to_metric_families

from legacy.shop.models import Customer, Order
from tests.integration.legacy_api_world import World, assert_error_body, row_counts, shared_world

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def world(legacy_stack, django_db_blocker) -> Iterator[World]:  # type: ignore[no-untyped-def]
    yield from shared_world(django_db_blocker)


@pytest.mark.parametrize(("path", "status"), [("/healthz", "ok"), ("/readyz", "ready")])
def test_health_and_readiness_answer(legacy_stack, path: str, status: str) -> None:  # type: ignore[no-untyped-def]
    response = requests.get(legacy_stack.base_url + path, timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": status, "service": "legacy"}


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/nope", "No route for /nope."),
        ("/shop/api/nope/", "No route for /shop/api/nope/."),
        ("/crm/api/orders/abc/", "No route for /crm/api/orders/abc/."),
        ("/shop/orders/not-a-uuid/", "No route for /shop/orders/not-a-uuid/."),
        ("/shop/orders/00000000-0000-4000-8000-000000000000/", "No Order matches the given query."),
        ("/shop/api/products/NO-SUCH-SKU/", "No Product matches the given query."),
        ("/shop/api/products/%00/", "No route for /shop/api/products/\x00/."),
    ],
)
def test_not_found_comes_back_in_the_json_error_format(
    legacy_stack, world: World, path: str, message: str
) -> None:  # type: ignore[no-untyped-def]
    response = requests.get(legacy_stack.base_url + path, timeout=10)
    error = assert_error_body(response, 404, "not_found")
    assert error["message"] == message


# Responses of every kind the monolith gives; each must carry a request id.
RESPONSES = [
    ("GET", "/healthz", {}, None),
    ("GET", "/metrics", {}, None),
    ("GET", "/shop/", {}, None),
    ("GET", "/shop/api/products/", {}, None),
    ("GET", "/nope", {}, None),
    ("GET", "/crm/api/orders/", {}, None),
    ("POST", "/mes/api/quotes/", {"X-API-Key": "wrong"}, b"{}"),
    ("POST", "/shop/api/orders/", {"Content-Type": "application/json"}, b" " * (256 * 1024 + 1)),
    ("POST", "/shop/order/", {}, b"email=x"),  # refused by the CSRF check
]


@pytest.mark.parametrize(
    ("method", "path", "headers", "body"), RESPONSES, ids=[f"{m} {p}" for m, p, _, _ in RESPONSES]
)
def test_every_response_carries_a_request_id_and_echoes_a_well_formed_one(  # type: ignore[no-untyped-def]
    legacy_stack, method: str, path: str, headers: dict[str, str], body: bytes | None
) -> None:
    url = legacy_stack.base_url + path
    generated = requests.request(method, url, headers=headers, data=body, timeout=10)
    assert GENERATED_ID.match(generated.headers["X-Request-ID"]), generated.headers
    mine = f"test.{uuid.uuid4().hex}"
    echoed = requests.request(method, url, headers={**headers, "X-Request-ID": mine}, data=body, timeout=10)
    assert echoed.headers["X-Request-ID"] == mine
    for malformed in ["has spaces in it", "x" * 129, "semi;colon"]:
        replaced = requests.request(
            method, url, headers={**headers, "X-Request-ID": malformed}, data=body, timeout=10
        )
        assert GENERATED_ID.match(replaced.headers["X-Request-ID"]), (malformed, replaced.headers)


def requests_total(base_url: str) -> dict[tuple[str, str, str], float]:
    """http_requests_total of the web process by (route, method, status)."""
    response = requests.get(f"{base_url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    totals = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "http_requests_total":
                assert sample.labels["service"] == "legacy"
                key = (sample.labels["route"], sample.labels["method"], sample.labels["status"])
                totals[key] = sample.value
    return totals


def test_metrics_count_requests_per_route_method_and_status(legacy_stack, world: World) -> None:  # type: ignore[no-untyped-def]
    base = legacy_stack.base_url
    key = {"X-API-Key": world.api_key}
    quote = {"sku": world.product.sku, "quantity": 1}
    before = requests_total(base)
    requests.get(f"{base}/shop/api/products/", timeout=10)
    requests.get(f"{base}/shop/api/products/", timeout=10)
    requests.get(f"{base}/shop/api/products/{world.product.sku}/", timeout=10)
    requests.post(f"{base}/mes/api/quotes/", json=quote, headers=key, timeout=10)
    requests.post(f"{base}/mes/api/quotes/", json={**quote, "quantity": 0}, headers=key, timeout=10)
    requests.get(f"{base}/no/such/route", timeout=10)
    after = requests_total(base)
    expected = {
        ("shop/api/products/", "GET", "200"): 2,
        ("shop/api/products/<sku:sku>/", "GET", "200"): 1,
        ("mes/api/quotes/", "POST", "200"): 1,
        ("mes/api/quotes/", "POST", "400"): 1,
        ("unmatched", "GET", "404"): 1,
    }
    for labels, count in expected.items():
        assert after.get(labels, 0) - before.get(labels, 0) == count, labels


def web_log_lines_since(log_path: Path, offset: int, wanted: set[str], seconds: float = 10) -> list[dict]:
    """The web process's log lines written after `offset`, once every id in `wanted` is among them."""
    deadline = time.monotonic() + seconds
    while True:
        with log_path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode()
        lines = [line for line in text.splitlines() if line.strip()]
        parsed = []
        for line in lines:
            try:
                parsed.append(json.loads(line))
            except ValueError:
                pytest.fail(f"a log line of the web process is not JSON: {line[:300]}")
        if wanted <= {entry.get("request_id") for entry in parsed} or time.monotonic() > deadline:
            return parsed
        time.sleep(0.1)


def test_web_process_logs_json_lines_with_the_request_id(legacy_stack, world: World) -> None:  # type: ignore[no-untyped-def]
    log_path = legacy_stack.processes["web"].log_path
    offset = log_path.stat().st_size
    base = legacy_stack.base_url
    ids = {
        name: f"log.{name}.{uuid.uuid4().hex[:12]}"
        for name in ["missing", "refused", "unprocessable", "schema"]
    }
    requests.get(f"{base}/no/such/route", headers={"X-Request-ID": ids["missing"]}, timeout=10)
    requests.get(f"{base}/crm/api/orders/", headers={"X-Request-ID": ids["refused"]}, timeout=10)
    requests.post(
        f"{base}/mes/api/quotes/",
        json={"sku": world.product.sku, "quantity": 1, "options": ["gold-leaf"]},
        headers={"X-Request-ID": ids["unprocessable"], "X-API-Key": world.api_key},
        timeout=10,
    )
    requests.get(f"{base}/api/schema/", headers={"X-Request-ID": ids["schema"]}, timeout=30)
    # 4xx responses are logged at WARNING, the level the test stack runs at; the schema request
    # logs nothing when the schema generates cleanly, and is here to catch plain-text warnings.
    wanted = {ids["missing"], ids["refused"], ids["unprocessable"]}
    lines = web_log_lines_since(log_path, offset, wanted)
    by_id = {entry.get("request_id"): entry for entry in lines}
    assert wanted <= set(by_id), lines
    for request_id in wanted:
        entry = by_id[request_id]
        assert entry["level"] == "warning"
        assert entry["timestamp"].endswith("Z")
        assert "event" in entry and "logger" in entry
    assert "/no/such/route" in by_id[ids["missing"]]["event"]
    for entry in lines:
        assert entry.get("request_id"), entry


def test_openapi_schema_renders(legacy_stack) -> None:  # type: ignore[no-untyped-def]
    response = requests.get(f"{legacy_stack.base_url}/api/schema/", timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/vnd.oai.openapi")
    schema = yaml.safe_load(response.text)
    as_json = requests.get(f"{legacy_stack.base_url}/api/schema/?format=json", timeout=30).json()
    assert schema == as_json
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    assert {"/shop/api/orders/", "/crm/api/orders/{id}/confirm/", "/mes/api/quotes/"} <= set(paths)
    assert paths["/shop/api/orders/"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        # A request body has its own component (COMPONENT_SPLIT_REQUEST): it says minLength etc.
        "$ref": "#/components/schemas/OrderPlaceRequest"
    }
    assert {"customerToken", "mesApiKey", "tokenAuth"} <= set(schema["components"]["securitySchemes"])


def test_openapi_schema_generates_without_warnings_and_validates() -> None:
    # --fail-on-warn raises on any warning or error drf-spectacular reports; --validate checks the
    # result against the OpenAPI 3 JSON schema.
    out = io.StringIO()
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", "/dev/null", stdout=out, stderr=out)


CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def order_form_session(base_url: str, sku: str) -> tuple[requests.Session, str]:
    session = requests.Session()
    page = session.get(f"{base_url}/shop/order/?sku={sku}", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert f'value="{sku}"' in page.text
    match = CSRF_INPUT.search(page.text)
    assert match, page.text
    return session, match.group(1)


def test_catalogue_page_lists_the_products(legacy_stack, world: World) -> None:  # type: ignore[no-untyped-def]
    page = requests.get(f"{legacy_stack.base_url}/shop/", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert world.product.sku in page.text
    assert "lacquer" in page.text


def test_order_form_places_an_order_and_shows_its_status(legacy_stack, world: World) -> None:  # type: ignore[no-untyped-def]
    base = legacy_stack.base_url
    session, token = order_form_session(base, world.product.sku)
    form = {
        "csrfmiddlewaretoken": token,
        "email": f"walk-in-{uuid.uuid4().hex[:8]}@example.test",
        "name": "Walk In",
        "sku": world.product.sku,
        "quantity": "2",
        "options": "lacquer",
    }
    placed = session.post(f"{base}/shop/order/", data=form, allow_redirects=False, timeout=10)
    assert placed.status_code == 302, placed.text[:500]
    location = placed.headers["Location"]
    public_id = re.fullmatch(r"/shop/orders/([0-9a-f-]{36})/", location).group(1)  # type: ignore[union-attr]
    order = Order.objects.get(public_id=public_id)
    assert (order.customer.email, order.lines.get().quantity, order.lines.get().options) == (
        form["email"],
        2,
        ["lacquer"],
    )
    status_page = session.get(base + location, timeout=10)
    assert status_page.status_code == 200
    assert '<strong id="status">placed</strong>' in status_page.text
    assert str(order.total) in status_page.text


@pytest.mark.parametrize(
    ("changes", "shown"),
    [
        ({"quantity": "0"}, "Ensure this value is greater than or equal to 1."),
        ({"quantity": "lots"}, "Enter a whole number."),
        ({"email": "not-an-email"}, "Enter a valid email address."),
        ({"sku": "NO-SUCH-SKU"}, "Unknown or unavailable product: NO-SUCH-SKU."),
        ({"options": "gold-leaf"}, "has no option gold-leaf."),
    ],
)
def test_a_bad_order_form_is_shown_again_with_the_reason_and_writes_nothing(  # type: ignore[no-untyped-def]
    legacy_stack, world: World, changes: dict[str, str], shown: str
) -> None:
    base = legacy_stack.base_url
    session, token = order_form_session(base, world.product.sku)
    form = {
        "csrfmiddlewaretoken": token,
        "email": f"new-{uuid.uuid4().hex[:8]}@example.test",
        "name": "New Customer",
        "sku": world.product.sku,
        "quantity": "1",
        "options": "",
        **changes,
    }
    before = row_counts()
    page = session.post(f"{base}/shop/order/", data=form, allow_redirects=False, timeout=10)
    assert page.status_code == 400
    assert page.headers["Content-Type"].startswith("text/html")
    assert shown in page.text
    assert row_counts() == before
    assert not Customer.objects.filter(email=form["email"]).exists()


def test_an_order_form_post_without_the_csrf_token_is_refused(legacy_stack, world: World) -> None:  # type: ignore[no-untyped-def]
    before = row_counts()
    form = {"email": "csrf@example.test", "name": "X", "sku": world.product.sku, "quantity": "1"}
    response = requests.post(f"{legacy_stack.base_url}/shop/order/", data=form, timeout=10)
    assert response.status_code == 403
    assert row_counts() == before


def test_order_status_page_shows_an_order(legacy_stack, world: World) -> None:  # type: ignore[no-untyped-def]
    page = requests.get(f"{legacy_stack.base_url}/shop/orders/{world.placed_order.public_id}/", timeout=10)
    assert page.status_code == 200
    assert '<strong id="status">placed</strong>' in page.text
    assert world.product.sku in page.text
