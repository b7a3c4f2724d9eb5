"""The same engine with CDC_TRANSPORT=kafka against Tansu (a Kafka-protocol broker): each event is
keyed by its aggregate, so one order's events stay in order in one partition."""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic
from django.utils import timezone

from legacy.crm.services import order_confirm
from legacy.shop.services import OrderLineRequest, order_place
from tests.cdc_fixtures import CdcProcess, cdc_child_env, engine_process, legacy_capture_config
from tests.factories import CustomerFactory, PricingRuleFactory, ProductFactory

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, databases=["default", "control"]),
]


@pytest.fixture(scope="module")
def kafka_topic(tansu: str) -> str:
    topic = f"domain.events.{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": tansu})
    for future in admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)]).values():
        future.result(timeout=30)
    return topic


@pytest.fixture(scope="module")
def kafka_engine(
    django_db_setup: None,
    django_db_blocker: Any,
    live_env: dict[str, str],
    tansu: str,
    kafka_topic: str,
    worker_id: str,
) -> Iterator[CdcProcess]:
    config = legacy_capture_config(worker_id, "kfk")
    env = cdc_child_env(
        live_env,
        config,
        CDC_TRANSPORT="kafka",
        CDC_KAFKA_BOOTSTRAP_SERVERS=tansu,
        CDC_KAFKA_TOPIC=kafka_topic,
    )
    with django_db_blocker.unblock(), engine_process(config, env, tag="cdc-kafka") as engine:
        yield engine


def test_events_flow_through_kafka_keyed_by_aggregate_in_order(
    kafka_engine: CdcProcess, tansu: str, kafka_topic: str
) -> None:
    PricingRuleFactory()
    product = ProductFactory()
    customer = CustomerFactory()
    order_ids = []
    for _ in range(10):
        order = order_place(
            customer=customer, lines=[OrderLineRequest(sku=product.sku, quantity=1)], at=timezone.now()
        )
        order_confirm(order_id=order.id, actor="staff", at=timezone.now())
        order_ids.append(order.id)
    expected = [
        "shop.order.created.v1",
        "shop.order_line.added.v1",
        "shop.order.placed.v1",
        "shop.order.confirmed.v1",
    ]
    consumer = Consumer(
        {
            "bootstrap.servers": tansu,
            "group.id": f"cdc-test-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([kafka_topic])
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    wanted = {f"order:{order_id}" for order_id in order_ids}
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and not all(len(by_key[k]) >= len(expected) for k in wanted):
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            event = json.loads(message.value())
            key = message.key().decode()
            assert key == event["subject"]
            headers = dict(message.headers() or [])
            assert headers["ce_id"].decode() == event["id"]
            by_key[key].append(event)
            partitions[key].add(message.partition())
    finally:
        consumer.close()
    for key in wanted:
        assert [e["type"] for e in by_key[key]] == expected, key
        assert len(partitions[key]) == 1
    assert kafka_engine.alive()
