"""The shop's customer contract, over real HTTP, once against the legacy monolith and once against
the shop service: same status codes, JSON shapes, error bodies, prices and pages, so customers
cannot tell which side answered. Generated values (ids, public ids, timestamps) are compared by
type only, the rest by value.
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from typing import Any

import pytest
import requests

from legacy.mes.services import quote_for_sku
from tests.contract.conftest import ContractWorld

pytestmark = [pytest.mark.integration, pytest.mark.django_db(databases=["default", "shop"])]

TIMEOUT = 10
ORDER_KEYS = {"id", "status", "production_stage", "total", "currency", "created_at", "lines", "history"}
LINE_KEYS = {"sku", "quantity", "options", "unit_price", "line_total"}
HISTORY_KEYS = {"status", "at", "note"}
PRODUCT_KEYS = {"sku", "name", "description", "options"}
MONEY = re.compile(r"^\d+\.\d{2}$")


def get(backend: str, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(backend + path, headers=headers, timeout=TIMEOUT, **kwargs)


def post_order(backend: str, token: str, lines: Any) -> requests.Response:
    return requests.post(
        f"{backend}/shop/api/orders/",
        json={"lines": lines},
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    )


def error_of(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, f"{response.status_code} {response.text[:400]}"
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    return body["error"]


def assert_order_shape(order: dict[str, Any]) -> None:
    assert set(order) == ORDER_KEYS
    uuid.UUID(order["id"])
    assert isinstance(order["created_at"], str) and MONEY.match(order["total"])
    assert order["currency"] == "EUR" and isinstance(order["production_stage"], str)
    for line in order["lines"]:
        assert set(line) == LINE_KEYS
        assert MONEY.match(line["unit_price"]) and MONEY.match(line["line_total"])
        assert isinstance(line["quantity"], int) and isinstance(line["options"], list)
    for change in order["history"]:
        assert set(change) == HISTORY_KEYS and isinstance(change["at"], str)


def expected_line(sku: str, quantity: int, options: list[str]) -> dict[str, Any]:
    """The line as the monolith's own in-process pricing prices it."""
    _, breakdown = quote_for_sku(sku=sku, option_codes=options, quantity=quantity)
    return {
        "sku": sku,
        "quantity": quantity,
        "options": sorted(options),
        "unit_price": str(breakdown.unit_price),
        "line_total": str(breakdown.total),
    }


# Catalogue


def test_product_list_is_the_active_catalogue(backend: str, contract_world: ContractWorld) -> None:
    response = get(backend, "/shop/api/products/", params={"limit": 100})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == len(contract_world.product_skus)
    assert [p["sku"] for p in body["results"]] == contract_world.product_skus
    for product in body["results"]:
        assert set(product) == PRODUCT_KEYS
        assert all(set(option) == {"code", "name"} for option in product["options"])


def test_product_list_pages(backend: str, contract_world: ContractWorld) -> None:
    body = get(backend, "/shop/api/products/", params={"limit": 5, "offset": 5}).json()
    assert [p["sku"] for p in body["results"]] == contract_world.product_skus[5:10]
    assert body["next"] and body["previous"] is not None


def test_product_detail_has_its_options(backend: str, contract_world: ContractWorld) -> None:
    sku = contract_world.option_product_sku
    response = get(backend, f"/shop/api/products/{sku}/")
    assert response.status_code == 200
    product = response.json()
    assert set(product) == PRODUCT_KEYS and product["sku"] == sku
    assert sorted(o["code"] for o in product["options"]) == contract_world.option_codes


def test_unknown_product_is_a_json_404(backend: str) -> None:
    error = error_of(get(backend, "/shop/api/products/NO-SUCH-SKU/"), 404)
    assert error["code"] == "not_found"


# Placing orders


