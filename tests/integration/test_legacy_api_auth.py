"""Credentials on the running monolith: CRM staff tokens, MES API keys, shop customer tokens;
and a quote through the MES API priced exactly as the pricing function prices it."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
import requests

from legacy.mes.services import quote_calculate
from tests.integration.legacy_api_world import (
    World,
    assert_error_body,
    row_counts,
    shared_world,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture(scope="module")
def world(legacy_stack, django_db_blocker) -> Iterator[World]:  # type: ignore[no-untyped-def]
    yield from shared_world(django_db_blocker)


def call(base_url: str, method: str, path: str, world: World, headers: dict[str, str]) -> requests.Response:
    body = {"reason": "x", "text": "x", "sku": world.product.sku, "quantity": 1, "lines": []}
    url = base_url + path.format(order=world.placed_order.id, public_id=world.placed_order.public_id)
    return requests.request(method, url, json=body if method == "POST" else None, headers=headers, timeout=10)


CRM_ROUTES = [
    ("GET", "/crm/api/orders/"),
    ("GET", "/crm/api/orders/{order}/"),
    ("GET", "/crm/api/customers/"),
    ("POST", "/crm/api/orders/{order}/confirm/"),
    ("POST", "/crm/api/orders/{order}/cancel/"),
    ("POST", "/crm/api/orders/{order}/notes/"),
]
MES_ROUTES = [
    ("POST", "/mes/api/quotes/"),
    ("GET", "/mes/api/production-orders/"),
    ("GET", "/mes/api/production-orders/1/"),
]
SHOP_ROUTES = [
    ("GET", "/shop/api/orders/"),
    ("POST", "/shop/api/orders/"),
    ("GET", "/shop/api/orders/{public_id}/"),
]
# (what is presented, expected status, expected code); "{...}" is filled from the world.
CRM_CREDENTIALS = [
    ("none", {}, 401, "not_authenticated"),
    (
        "wrong token",
        {"Authorization": "Token 0000000000000000000000000000000000000000"},
        401,
        "authentication_failed",
    ),
    ("token of a non-staff user", {"Authorization": "Token {clerk}"}, 403, "permission_denied"),
    ("a customer's bearer token", {"Authorization": "Bearer {customer}"}, 401, "not_authenticated"),
    ("token without key", {"Authorization": "Token"}, 401, "authentication_failed"),
]
MES_CREDENTIALS = [
    ("none", {}, 401, "not_authenticated"),
    ("wrong key", {"X-API-Key": "not-a-key"}, 401, "authentication_failed"),
    ("empty key", {"X-API-Key": ""}, 401, "authentication_failed"),
    ("revoked key", {"X-API-Key": "{revoked}"}, 403, "permission_denied"),
    ("staff token instead", {"Authorization": "Token {staff}"}, 401, "not_authenticated"),
]
SHOP_CREDENTIALS = [
    ("none", {}, 401, "not_authenticated"),
    ("wrong token", {"Authorization": "Bearer not-a-token"}, 401, "authentication_failed"),
    ("bearer without token", {"Authorization": "Bearer"}, 401, "authentication_failed"),
    ("bearer with two words", {"Authorization": "Bearer a b"}, 401, "authentication_failed"),
    ("staff token instead", {"Authorization": "Token {staff}"}, 401, "not_authenticated"),
]
CASES = [
    pytest.param(method, path, headers, status, code, id=f"{method} {path}: {name}")
    for routes, credentials in [
        (CRM_ROUTES, CRM_CREDENTIALS),
        (MES_ROUTES, MES_CREDENTIALS),
        (SHOP_ROUTES, SHOP_CREDENTIALS),
    ]
    for method, path in routes
    for name, headers, status, code in credentials
]


def filled(headers: dict[str, str], world: World) -> dict[str, str]:
    values = {
        "clerk": world.clerk_token,
        "customer": world.customer.api_token,
        "revoked": world.revoked_api_key,
        "staff": world.staff_token,
        "key": world.api_key,
    }
    return {name: value.format(**values) for name, value in headers.items()}


@pytest.mark.parametrize(("method", "path", "headers", "status", "code"), CASES)
def test_missing_or_wrong_credentials_are_refused(  # type: ignore[no-untyped-def]
    legacy_stack, world: World, method: str, path: str, headers: dict[str, str], status: int, code: str
) -> None:
    before = row_counts()
    response = call(legacy_stack.base_url, method, path, world, filled(headers, world))
    assert_error_body(response, status, code)
    if status == 401:
        # A 401 names the scheme to use; without it DRF would have answered 403.
        assert response.headers.get("WWW-Authenticate"), response.headers
    assert row_counts() == before
    world.placed_order.refresh_from_db()
    assert world.placed_order.status == "placed"


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/crm/api/orders/{order}/", {"Authorization": "Token {staff}"}),
        ("/mes/api/production-orders/", {"X-API-Key": "{key}"}),
        ("/shop/api/orders/{public_id}/", {"Authorization": "Bearer {customer}"}),
        ("/shop/api/products/", {}),
    ],
)
def test_the_right_credentials_are_let_in(
    legacy_stack, world: World, path: str, headers: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    response = call(legacy_stack.base_url, "GET", path, world, filled(headers, world))
    assert response.status_code == 200, response.text


def test_a_customer_cannot_see_another_customers_order(legacy_stack, world: World) -> None:  # type: ignore[no-untyped-def]
    other = {"Authorization": f"Bearer {world.other_customer.api_token}"}
    url = f"{legacy_stack.base_url}/shop/api/orders/{world.placed_order.public_id}/"
    assert_error_body(requests.get(url, headers=other, timeout=10), 404, "not_found")
    mine = requests.get(f"{legacy_stack.base_url}/shop/api/orders/", headers=other, timeout=10)
    assert mine.status_code == 200
    assert mine.json()["results"] == []


def test_a_customer_lists_only_their_own_orders(legacy_stack, world: World) -> None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {world.customer.api_token}"}
    response = requests.get(f"{legacy_stack.base_url}/shop/api/orders/", headers=headers, timeout=10)
    ids = {order["id"] for order in response.json()["results"]}
    assert str(world.placed_order.public_id) in ids
    assert ids == {str(o.public_id) for o in world.customer.orders.all()}


@pytest.mark.parametrize(("options", "quantity"), [([], 1), (["lacquer"], 3), (["lacquer"], 10), ([], 150)])
def test_a_quote_through_the_mes_api_is_the_pricing_functions_price(  # type: ignore[no-untyped-def]
    legacy_stack, world: World, options: list[str], quantity: int
) -> None:
    response = requests.post(
        f"{legacy_stack.base_url}/mes/api/quotes/",
        json={"sku": world.product.sku, "quantity": quantity, "options": options},
        headers={"X-API-Key": world.api_key},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    quote = response.json()
    expected = quote_calculate(product=world.product, option_codes=options, quantity=quantity)
    assert Decimal(quote["unit_price"]) == expected.unit_price
    assert Decimal(quote["total"]) == expected.total
    assert quote["breakdown"] == {
        "materials": str(expected.materials),
        "labour": str(expected.labour),
        "overhead": str(expected.overhead),
        "margin": str(expected.margin),
        "discount_percent": str(expected.discount_percent),
    }
    assert (quote["sku"], quote["quantity"], quote["options"], quote["currency"]) == (
        world.product.sku,
        quantity,
        options,
        "EUR",
    )
