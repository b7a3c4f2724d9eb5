"""The order's whole path through the running monolith: shop API, staff confirm, polling
orchestrator over RabbitMQ, MES production stages, status back in the shop."""

import pytest
import requests

from harness.waiting import wait_until
from tests.factories import CustomerFactory, PricingRuleFactory, ProductFactory, staff_token

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_order_placed_confirmed_and_produced_shows_done_in_shop(legacy_stack, legacy_polling) -> None:  # type: ignore[no-untyped-def]
    PricingRuleFactory()
    product = ProductFactory()
    customer = CustomerFactory()
    token = staff_token()
    shop = requests.Session()
    shop.headers["Authorization"] = f"Bearer {customer.api_token}"

    placed = shop.post(
        f"{legacy_stack.base_url}/shop/api/orders/",
        json={"lines": [{"sku": product.sku, "quantity": 3, "options": ["lacquer"]}]},
        timeout=10,
    )
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert order["status"] == "placed"

    staff_orders = requests.get(
        f"{legacy_stack.base_url}/crm/api/orders/?status=placed",
        headers={"Authorization": f"Token {token}"},
        timeout=10,
    ).json()["results"]
    order_pk = next(o["id"] for o in staff_orders if o["public_id"] == order["id"])
    confirmed = requests.post(
        f"{legacy_stack.base_url}/crm/api/orders/{order_pk}/confirm/",
        headers={"Authorization": f"Token {token}"},
        timeout=10,
    )
    assert confirmed.status_code == 200, confirmed.text

    def shop_status() -> str | None:
        body = shop.get(f"{legacy_stack.base_url}/shop/api/orders/{order['id']}/", timeout=10).json()
        return body["status"] if body["status"] == "done" else None

    wait_until(shop_status, seconds=30, interval=0.1, what="the order done in the shop")
    final = shop.get(f"{legacy_stack.base_url}/shop/api/orders/{order['id']}/", timeout=10).json()
    assert [h["status"] for h in final["history"]] == ["placed", "confirmed", "in_production", "done"]
    assert final["production_stage"] == "done"
