"""A tiny publisher of contract-conforming CloudEvents for the consumer tests, and readers of what
the consumers left on the broker (dead letters, queue depths).

Consumer tests that need exact control of what arrives (the same message twice, a malformed one,
a failing one among good ones) publish with it instead of running the CDC engine:
`legacy_order_events` builds the events the engine emits for an order's rows (checked against the
real engine by tests/integration/test_events_end_to_end.py), `amqp_publish`/`kafka_produce` put them
on the wire exactly as the contract says (routing key/key, headers, properties). Tests of the
orchestration itself use the real engine (the `engine_order_events` fixture).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import amqp
import kombu
from kombu import Exchange

from legacy.shop.models import Order

EXCHANGE = "domain.events"
CONTENT_TYPE = "application/cloudevents+json"


def cloud_event(
    event_type: str,
    subject: str,
    data: dict[str, Any],
    *,
    event_id: str | None = None,
    source: str = "/tests",
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": source,
        "type": event_type,
        "subject": subject,
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
        "traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01",
        "data": data,
    }


def legacy_order_events(order: Order) -> list[dict[str, Any]]:
    """The events CDC emits for a confirmed order's rows, in change order: shop.order.created.v1
    (the order row), shop.order_line.added.v1 (each line), shop.order.placed.v1 and
    shop.order.confirmed.v1 (the status history rows); data shaped as the engine's schemas."""
    subject = f"order:{order.id}"
    source = "/legacy/shop"
    events = [
        cloud_event(
            "shop.order.created.v1",
            subject,
            {
                "order_id": order.id,
                "public_id": str(order.public_id),
                "customer_id": order.customer_id,
                "status": "placed",
                "total": str(order.total),
                "currency": order.currency,
                "created_at": order.created_at.isoformat(),
            },
            event_id=f"test:{order.id}:created",
            source=source,
        )
    ]
    for line in order.lines.select_related("product").order_by("id"):
        data = {
            "order_id": order.id,
            "line_id": line.id,
            "product_id": line.product_id,
            "sku": line.product.sku,
            "quantity": line.quantity,
            "options": line.options,
            "unit_price": str(line.unit_price),
            "line_total": str(line.line_total),
        }
        events.append(
            cloud_event(
                "shop.order_line.added.v1", subject, data, event_id=f"test:line:{line.id}", source=source
            )
        )
    for change in order.history.order_by("at", "id"):
        data = {"order_id": order.id, "at": change.at.isoformat(), "actor": change.actor, "note": change.note}
        event_type = f"shop.order.{change.status}.v1"
        events.append(
            cloud_event(event_type, subject, data, event_id=f"test:history:{change.id}", source=source)
        )
    return events


def amqp_publish_raw(
    url: str,
    body: bytes,
    *,
    routing_key: str,
    headers: dict[str, Any] | None = None,
    message_id: str | None = None,
    exchange: str = EXCHANGE,
) -> None:
    with kombu.Connection(url, transport_options={"confirm_publish": True}) as connection:
        channel = connection.channel()
        Exchange(exchange, type="topic", durable=True)(channel).declare()
        properties: dict[str, Any] = {"delivery_mode": 2, "content_type": CONTENT_TYPE}
        if message_id:
            properties["message_id"] = message_id
        channel.basic_publish(
            amqp.Message(body, application_headers=headers or {}, **properties),
            exchange=exchange,
            routing_key=routing_key,
        )


def amqp_publish(url: str, events: Iterable[dict[str, Any]], *, exchange: str = EXCHANGE) -> None:
    """Publishes CloudEvents per the contract: routing key = type, persistent, confirmed."""
    with kombu.Connection(url, transport_options={"confirm_publish": True}) as connection:
        channel = connection.channel()
        Exchange(exchange, type="topic", durable=True)(channel).declare()
        for event in events:
            channel.basic_publish(
                amqp.Message(
                    json.dumps(event).encode(),
                    delivery_mode=2,
                    content_type=CONTENT_TYPE,
                    message_id=event["id"],
                    application_headers={"aggregate_id": event["subject"]},
                ),
                exchange=exchange,
                routing_key=event["type"],
            )


def amqp_drain(url: str, queue: str) -> list[amqp.Message]:
    """Takes every message off `queue` (acknowledging them)."""
    messages = []
    with kombu.Connection(url) as connection:
        channel = connection.channel()
        while (message := channel.basic_get(queue)) is not None:
            channel.basic_ack(message.delivery_tag)
            messages.append(message)
    return messages


def amqp_queue_depths(url: str, queues: Iterable[str]) -> dict[str, int]:
    with kombu.Connection(url) as connection:
        channel = connection.channel()
        return {name: channel.queue_declare(queue=name, passive=True).message_count for name in queues}


def kafka_produce(
    bootstrap_servers: str, topic: str, events: Iterable[dict[str, Any] | bytes]
) -> list[tuple[int, int]]:
    """Produces CloudEvents per the contract (key = aggregate id, value = the JSON); returns the
    (partition, offset) of each message."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap_servers, "enable.idempotence": True, "acks": "all"})
    positions: list[tuple[int, int]] = []

    def delivered(error: Any, message: Any) -> None:
        assert error is None, error
        positions.append((message.partition(), message.offset()))

    for event in events:
        if isinstance(event, bytes):
            producer.produce(topic, value=event, key=b"garbage", on_delivery=delivered)
        else:
            producer.produce(
                topic, value=json.dumps(event).encode(), key=event["subject"].encode(), on_delivery=delivered
            )
    remaining = producer.flush(30)
    assert remaining == 0, f"{remaining} messages were not delivered to Kafka"
    return positions
