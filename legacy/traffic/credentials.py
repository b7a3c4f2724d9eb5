"""The generator's own credentials and working data, read from the target's database.

Nothing secret lives in the repository: customer tokens are read from the database, the staff
user and its DRF token are created on first use, and MES API keys are issued fresh for each run
(only their hash is stored) and deleted when the run ends.
"""

from __future__ import annotations

import secrets
import uuid

import structlog
from django.contrib.auth import get_user_model
from django.db import transaction
from rest_framework.authtoken.models import Token

from legacy.mes.models import ApiKey, ProductionOrder, hash_api_key
from legacy.shop.models import Customer, Order, OrderStatus, Product
from legacy.traffic.scenarios import ProductChoice, TrafficData

logger = structlog.get_logger(__name__)

STAFF_USERNAME = "traffic-generator"
API_KEY_PREFIX = "traffic-"
SAMPLE = 2_000


class NoTrafficData(Exception):
    """The target's database has no products or customers to drive traffic with."""


def traffic_staff_token_ensure(*, username: str = STAFF_USERNAME) -> str:
    """The generator's staff user (created once, no password) and its DRF token."""
    user, created = get_user_model().objects.get_or_create(
        username=username, defaults={"is_staff": True, "is_active": True}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
        logger.info("traffic.staff_user_created", username=username)
    elif not user.is_staff or not user.is_active:
        user.is_staff = user.is_active = True
        user.save(update_fields=["is_staff", "is_active"])
    return Token.objects.get_or_create(user=user)[0].key


@transaction.atomic
def traffic_api_keys_issue(*, count: int) -> tuple[list[str], list[str]]:
    """Issues `count` new MES API keys for one run; returns (names, raw keys)."""
    run = uuid.uuid4().hex[:8]
    names, raw_keys = [], []
    for index in range(count):
        raw = secrets.token_urlsafe(32)
        name = f"{API_KEY_PREFIX}{run}-{index}"
        ApiKey.objects.create(name=name, prefix=raw[:8], key_hash=hash_api_key(raw))
        names.append(name)
        raw_keys.append(raw)
    logger.info("traffic.api_keys_issued", count=count, run=run)
    return names, raw_keys


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