def test_placed_order_is_priced_to_the_cent_as_the_monolith_prices_it(
    backend: str, contract_world: ContractWorld
) -> None:
    sku, option = contract_world.option_product_sku, contract_world.option_codes[0]
    other = next(s for s in contract_world.product_skus if s != sku)
    lines = [
        {"sku": sku, "quantity": 3, "options": [option]},
        {"sku": other, "quantity": 12},
        {"sku": sku, "quantity": 3, "options": [option]},
    ]
    response = post_order(backend, contract_world.buyer_token, lines)
    assert response.status_code == 201, response.text
    order = response.json()
    assert_order_shape(order)
    expected = [
        expected_line(sku, 3, [option]),
        expected_line(other, 12, []),
        expected_line(sku, 3, [option]),
    ]
    assert order["lines"] == expected
    assert Decimal(order["total"]) == sum(Decimal(line["line_total"]) for line in expected)
    assert order["status"] == "placed" and order["production_stage"] == ""
    assert [(h["status"], h["note"]) for h in order["history"]] == [("placed", "")]

    detail = get(backend, f"/shop/api/orders/{order['id']}/", contract_world.buyer_token)
    assert detail.status_code == 200 and detail.json() == order


def test_unknown_product_refuses_the_order(backend: str, contract_world: ContractWorld) -> None:
    lines = [{"sku": "NO-SUCH-SKU", "quantity": 1}, {"sku": contract_world.product_skus[0], "quantity": 1}]
    error = error_of(post_order(backend, contract_world.buyer_token, lines), 422)
    assert error == {
        "code": "unknown_product",
        "message": "Unknown or unavailable product: NO-SUCH-SKU.",
        "details": {"unknown": ["NO-SUCH-SKU"]},
    }


def test_unknown_option_names_the_line(backend: str, contract_world: ContractWorld) -> None:
    sku = contract_world.option_product_sku
    lines = [{"sku": sku, "quantity": 1}, {"sku": sku, "quantity": 1, "options": ["no-such-option"]}]
    error = error_of(post_order(backend, contract_world.buyer_token, lines), 422)
    assert error == {
        "code": "unknown_option",
        "message": f"Line 2: Product {sku} has no option no-such-option.",
        "details": {"unknown": ["no-such-option"], "available": contract_world.option_codes},
    }


def test_duplicate_option_is_refused(backend: str, contract_world: ContractWorld) -> None:
    sku, option = contract_world.option_product_sku, contract_world.option_codes[0]
    lines = [{"sku": sku, "quantity": 1, "options": [option, option]}]
    error = error_of(post_order(backend, contract_world.buyer_token, lines), 422)
    assert error == {"code": "duplicate_option", "message": "Line 1: An option is chosen twice."}


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param([], id="empty"),
        pytest.param([{"sku": "X", "quantity": 1}] * 51, id="too-many-lines"),
        pytest.param([{"sku": "X", "quantity": 0}], id="zero-quantity"),
        pytest.param([{"sku": "X", "quantity": "2"}], id="quantity-as-text"),
        pytest.param("not-a-list", id="not-a-list"),
    ],
)
def test_malformed_orders_are_invalid_requests(
    backend: str, contract_world: ContractWorld, lines: Any
) -> None:
    error = error_of(post_order(backend, contract_world.buyer_token, lines), 400)
    assert error["code"] == "invalid_request" and set(error["details"]) == {"lines"}


# My orders


def test_order_list_holds_only_the_customers_orders(
    both: dict[str, str], backend: str, contract_world: ContractWorld
) -> None:
    response = get(backend, "/shop/api/orders/", contract_world.reader_token)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"results"} and body["results"]
    for order in body["results"]:
        assert_order_shape(order)
    # The reader places no order in the suite: both sides hold the same rows, so the same answer.
    other = get(
        both["shop" if backend == both["legacy"] else "legacy"],
        "/shop/api/orders/",
        contract_world.reader_token,
    )
    assert other.json() == body


