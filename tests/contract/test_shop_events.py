"""The shop service's events are the legacy CDC capture's events: a consumer cannot tell which side
produced them.

An order is placed through the shop service's page by a new customer; its outbox relay
(`manage.py cdc run --outbox --database shop --table shop_outbox`) publishes the events. The very
same rows (same ids) are then copied into the legacy database, where the monolith's CDC engine
announces them. Both streams must carry the same types, subjects and payloads, in the same order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connections

from cdc.cloudevents import cloud_event
from cdc.event_schemas import event_validate
from config.routers import database_alias
from harness.engine_slot import engine_on_slot
from harness.waiting import wait_until
from ops.process_group import PROJECT_ROOT
from shop_app.events import order_status_event
from shop_app.models import Order, OrderStatusChange
from shop_app.processes import OUTBOX_DATABASE, OUTBOX_TABLE, shop_process_commands
from tests.cdc_fixtures import (
    CdcProcess,
    EventCollector,
    RunningEngine,
    cdc_child_env,
    engine_process,
    unique_name,
)
from tests.contract.conftest import ContractWorld, ShopService, raw_connection, rows_copy, sequences_past
from tests.contract.test_shop_contract import page_order

pytestmark = [pytest.mark.integration, pytest.mark.django_db(databases=["default", "shop"])]


@pytest.fixture(scope="module")
def shop_outbox_relay(
    shop_service: ShopService,
    live_env: dict[str, str],
    amqp_url: str,
    event_collector: EventCollector,
    django_db_blocker: Any,
    worker_id: str,
) -> Iterator[CdcProcess]:
    """The shop's outbox relay as shop_app.processes runs it, on a slot of this session's own."""
    from cdc.captures import outbox_engine_config

    config = engine_on_slot(
        outbox_engine_config(database=OUTBOX_DATABASE, table=OUTBOX_TABLE),
        slot=unique_name(worker_id, "shopobx"),
    )
    name = config.target.slot_name
    env = cdc_child_env(
        {**live_env, "SERVICE": "shop"},
        config,
        CDC_AMQP_URL=amqp_url,
        CDC_OUTBOX_SLOT_NAME=name,
        CDC_OUTBOX_PUBLICATION_NAME=name,
    )
    env["SERVICE"] = "shop"  # the relay is one of the shop's processes
    # What shop_app.processes runs after `manage.py cdc run` (the test's engine adds --no-setup).
    command = shop_process_commands(port=0)["outbox-relay"]
    relay_args = tuple(command[command.index("run") + 1 :])
    with django_db_blocker.unblock():
        with engine_process(
            config,
            env,
            tag="shop-outbox",
            args=relay_args,
        ) as relay:
            yield relay


def comparable(event: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    return event["type"], event["subject"], event["data"]


def test_shop_events_are_the_legacy_capture_events_for_the_same_rows(
    shop_service: ShopService,
    shop_outbox_relay: CdcProcess,
    cdc_engine: RunningEngine,
    event_collector: EventCollector,
    contract_world: ContractWorld,
    django_db_blocker: Any,
) -> None:
    legacy, shop = database_alias("legacy"), database_alias("shop")
    sku, option = contract_world.option_product_sku, contract_world.option_codes[0]
    with django_db_blocker.unblock():
        sequences_past(source=legacy, target=shop, gap=1000)
    placed = page_order(
        shop_service.base_url,
        {
            "email": "events.probe@example.com",
            "name": "Eve Probe",
            "sku": sku,
            "quantity": "4",
            "options": option,
        },
    )
    assert placed.status_code == 302, placed.text[:300]
    public_id = re.search(r"/shop/orders/([0-9a-f-]{36})/", placed.headers["Location"]).group(1)
    with django_db_blocker.unblock(), connections[shop].cursor() as cursor:
        cursor.execute("SELECT id, customer_id FROM shop_order WHERE public_id = %s", [public_id])
        order_id, customer_id = cursor.fetchone()
    subjects = (f"customer:{customer_id}", f"order:{order_id}")
    wait_until(
        lambda: len(event_collector.of_subject(subjects[1])) >= 3 and event_collector.of_subject(subjects[0]),
        seconds=60,
        what="the shop's outbox events",
    )
    from_shop = {s: [comparable(e) for e in event_collector.of_subject(s)] for s in subjects}
    assert [t for t, _, _ in from_shop[subjects[1]]] == [
        "shop.order.created.v1",
        "shop.order_line.added.v1",
        "shop.order.placed.v1",
    ]
    assert [t for t, _, _ in from_shop[subjects[0]]] == ["shop.customer.registered.v1"]

    # The same rows, announced by the monolith's change data capture.
    seen = {s: len(event_collector.of_subject(s)) for s in subjects}
    with django_db_blocker.unblock():
        rows_copy(
            source=shop,
            target=legacy,
            where={
                "shop_customer": f"id = {customer_id}",
                "shop_order": f"id = {order_id}",
                "shop_order_line": f"order_id = {order_id}",
                "shop_order_status_history": f"order_id = {order_id}",
            },
        )
    wait_until(
        lambda: all(len(event_collector.of_subject(s)) >= 2 * seen[s] for s in subjects),
        seconds=60,
        what="the legacy capture's events of the copied rows",
    )
    for subject in subjects:
        events = [comparable(e) for e in event_collector.of_subject(subject)]
        assert events[seen[subject] :] == from_shop[subject], subject

    # Timestamps whose fraction ends in zeros, or has none, are written as Debezium writes them.
    moments = [datetime(2026, 1, 2, 3, 4, 5, micro, tzinfo=UTC) for micro in (120000, 0, 7)]
    before = len(event_collector.of_subject(subjects[1]))
    with raw_connection(legacy) as legacy_db:
        for moment in moments:
            legacy_db.execute(
                "INSERT INTO shop_order_status_history (order_id, status, note, actor, at) "
                "VALUES (%s, 'confirmed', '', 'staff', %s)",
                [order_id, moment],
            )
    wait_until(
        lambda: len(event_collector.of_subject(subjects[1])) >= before + len(moments),
        seconds=30,
        what="the legacy capture's confirmed events",
    )
    order = Order(id=order_id)
    expected = [
        order_status_event(order, OrderStatusChange(status="confirmed", note="", actor="staff", at=moment))
        for moment in moments
    ]
    assert [comparable(e) for e in event_collector.of_subject(subjects[1])[before:]] == [
        (event.type, event.subject, event.payload) for event in expected
    ]


def test_every_outbox_payload_matches_its_schema(
    shop_service: ShopService, contract_world: ContractWorld, django_db_blocker: Any
) -> None:
    page_order(
        shop_service.base_url,
        {
            "email": "schema.probe@example.com",
            "name": "Sam",
            "sku": contract_world.product_skus[0],
            "quantity": "2",
        },
    )
    with django_db_blocker.unblock(), connections[database_alias("shop")].cursor() as cursor:
        cursor.execute(
            f"SELECT id, type, aggregatetype, aggregateid, payload, created_at FROM {OUTBOX_TABLE}"
        )
        rows = cursor.fetchall()
    assert {row[1] for row in rows} >= {
        "shop.customer.registered.v1",
        "shop.order.created.v1",
        "shop.order_line.added.v1",
        "shop.order.placed.v1",
    }
    for row_id, event_type, aggregate_type, aggregate_id, payload, created_at in rows:
        event_validate(
            cloud_event(
                event_id=str(row_id),
                event_type=event_type,
                source="/shop",
                subject=f"{aggregate_type}:{aggregate_id}",
                time=created_at.isoformat(),
                data=json.loads(payload) if isinstance(payload, str) else payload,
            )
        )


def test_schemas_live_in_the_neutral_contracts_directory() -> None:
    from django.conf import settings

    directory = PROJECT_ROOT / "contracts" / "events" / "shop"
    assert str(directory) in settings.CDC_EVENT_SCHEMA_DIRS
    assert not (directory / "__init__.py").exists()
    # The order capture's 14 types and the catalogue capture's 8 (legacy/shop/catalogue_events.py).
    assert len(list(directory.glob("shop.*.v1.json"))) == 14 + 8
