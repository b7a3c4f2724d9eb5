"""Publishers of CloudEvents to a broker, one module per transport, chosen by CDC_TRANSPORT.

A publisher takes a whole batch, validates every event against its schema before sending any
(unless the batch is `ValidatedEvents`, checked once already where it was made),
sends them in order, and returns only when the broker has confirmed all of them; otherwise it
raises, and the engine does not commit the batch (it is read again after a restart).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from opentelemetry.trace import SpanKind

from cdc.contract import TRANSPORT_KAFKA, TRANSPORT_RABBITMQ, TRANSPORTS
from cdc.event_schemas import ValidatedEvents, events_validated
from cdc.event_tracing import event_attributes, span_start, span_traceparent
from ops import tracing

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


@contextmanager
def publish_spans(events: Sequence[Event], *, system: str, destination: str) -> Iterator[None]:
    """A PRODUCER span per event, child of the traceparent the event carries, for the time the
    batch takes to be confirmed; each event's traceparent becomes its span's, so a consumer
    continues from the publish. A failure marks every span of the batch. Nothing when tracing is off."""
    if not events or not tracing.enabled():
        yield
        return
    spans = []
    for event in events:
        span = span_start(
            f"publish {destination}",
            traceparent=event.get("traceparent"),
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": system,
                "messaging.operation.type": "publish",
                "messaging.destination.name": destination,
                "messaging.message.id": str(event.get("id") or ""),
                **event_attributes(event),
            },
        )
        carried = span_traceparent(span)
        if carried:
            event["traceparent"] = carried
        spans.append(span)
    try:
        yield
    except BaseException as error:
        for span in spans:
            if span is not None:
                tracing.record_failure(span, error)
        raise
    finally:
        for span in spans:
            if span is not None:
                span.end()


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