def test_another_customers_order_is_not_found(backend: str, contract_world: ContractWorld) -> None:
    mine = get(backend, "/shop/api/orders/", contract_world.reader_token).json()["results"][0]
    error = error_of(get(backend, f"/shop/api/orders/{mine['id']}/", contract_world.buyer_token), 404)
    assert error["code"] == "not_found"
    assert mine["id"] not in {
        o["id"] for o in get(backend, "/shop/api/orders/", contract_world.buyer_token).json()["results"]
    }


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        pytest.param({}, "not_authenticated", id="missing"),
        pytest.param({"Authorization": "Bearer not-a-token"}, "authentication_failed", id="unknown-token"),
        pytest.param({"Authorization": "Bearer two parts"}, "authentication_failed", id="malformed"),
        pytest.param({"Authorization": "Token abc"}, "not_authenticated", id="other-scheme"),
    ],
)
def test_bad_or_missing_token_is_401(backend: str, headers: dict[str, str], code: str) -> None:
    for method, path in (("GET", "/shop/api/orders/"), ("POST", "/shop/api/orders/")):
        response = requests.request(
            method, backend + path, headers=headers, json={"lines": []}, timeout=TIMEOUT
        )
        error = error_of(response, 401)
        assert error["code"] == code
        assert response.headers["WWW-Authenticate"] == "Bearer"


# Pages


def test_catalogue_page_lists_every_active_product(backend: str, contract_world: ContractWorld) -> None:
    response = get(backend, "/shop/")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")
    assert "<h1>Catalogue</h1>" in response.text
    assert re.findall(r"<tr><td>([^<]+)</td>", response.text) == contract_world.product_skus


def page_order(backend: str, fields: dict[str, str]) -> requests.Response:
    session = requests.Session()
    form = session.get(f"{backend}/shop/order/", params={"sku": fields["sku"]}, timeout=TIMEOUT)
    assert form.status_code == 200 and 'name="sku"' in form.text
    assert f'value="{fields["sku"]}"' in form.text
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert csrf
    return session.post(
        f"{backend}/shop/order/",
        data={**fields, "csrfmiddlewaretoken": csrf.group(1)},
        allow_redirects=False,
        timeout=TIMEOUT,
    )


def test_order_form_places_an_order_and_shows_its_status_page(
    backend: str, contract_world: ContractWorld
) -> None:
    sku, option = contract_world.option_product_sku, contract_world.option_codes[-1]
    placed = page_order(
        backend,
        {
            "email": contract_world.buyer_email,
            "name": "Buyer",
            "sku": sku,
            "quantity": "7",
            "options": option,
        },
    )
    assert placed.status_code == 302, placed.text[:400]
    location = placed.headers["Location"]
    assert re.fullmatch(r"/shop/orders/[0-9a-f-]{36}/", location)
    page = get(backend, location)
    assert page.status_code == 200
    line = expected_line(sku, 7, [option])
    assert '<strong id="status">placed</strong>' in page.text
    assert f"Total {line['line_total']} EUR" in page.text
    assert f"<td>{sku}</td><td>7</td><td>{option}</td><td>{line['unit_price']}</td>" in page.text


def test_order_form_shows_a_refusal(backend: str, contract_world: ContractWorld) -> None:
    refused = page_order(
        backend, {"email": "new.person@example.com", "name": "New", "sku": "NO-SUCH-SKU", "quantity": "1"}
    )
    assert refused.status_code == 400
    assert '<p class="error">Unknown or unavailable product: NO-SUCH-SKU.</p>' in refused.text


def test_status_page_of_an_unknown_order_is_a_json_404(backend: str) -> None:
    error = error_of(get(backend, f"/shop/orders/{uuid.uuid4()}/"), 404)
    assert error["code"] == "not_found"


def test_both_sides_answer_the_same_order_with_the_same_prices(
    both: dict[str, str], contract_world: ContractWorld
) -> None:
    lines = [
        {
            "sku": sku,
            "quantity": quantity,
            "options": contract_world.option_codes[:1] if sku == contract_world.option_product_sku else [],
        }
        for sku, quantity in zip(contract_world.product_skus, (1, 2, 5, 10, 25, 50, 100, 1000), strict=False)
    ]
    answers = {side: post_order(url, contract_world.buyer_token, lines) for side, url in both.items()}
    assert {side: r.status_code for side, r in answers.items()} == {"legacy": 201, "shop": 201}
    legacy, shop = (answers[side].json() for side in ("legacy", "shop"))
    volatile = {"id", "created_at", "history"}
    assert {k: v for k, v in shop.items() if k not in volatile} == {
        k: v for k, v in legacy.items() if k not in volatile
    }
    assert [(h["status"], h["note"]) for h in shop["history"]] == [
        (h["status"], h["note"]) for h in legacy["history"]
    ]
