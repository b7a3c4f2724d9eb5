"""What happens to one message, whatever the broker: parse, route, handle once, retry, or give up.

`EventProcessor.process` returns a `Verdict` the transport carries out (acknowledge, dead-letter
then acknowledge, or leave unacknowledged for redelivery). The handler runs in one transaction
with the inbox claim; a failure is retried in place with exponential backoff, because moving on
to the next message would let a later event of the same aggregate overtake this one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from django.db import InterfaceError, OperationalError, close_old_connections, transaction

from cdc.consuming import metrics
from cdc.consuming.events import CloudEvent, MalformedEvent, cloudevent_parse, payload_build
from cdc.consuming.groups import ConsumerGroup, Route
from cdc.consuming.inbox import inbox_claim

logger = structlog.get_logger(__name__)

# Failures of the database itself say nothing about the message: retried without limit (a
# database outage must not empty the queue into the dead-letter queue).
INFRASTRUCTURE_ERRORS = (OperationalError, InterfaceError)
EXCEPTION_TEXT_LIMIT = 2000

# Waits `seconds` while keeping the transport alive; False when the consumer is asked to stop.
Wait = Callable[[float], bool]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_seconds: float
    max_seconds: float

    def delay(self, attempt: int) -> float:
        return float(min(self.max_seconds, self.base_seconds * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class Verdict:
    ACK = "ack"
    DEAD_LETTER = "dead_letter"
    # Stopping in the middle of retries: leave the message unacknowledged for redelivery.
    RELEASE = "release"

    action: str
    outcome: str = ""
    reason: str = ""
    detail: str = ""
    attempts: int = 0
    event: CloudEvent | None = field(default=None, compare=False)

    def dead_letter_headers(self, group: str) -> dict[str, str | int]:
        return {
            "x-death-reason": self.reason,
            "x-exception": self.detail[:EXCEPTION_TEXT_LIMIT],
            "x-consumer-group": group,
            "x-attempts": self.attempts,
            "x-dead-lettered-at": datetime.now(UTC).isoformat(),
        }


class EventProcessor:
    def __init__(self, group: ConsumerGroup, retry: RetryPolicy) -> None:
        self.group = group
        self.retry = retry
        self.database = group.database()

    def process(self, body: bytes, *, wait: Wait) -> Verdict:
        close_old_connections()
        try:
            event = cloudevent_parse(body)
        except MalformedEvent as exc:
            return self._dead_letter(exc.reason, exc.detail, attempts=0, event=None)
        with structlog.contextvars.bound_contextvars(
            consumer_group=self.group.name,
            event_id=event.id,
            event_type=event.type,
            subject=event.subject,
            traceparent=event.traceparent,
        ):
            if not self.group.subscribes_to(event.type):
                # Only on Kafka, where one topic carries every type: not ours, not an error.
                metrics.CONSUMED.labels(self.group.name, "not_subscribed").inc()
                return Verdict(Verdict.ACK, outcome="not_subscribed", event=event)
            try:
                route = self.group.route(event.type)
                payload = payload_build(route.payload_type, event.data)
            except MalformedEvent as exc:
                return self._dead_letter(exc.reason, exc.detail, attempts=0, event=event)
            return self._handle(event, route, payload, wait)

    def _handle(self, event: CloudEvent, route: Route, payload: Any, wait: Wait) -> Verdict:
        attempt = outages = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                with transaction.atomic(using=self.database):
                    claimed = inbox_claim(
                        inbox=self.group.inbox,
                        using=self.database,
                        consumer=self.group.name,
                        event_id=event.id,
                        event_type=event.type,
                        subject=event.subject,
                        at=datetime.now(UTC),
                    )
                    if claimed:
                        route.handler(payload, event)
            except INFRASTRUCTURE_ERRORS as exc:
                # Not the message's fault: it does not count towards dead-lettering.
                attempt -= 1
                outages += 1
                logger.warning("consumer.database_unavailable", outages=outages, error=str(exc))
                close_old_connections()
                if not wait(self.retry.delay(outages)):
                    return Verdict(Verdict.RELEASE, event=event)
                continue
            except Exception as exc:  # any handler failure is retried, then dead-lettered
                metrics.FAILED.labels(self.group.name, event.type).inc()
                logger.warning("consumer.handler_failed", attempt=attempt, exc_info=exc)
                if attempt >= self.retry.max_attempts:
                    return self._dead_letter(
                        "handler_failed", f"{type(exc).__name__}: {exc}", attempts=attempt, event=event
                    )
                if not wait(self.retry.delay(attempt)):
                    return Verdict(Verdict.RELEASE, event=event, attempts=attempt)
                continue
            outcome = "handled" if claimed else "duplicate"
            if claimed:
                metrics.HANDLER_LATENCY.labels(self.group.name, event.type).observe(
                    time.perf_counter() - started
                )
                logger.info("consumer.event_handled", attempts=attempt)
            else:
                logger.info("consumer.duplicate_skipped")
            metrics.CONSUMED.labels(self.group.name, outcome).inc()
            return Verdict(Verdict.ACK, outcome=outcome, attempts=attempt, event=event)

    def _dead_letter(self, reason: str, detail: str, *, attempts: int, event: CloudEvent | None) -> Verdict:
        metrics.DEAD_LETTERED.labels(self.group.name, reason).inc()
        logger.error(
            "consumer.dead_lettered",
            consumer_group=self.group.name,
            reason=reason,
            detail=detail[:EXCEPTION_TEXT_LIMIT],
            attempts=attempts,
        )
        return Verdict(
            Verdict.DEAD_LETTER,
            outcome="dead_lettered",
            reason=reason,
            detail=detail,
            attempts=attempts,
            event=event,
        )
