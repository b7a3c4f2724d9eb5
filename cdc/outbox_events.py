"""The transactional outbox: the event rows a service writes in the same transaction as its change.

A service app subclasses `OutboxEvent` in its models (the table lives in the service's own
database) and calls `outbox_write` inside the transaction of the change the event announces;
the CDC engine's outbox relay (Debezium's outbox event router, whose default column names these
are) publishes each row after commit. Nothing is published from inside the transaction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import structlog
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction
from django.utils import timezone

from cdc.consuming.envelope import EVENT_TYPE_PATTERN
from cdc.contract import subject_of
from cdc.event_tracing import span_continuing, span_traceparent, subject_attributes
from config.routers import model_database_alias
from ops import tracing

logger = structlog.get_logger(__name__)


class OutboxEvent(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    aggregatetype = models.CharField(max_length=255)
    aggregateid = models.CharField(max_length=255)
    type = models.CharField(max_length=255)
    payload = models.JSONField()
    # W3C trace context of the request that made the change, carried into the event.
    traceparent = models.CharField(max_length=55, blank=True, default="")
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        abstract = True


class OutboxOutsideTransaction(RuntimeError):
    """outbox_write was called with no transaction open: the event could outlive a rolled-back change."""


class OutboxPayloadError(ValueError):
    """The payload cannot travel as JSON."""


def outbox_model() -> type[OutboxEvent]:
    if not settings.OUTBOX_MODEL:
        raise ImproperlyConfigured(
            "No outbox model: pass outbox=<your OutboxEvent subclass> or set "
            "OUTBOX_MODEL=app_label.ModelName."
        )
    model = apps.get_model(settings.OUTBOX_MODEL)
    if not issubclass(model, OutboxEvent):
        raise ImproperlyConfigured(f"OUTBOX_MODEL={settings.OUTBOX_MODEL} is not an OutboxEvent subclass.")
    return model


def outbox_write(
    *,
    aggregate_type: str,
    aggregate_id: str | int,
    event_type: str,
    payload: Mapping[str, Any],
    outbox: type[OutboxEvent] | None = None,
    traceparent: str | None = None,
    at: datetime | None = None,
) -> OutboxEvent:
    """Adds one event to the outbox, in the caller's open transaction (refused outside one).

    `event_type` is versioned (`sales.invoice.paid.v1`); `payload` must be a JSON object of plain
    values (ids, strings, numbers; decimals as strings). `traceparent` defaults to the write's own
    span (a child of the current one) when tracing is on, else to the current span's or the one
    bound to the log context (an incoming request's or event's); the relay continues it.
    """
    model = outbox or outbox_model()
    using = model_database_alias(model)
    if not transaction.get_connection(using).in_atomic_block:
        raise OutboxOutsideTransaction(
            f"outbox_write({event_type}) needs the transaction of the change it announces: call it "
            f"inside transaction.atomic(using={using!r}) together with that change."
        )
    if not EVENT_TYPE_PATTERN.match(event_type):
        raise OutboxPayloadError(f"event type {event_type!r} does not read <domain>.<entity>.<happened>.v<N>")
    if not isinstance(payload, Mapping):
        raise OutboxPayloadError(
            f"the payload of {event_type} must be a JSON object, not {type(payload).__name__}"
        )
    try:
        json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise OutboxPayloadError(f"the payload of {event_type} is not plain JSON: {exc}") from exc
    subject = subject_of(aggregate_type, aggregate_id)
    with span_continuing(
        f"outbox write {event_type}",
        traceparent=None,  # a child of the current span
        attributes={
            "cloudevents.event_type": event_type,
            "outbox.table": model._meta.db_table,
            **subject_attributes(subject),
        },
    ) as span:
        if traceparent is None:
            traceparent = (
                span_traceparent(span)
                or tracing.current_traceparent()
                or str(structlog.contextvars.get_contextvars().get("traceparent") or "")
            )
        event = model._default_manager.using(using).create(
            aggregatetype=aggregate_type,
            aggregateid=str(aggregate_id),
            type=event_type,
            payload=dict(payload),
            traceparent=traceparent,
            created_at=at or timezone.now(),
        )
        if span is not None:
            span.set_attribute("cloudevents.event_id", str(event.id))
    logger.info(
        "outbox.written", event_id=str(event.id), event_type=event_type, aggregate_id=str(aggregate_id)
    )
    return event
