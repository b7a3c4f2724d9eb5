"""The generator's own credentials and working data, read from the target's database.

Nothing secret lives in the repository: customer tokens are read from the database, the staff
user and its DRF token are created on first use, and MES API keys are issued fresh for each run
(only their hash is stored) and deleted when the run ends.
"""

from __future__ import annotations

import uuid

import structlog
from django.db import transaction

from legacy.mes.models import ApiKey, ProductionOrder
from legacy.mes.services import api_key_issue
from legacy.shop.models import Customer, Order, OrderStatus, Product
from legacy.traffic.scenarios import ProductChoice, TrafficData
from ops.staff_credentials import staff_token_ensure

logger = structlog.get_logger(__name__)

STAFF_USERNAME = "traffic-generator"
API_KEY_PREFIX = "traffic-"
SAMPLE = 2_000


class NoTrafficData(Exception):
    """The target's database has no products or customers to drive traffic with."""


def traffic_staff_token_ensure(*, username: str = STAFF_USERNAME) -> str:
    """The generator's staff user (created once, no password) and its DRF token."""
    return staff_token_ensure(username=username).token


@transaction.atomic
def traffic_api_keys_issue(*, count: int) -> tuple[list[str], list[str]]:
    """Issues `count` new MES API keys for one run; returns (names, raw keys)."""
    run = uuid.uuid4().hex[:8]
    issued = [api_key_issue(name=f"{API_KEY_PREFIX}{run}-{index}") for index in range(count)]
    logger.info("traffic.api_keys_issued", count=count, run=run)
    return [key.name for key in issued], [key.raw for key in issued]


def traffic_api_keys_revoke(*, names: list[str]) -> int:
    deleted, _ = ApiKey.objects.filter(name__in=names).delete()
    return deleted


def traffic_data_load(*, staff_token: str, api_keys: list[str], sample: int = SAMPLE) -> TrafficData:
    """A random sample of customers with their recent orders, the catalogue, placed orders to
    confirm and production orders to look at."""
    products = [
        ProductChoice(sku=product.sku, options=tuple(option.code for option in product.options.all()))
        for product in Product.objects.filter(active=True).prefetch_related("options")
    ]
    customers = dict(Customer.objects.order_by("?").values_list("id", "api_token")[:sample])
    if not products or not customers:
        raise NoTrafficData("the database has no active products or no customers")
    orders = [
        (customers[customer_id], str(public_id))
        for customer_id, public_id in Order.objects.filter(customer_id__in=customers)
        .order_by("-id")
        .values_list("customer_id", "public_id")[: sample * 5]
    ]
    placed = list(
        Order.objects.filter(status=OrderStatus.PLACED).order_by("-id").values_list("id", flat=True)[:sample]
    )
    production = list(ProductionOrder.objects.order_by("-id").values_list("id", flat=True)[:sample])
    return TrafficData(
        products=products,
        customer_tokens=list(customers.values()),
        customer_orders=orders,
        placed_order_ids=placed,
        production_order_ids=production,
        staff_token=staff_token,
        api_keys=api_keys,
    )
