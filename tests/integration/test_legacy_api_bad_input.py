"""Bad input on every write route of the running monolith: a 4xx in the one error format, never a
500, and nothing written (row counts of customers, orders, lines, history and notes unchanged)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from legacy.shop.models import Order
from tests.integration.legacy_api_world import (
    World,
    assert_error_body,
    credentials_for,
    row_counts,
    shared_world,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

LIMIT = 256 * 1024  # MAX_REQUEST_BODY_BYTES, the default the test stack runs with
SKU = "<sku>"  # stands for the world's product in a request body
ROUTES = {
    "shop.order": "/shop/api/orders/",
    "crm.cancel": "/crm/api/orders/{placed}/cancel/",
    "crm.note": "/crm/api/orders/{placed}/notes/",
    "mes.quote": "/mes/api/quotes/",
}


class Raw(bytes):
    """A body sent exactly as written."""


def chunks(size: int) -> Iterator[bytes]:
    """A body without Content-Length (requests sends a generator chunked)."""
    sent = 0
    while sent < size:
        piece = min(64 * 1024, size - sent)
        sent += piece
        yield b" " * piece


# Bodies every JSON write route refuses the same way: (name, body, content type, status, code).
ANY_ROUTE = [
    ("malformed", Raw(b'{"lines": ['), None, 400, "malformed_request"),
    ("not utf-8", Raw(b'{"reason": "\xff\xfe"}'), None, 400, "malformed_request"),
    ("nested too deeply", Raw(b"[" * 60_000 + b"]" * 60_000), None, 400, "malformed_request"),
    ("5000-digit number", Raw(b'{"quantity": ' + b"9" * 5000 + b"}"), None, 400, "malformed_request"),
    ("NaN", Raw(b'{"quantity": NaN}'), None, 400, "malformed_request"),
    ("a list", [{"sku": SKU, "quantity": 1}], None, 400, "invalid_request"),
    ("a string", "lines", None, 400, "invalid_request"),
    ("a number", 42, None, 400, "invalid_request"),
    ("null", None, None, 400, "invalid_request"),
    ("an empty object", {}, None, 400, "invalid_request"),
    ("no body", Raw(b""), None, 400, "invalid_request"),
    ("text/plain", Raw(b'{"text": "hi"}'), "text/plain", 415, "unsupported_media_type"),
    ("a form", Raw(b"text=hi&reason=x"), "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ("no content type", Raw(b'{"text": "hi"}'), "", 415, "unsupported_media_type"),
    ("one byte over the limit", Raw(b" " * (LIMIT + 1)), None, 413, "payload_too_large"),
    ("chunked over the limit", "chunked", None, 413, "payload_too_large"),
]


def line(**fields: Any) -> dict[str, Any]:
    return {"sku": SKU, "quantity": 1, **fields}


SHOP_ORDER = [
    ("lines a string", {"lines": "abc"}, 400, "invalid_request"),
    ("lines an object", {"lines": line()}, 400, "invalid_request"),
    ("lines empty", {"lines": []}, 400, "invalid_request"),
    ("a line a string", {"lines": ["abc"]}, 400, "invalid_request"),
    ("51 lines", {"lines": [line()] * 51}, 400, "invalid_request"),
    ("line without sku", {"lines": [{"quantity": 1}]}, 400, "invalid_request"),
    ("line without quantity", {"lines": [{"sku": SKU}]}, 400, "invalid_request"),
    ("sku an object", {"lines": [line(sku={"a": 1})]}, 400, "invalid_request"),
    ("sku with NUL", {"lines": [line(sku="SKU\x00")]}, 400, "invalid_request"),
    ("sku too long", {"lines": [line(sku="S" * 33)]}, 400, "invalid_request"),
    ("quantity zero", {"lines": [line(quantity=0)]}, 400, "invalid_request"),
    ("quantity negative", {"lines": [line(quantity=-1)]}, 400, "invalid_request"),
    ("quantity over 10000", {"lines": [line(quantity=10_001)]}, 400, "invalid_request"),
    ("quantity 10**30", {"lines": [line(quantity=10**30)]}, 400, "invalid_request"),
    ("quantity a numeric string", {"lines": [line(quantity="3")]}, 400, "invalid_request"),
    ("quantity a word", {"lines": [line(quantity="three")]}, 400, "invalid_request"),
    ("quantity a fraction", {"lines": [line(quantity=2.5)]}, 400, "invalid_request"),
    ("quantity a float", {"lines": [line(quantity=3.0)]}, 400, "invalid_request"),
    ("quantity a boolean", {"lines": [line(quantity=True)]}, 400, "invalid_request"),
    ("quantity null", {"lines": [line(quantity=None)]}, 400, "invalid_request"),
    ("options a string", {"lines": [line(options="lacquer")]}, 400, "invalid_request"),
    ("options with null", {"lines": [line(options=[None])]}, 400, "invalid_request"),
    ("21 options", {"lines": [line(options=[f"o{i}" for i in range(21)])]}, 400, "invalid_request"),
    ("unknown sku", {"lines": [line(sku="NO-SUCH-SKU")]}, 422, "unknown_product"),
    ("unknown option", {"lines": [line(options=["gold-leaf"])]}, 422, "unknown_option"),
    ("option chosen twice", {"lines": [line(options=["lacquer", "lacquer"])]}, 422, "duplicate_option"),
    ("second line bad", {"lines": [line(), line(options=["gold-leaf"])]}, 422, "unknown_option"),
    ("second line unknown", {"lines": [line(), line(sku="NO-SUCH-SKU")]}, 422, "unknown_product"),
]
CRM_CANCEL = [
    ("reason missing", {}, 400, "invalid_request"),
    ("reason empty", {"reason": ""}, 400, "invalid_request"),
    ("reason an object", {"reason": {"a": 1}}, 400, "invalid_request"),
    ("reason a number", {"reason": 0.0}, 400, "invalid_request"),
    ("reason too long", {"reason": "x" * 301}, 400, "invalid_request"),
    ("reason with NUL", {"reason": "a\x00b"}, 400, "invalid_request"),
]
CRM_NOTE = [
    ("text missing", {}, 400, "invalid_request"),
    ("text blank", {"text": "   "}, 400, "invalid_request"),
    ("text a list", {"text": ["a"]}, 400, "invalid_request"),
    ("text a number", {"text": 3}, 400, "invalid_request"),
    ("text with NUL", {"text": "a\x00b"}, 400, "invalid_request"),
]
MES_QUOTE = [
    ("sku missing", {"quantity": 1}, 400, "invalid_request"),
    ("quantity missing", {"sku": SKU}, 400, "invalid_request"),
    ("quantity zero", {"sku": SKU, "quantity": 0}, 400, "invalid_request"),
    ("quantity negative", {"sku": SKU, "quantity": -5}, 400, "invalid_request"),
    ("quantity over 10000", {"sku": SKU, "quantity": 10_001}, 400, "invalid_request"),
    ("quantity a numeric string", {"sku": SKU, "quantity": "3"}, 400, "invalid_request"),
    ("quantity a fraction", {"sku": SKU, "quantity": 1.5}, 400, "invalid_request"),
    ("options a string", {"sku": SKU, "quantity": 1, "options": "lacquer"}, 400, "invalid_request"),
    # A business refusal, as for an order (the schema cannot say which SKUs exist): not a 400.
    ("unknown sku", {"sku": "NO-SUCH-SKU", "quantity": 1}, 422, "unknown_product"),
    ("unknown option", {"sku": SKU, "quantity": 1, "options": ["gold-leaf"]}, 422, "unknown_option"),
]
CASES = [
    pytest.param(route, body, content_type, status, code, id=f"{route}: {name}")
    for route in ROUTES
    for name, body, content_type, status, code in ANY_ROUTE
] + [
    pytest.param(route, body, None, status, code, id=f"{route}: {name}")
    for route, cases in [
        ("shop.order", SHOP_ORDER),
        ("crm.cancel", CRM_CANCEL),
        ("crm.note", CRM_NOTE),
        ("mes.quote", MES_QUOTE),
    ]
    for name, body, status, code in cases
]


@pytest.fixture(scope="module")
def world(legacy_stack, django_db_blocker) -> Iterator[World]:  # type: ignore[no-untyped-def]
    yield from shared_world(django_db_blocker)


def credentials(route: str, world: World) -> dict[str, str]:
    """The credential of the API a route ("shop.order", "crm.note", ...) belongs to."""
    return credentials_for(route.split(".")[0], world)


def with_sku(value: Any, sku: str) -> Any:
    if value == SKU:
        return sku
    if isinstance(value, list):
        return [with_sku(item, sku) for item in value]
    if isinstance(value, dict):
        return {key: with_sku(item, sku) for key, item in value.items()}
    return value


def send(
    base_url: str, route: str, body: Any, content_type: str | None, world: World, order_id: int | None = None
) -> requests.Response:
    url = base_url + ROUTES[route].format(placed=order_id or world.placed_order.id)
    headers = credentials(route, world)
    if content_type != "":
        headers["Content-Type"] = content_type or "application/json"
    data: Any
    if body == "chunked":
        data = chunks(LIMIT + 10)
    elif isinstance(body, Raw):
        data = bytes(body)
    else:
        data = json.dumps(with_sku(body, world.product.sku)).encode()
    return requests.post(url, data=data, headers=headers, timeout=30)


@pytest.mark.parametrize(("route", "body", "content_type", "status", "code"), CASES)
def test_bad_input_is_refused_in_the_error_format_and_writes_nothing(  # type: ignore[no-untyped-def]
    legacy_stack, world: World, route: str, body: Any, content_type: str | None, status: int, code: str
) -> None:
    before = row_counts()
    response = send(legacy_stack.base_url, route, body, content_type, world)
    assert_error_body(response, status, code)
    assert row_counts() == before
    world.placed_order.refresh_from_db()
    assert world.placed_order.status == "placed"


def test_the_same_requests_done_right_succeed(legacy_stack, world: World) -> None:  # type: ignore[no-untyped-def]
    """The control for the cases above: the routes, credentials and bodies they start from work."""
    before = row_counts()
    placed = send(
        legacy_stack.base_url, "shop.order", {"lines": [line(options=["lacquer"]), line()]}, None, world
    )
    assert placed.status_code == 201, placed.text
    order_id = Order.objects.get(public_id=placed.json()["id"]).id
    good = {
        "crm.note": ({"text": "called the customer"}, 201),
        "mes.quote": ({"sku": SKU, "quantity": 2, "options": ["lacquer"]}, 200),
        "crm.cancel": ({"reason": "customer changed their mind"}, 200),
    }
    for route, (body, status) in good.items():
        response = send(legacy_stack.base_url, route, body, None, world, order_id=order_id)
        assert response.status_code == status, (route, response.text)
    after = row_counts()
    assert {name: after[name] - before[name] for name in after} == {
        "customers": 0,
        "orders": 1,
        "order_lines": 2,
        "status_changes": 2,  # placed, then cancelled
        "notes": 1,
    }


def test_a_chunked_body_under_the_limit_is_read(legacy_stack, world: World) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"lines": [line(sku=world.product.sku, quantity=2)]}).encode()
    response = requests.post(
        f"{legacy_stack.base_url}/shop/api/orders/",
        data=iter([body[:10], body[10:]]),
        headers={**credentials("shop.order", world), "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    assert response.json()["lines"][0]["quantity"] == 2


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/crm/api/orders/999999/confirm/", None, 404, "not_found"),
        ("/crm/api/orders/99999999999999999999999/confirm/", None, 404, "not_found"),
        ("/crm/api/orders/{cancelled}/confirm/", None, 422, "invalid_transition"),
        ("/crm/api/orders/999999/cancel/", {"reason": "x"}, 404, "not_found"),
        ("/crm/api/orders/{sent}/cancel/", {"reason": "too late"}, 422, "invalid_transition"),
        ("/crm/api/orders/999999/notes/", {"text": "x"}, 404, "not_found"),
        ("/crm/api/orders/abc/confirm/", None, 404, "not_found"),
    ],
)
def test_staff_actions_on_missing_or_unsuitable_orders_are_refused(  # type: ignore[no-untyped-def]
    legacy_stack, world: World, path: str, body: Any, status: int, code: str
) -> None:
    before = row_counts()
    url = legacy_stack.base_url + path.format(cancelled=world.cancelled_order.id, sent=world.sent_order.id)
    response = requests.post(url, json=body, headers=credentials("crm.", world), timeout=10)
    error = assert_error_body(response, status, code)
    assert row_counts() == before
    if status == 422:
        assert error["message"].startswith("Order "), error


def test_a_domain_refusal_explains_itself(legacy_stack, world: World) -> None:  # type: ignore[no-untyped-def]
    response = send(
        legacy_stack.base_url,
        "shop.order",
        {"lines": [line(), line(options=["gold-leaf"])]},
        None,
        world,
    )
    error = assert_error_body(response, 422, "unknown_option")
    assert error["message"] == f"Line 2: Product {world.product.sku} has no option gold-leaf."
    assert error["details"] == {"unknown": ["gold-leaf"], "available": ["lacquer"]}


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/shop/api/products/?limit=99999999999999999999999", 200),
        ("/shop/api/products/?offset=99999999999999999999999", 200),
        ("/crm/api/orders/?limit=99999999999999999999999&status=placed", 200),
        ("/crm/api/orders/?status=bogus", 400),
        ("/crm/api/orders/?status=", 400),
        ("/shop/api/products/?offset=null", 400),
        ("/shop/api/products/?offset=-1", 400),
        ("/shop/api/products/?limit=0", 400),
        ("/shop/api/products/?limit=2.5", 400),
        ("/shop/api/products/?limit=1&limit=2", 400),
        ("/crm/api/customers/?limit=" + "9" * 5000, 200),
        ("/mes/api/production-orders/?order_id=abc", 400),
        ("/mes/api/production-orders/?order_id=%C2%B2", 400),  # "²": str.isdigit() yet not int()
        ("/mes/api/production-orders/?order_id=99999999999999999999999", 200),
    ],
)
def test_bad_query_parameters_are_refused_or_bounded(  # type: ignore[no-untyped-def]
    legacy_stack, world: World, path: str, status: int
) -> None:
    headers = {**credentials("crm.", world), **credentials("mes.", world)}
    response = requests.get(legacy_stack.base_url + path, headers=headers, timeout=10)
    if status == 200:
        assert response.status_code == 200, response.text
        assert len(response.json()["results"]) <= 500
    else:
        assert_error_body(response, status, "invalid_request")
