"""The data the legacy API tests talk about, and the row counts that prove a refusal wrote nothing.

The world is built once per test module, committed so that the running monolith sees it, and the
test database is flushed after the module: a flush per test, as transactional tests do, cost about
0.25 s each, more than the requests themselves. The tests themselves are plain `django_db` tests
(that is also what makes pytest-django create the test databases); they write only through HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests
from django.contrib.auth import get_user_model
from django.core.management.color import no_style
from django.core.management.sql import sql_flush
from django.db import connection
from django.utils import timezone
from rest_framework.authtoken.models import Token

from legacy.crm.models import Note
from legacy.mes.models import ApiKey
from legacy.shop.models import Customer, Order, OrderLine, OrderStatusChange, Product
from legacy.shop.services import OrderLineRequest, order_place
from tests.factories import CustomerFactory, PricingRuleFactory, ProductFactory, api_key, staff_token


@dataclass
class World:
    product: Product
    customer: Customer
    other_customer: Customer
    staff_token: str
    clerk_token: str  # a valid token of a user who is not staff
    api_key: str
    revoked_api_key: str
    placed_order: Order
    sent_order: Order  # confirmed and already sent to the MES by the polling loop
    cancelled_order: Order


def world_create() -> World:
    PricingRuleFactory()
    product = ProductFactory()
    customer, other = CustomerFactory(), CustomerFactory()
    clerk = get_user_model().objects.create(username="clerk", is_staff=False)
    revoked = api_key(name="former-partner", raw="test-key-revoked")
    ApiKey.objects.filter(name="former-partner").update(active=False)
    line = [OrderLineRequest(sku=product.sku, quantity=1)]
    placed = order_place(customer=customer, lines=line, at=timezone.now())
    sent = order_place(customer=customer, lines=line, at=timezone.now())
    Order.objects.filter(id=sent.id).update(status="confirmed", sent_to_mes_at=timezone.now())
    cancelled = order_place(customer=customer, lines=line, at=timezone.now())
    Order.objects.filter(id=cancelled.id).update(status="cancelled")
    return World(
        product=product,
        customer=customer,
        other_customer=other,
        staff_token=staff_token(),
        clerk_token=Token.objects.create(user=clerk).key,
        api_key=api_key(),
        revoked_api_key=revoked,
        placed_order=placed,
        sent_order=sent,
        cancelled_order=cancelled,
    )


def api_key_failures_forget() -> None:
    """Forgets the failed API-key attempts the monolith counted on the test databases, so that an
    earlier module or run in the same window cannot make this module's wrong keys answer 429.

    The monolith's cache keys start with its database's name (config/settings/caches.py), which
    for the processes the tests start is the test database's.
    """
    from django_redis import get_redis_connection

    redis = get_redis_connection("default")
    stale = list(redis.scan_iter(f"{connection.settings_dict['NAME']}:*:api-key-failures:*"))
    if stale:
        redis.delete(*stale)


def shared_world(django_db_blocker: Any) -> Iterator[World]:
    """Builds and commits the world for a module's tests, and empties the test database after them."""
    name = connection.settings_dict["NAME"]
    assert name.startswith("test_"), f"refusing to write test data into {name}: mark the tests django_db"
    api_key_failures_forget()
    with django_db_blocker.unblock():
        world = world_create()
    yield world
    with django_db_blocker.unblock():
        # Sequences keep counting: a session-wide event collector tells aggregates apart by id.
        connection.ops.execute_sql_flush(sql_flush(no_style(), connection, reset_sequences=False))


def credentials_for(api: str, world: World) -> dict[str, str]:
    """The headers of the world's credential for one API of the monolith: "shop", "crm" or "mes"."""
    if api == "shop":
        return {"Authorization": f"Bearer {world.customer.api_token}"}
    if api == "crm":
        return {"Authorization": f"Token {world.staff_token}"}
    if api == "mes":
        return {"X-API-Key": world.api_key}
    raise ValueError(f"no API {api!r}")


def row_counts() -> dict[str, int]:
    """What a refused request must leave unchanged."""
    return {
        "customers": Customer.objects.count(),
        "orders": Order.objects.count(),
        "order_lines": OrderLine.objects.count(),
        "status_changes": OrderStatusChange.objects.count(),
        "notes": Note.objects.count(),
    }


def assert_error_body(response: requests.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is `status` with the one error format, and `code` when given."""
    assert response.status_code == status, f"{response.status_code} {response.text[:500]}"
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = json.loads(response.content)
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]) <= {"code", "message", "details"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]
