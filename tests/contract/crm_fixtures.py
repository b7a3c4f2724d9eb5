"""What the CRM contract suite runs against: the legacy monolith's web process and the extracted
CRM web process with the shop web process it calls, all started as the services register them
(SERVICE_PROCESSES), on the test databases; and the data both sides start from.

The data: a small legacy seed (legacy/seeding.py) plus a few orders in known states, then the
shop's tables copied into the shop database and the CRM slice's tables (crm_note, auth_user,
authtoken_token) into the crm database by plain binary COPY, column for column (the toolkit's
backfill does this for real). So each side has its own copy and a write on one side is matched by
the same write on the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.core.management.color import no_style
from django.core.management.sql import sql_flush
from django.db import connections

from harness.table_copy import tables_copy
from harness.waiting import wait_http_ok
from ops.process_group import ManagedProcess, ProcessGroup, free_port, service_process_commands
from tests.conftest import LOG_DIR
from tests.contract.conftest import SHOP_TABLES

CRM_TABLES = ("auth_user", "authtoken_token", "crm_note")
STAFF_USER = "staff.contract"
CLERK_USER = "clerk.contract"


@dataclass
class CrmWorld:
    """Ids the contract cases act on; each side holds its own copy of these rows."""

    staff_token: str
    clerk_token: str  # a valid token of a user who is not staff
    placed: list[int]  # placed orders, one per case that confirms or cancels
    crm_only: int  # a placed order written to through the CRM service only
    sent: int  # confirmed and already sent to the MES: cannot be cancelled
    cancelled: int  # cannot be confirmed
    with_notes: int  # an order with seeded notes
    customer: int


def contract_world_create() -> CrmWorld:
    from django.contrib.auth import get_user_model
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from legacy.crm.models import Note
    from legacy.seeding import SeedSize, legacy_data_seed
    from legacy.shop.models import Customer, Order, Product
    from legacy.shop.services import OrderLineRequest, order_place

    legacy_data_seed(
        size=SeedSize(products=5, customers=60, orders=120, days=30, notes_percent=40),
        now=datetime(2026, 6, 1, tzinfo=UTC),
        reset=True,
    )
    users = get_user_model().objects
    staff = users.get_or_create(username=STAFF_USER, defaults={"is_staff": True})[0]
    clerk = users.get_or_create(username=CLERK_USER, defaults={"is_staff": False})[0]
    customer = Customer.objects.order_by("id").first()
    assert customer is not None
    line = [OrderLineRequest(sku=Product.objects.filter(active=True).order_by("sku").first().sku, quantity=2)]

    def place() -> int:
        return order_place(customer=customer, lines=line, at=timezone.now()).id

    placed = [place() for _ in range(6)]
    sent, cancelled, crm_only = place(), place(), place()
    Order.objects.filter(id=sent).update(status="confirmed", sent_to_mes_at=timezone.now())
    Order.objects.filter(id=cancelled).update(status="cancelled")
    with_notes = (
        Note.objects.exclude(order=None).order_by("order_id").values_list("order_id", flat=True).first()
    )
    assert with_notes is not None
    return CrmWorld(
        staff_token=Token.objects.get_or_create(user=staff)[0].key,
        clerk_token=Token.objects.get_or_create(user=clerk)[0].key,
        placed=placed,
        crm_only=crm_only,
        sent=sent,
        cancelled=cancelled,
        with_notes=with_notes,
        customer=customer.id,
    )


def _databases_flush(aliases: tuple[str, ...]) -> None:
    for alias in aliases:
        connection = connections[alias]
        connection.ops.execute_sql_flush(sql_flush(no_style(), connection, reset_sequences=False))


@pytest.fixture(scope="module")
def crm_world(django_db_setup: None, django_db_blocker: Any) -> Iterator[CrmWorld]:
    """The seeded world on legacy, copied to the shop and crm test databases; emptied afterwards."""
    with django_db_blocker.unblock():
        world = contract_world_create()
        tables_copy(source="default", target="shop", tables=SHOP_TABLES)
        tables_copy(source="default", target="crm", tables=CRM_TABLES)
    yield world
    with django_db_blocker.unblock():
        _databases_flush(("default", "shop", "crm"))


def web_start(group: ProcessGroup, service: str, env: dict[str, str]) -> str:
    """The web process `service` registers, started with SERVICE=service; its base URL."""
    port = free_port()
    command = service_process_commands(service, port=port)["web"]
    log_path = Path(LOG_DIR / f"contract-{service}-web-{port}.log")
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    process = group.start(ManagedProcess(f"{service}-web", command, {**env, "SERVICE": service}, log_path))
    base_url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{base_url}/healthz", seconds=30, process=process.popen)
    return base_url


@dataclass
class CrmStack:
    legacy: str
    shop: str
    crm: str


@pytest.fixture(scope="module")
def crm_stack(live_env: dict[str, str], crm_world: CrmWorld) -> Iterator[CrmStack]:
    """legacy, shop and crm web processes on the test databases; crm calls this shop."""
    with ProcessGroup() as group:
        legacy = web_start(group, "legacy", live_env)
        shop = web_start(group, "shop", live_env)
        crm = web_start(group, "crm", {**live_env, "SHOP_INTERNAL_URL": shop})
        yield CrmStack(legacy=legacy, shop=shop, crm=crm)
