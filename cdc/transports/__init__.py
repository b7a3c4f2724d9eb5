"""Publishers of CloudEvents to a broker, one module per transport, chosen by CDC_TRANSPORT.

A publisher takes a whole batch, validates every event against its schema before sending any
(unless the batch is `ValidatedEvents`, checked once already where it was made),
sends them in order, and returns only when the broker has confirmed all of them; otherwise it
raises, and the engine does not commit the batch (it is read again after a restart).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from cdc.contract import TRANSPORT_KAFKA, TRANSPORT_RABBITMQ, TRANSPORTS
from cdc.event_schemas import ValidatedEvents, events_validated

Event = dict[str, Any]


class PublishError(RuntimeError):
    """The broker did not confirm a batch (unreachable, refused, timed out)."""


class Publisher(Protocol):
    def publish_batch(self, events: Sequence[Event]) -> None: ...

    def close(self) -> None: ...


def encode_events(events: Sequence[Event]) -> list[bytes]:
    """Validates every event not checked yet (raising EventSchemaError on the first bad one) and
    encodes them."""
    if not isinstance(events, ValidatedEvents):
        events = events_validated(events)
    return [json.dumps(event, separators=(",", ":")).encode() for event in events]


def publisher_from_settings(*, transport: str | None = None) -> Publisher:
    from django.conf import settings

    transport = transport or settings.CDC_TRANSPORT
    if transport == TRANSPORT_RABBITMQ:
        from cdc.transports.rabbitmq import RabbitMQPublisher

        return RabbitMQPublisher(
            url=settings.CDC_AMQP_URL,
            exchange=settings.CDC_EXCHANGE,
            confirm_timeout=settings.CDC_CONFIRM_TIMEOUT_SECONDS,
        )
    if transport == TRANSPORT_KAFKA:
        from cdc.transports.kafka import KafkaPublisher

        return KafkaPublisher(
            bootstrap_servers=settings.CDC_KAFKA_BOOTSTRAP_SERVERS,
            topic=settings.CDC_KAFKA_TOPIC,
            delivery_timeout=settings.CDC_CONFIRM_TIMEOUT_SECONDS,
        )
    raise ValueError(f"CDC_TRANSPORT={transport!r} is not one of {', '.join(TRANSPORTS)}")
