"""The publisher refuses a batch holding an event that does not match its schema: nothing of the
batch reaches the broker (real RabbitMQ)."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from kombu import Connection, Exchange, Queue

from cdc.cloudevents import cloud_event, stable_event_id
from cdc.event_schemas import EventSchemaError
from cdc.transports.rabbitmq import RabbitMQPublisher

pytestmark = [pytest.mark.integration]


def confirmed_event(order_id: int) -> dict:
    return cloud_event(
        event_id=stable_event_id("test", order_id),
        event_type="shop.order.confirmed.v1",
        source="/legacy/shop",
        subject=f"order:{order_id}",
        time="2026-11-26T14:00:00.000000Z",
        data={"order_id": order_id, "at": "2026-11-26T14:00:00Z", "actor": "staff", "note": ""},
    )


def test_publisher_refuses_a_batch_with_an_event_that_does_not_match_its_schema(amqp_url: str) -> None:
    exchange = Exchange(f"schema-test-{uuid.uuid4().hex[:6]}", type="topic", durable=True)
    queue = Queue(f"schema-probe-{uuid.uuid4().hex[:6]}", exchange, routing_key="#")
    publisher = RabbitMQPublisher(url=amqp_url, exchange=exchange.name)
    with Connection(amqp_url) as connection:
        bound = queue(connection.default_channel)
        exchange(connection.default_channel).declare()
        bound.declare()
        bad = confirmed_event(2)
        bad["data"]["order_id"] = "two"
        with pytest.raises(EventSchemaError, match="order_id"):
            publisher.publish_batch([confirmed_event(1), bad])
        with pytest.raises(EventSchemaError, match="no schema"):
            publisher.publish_batch([{**confirmed_event(3), "type": "shop.order.beamed.v1"}])
        publisher.publish_batch([confirmed_event(4)])
        publisher.close()
        time.sleep(0.2)
        received = []
        while (message := bound.get(no_ack=True)) is not None:
            received.append(json.loads(message.body)["data"]["order_id"])
        assert received == [4]
