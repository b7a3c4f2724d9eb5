"""What happens to messages, whatever the broker: parse, route, handle once, retry, or give up.

`EventProcessor.process_batch` takes the messages a transport has in hand and returns one
`Verdict` per message it settled, in order (acknowledge, dead-letter then acknowledge, or leave
unacknowledged for redelivery); the transport keeps the rest for the next call.

The handlers of a batch run in ONE transaction, each after its inbox claim: a commit costs a disk
flush (2.5 ms here), so a commit per message would cap a consumer near 400 events/s. When a
handler fails, the whole transaction rolls back, the messages before it are redone and
committed, and the failing one is retried alone with exponential backoff, in place: moving on
would let a later event of the same aggregate overtake it. A handler's effects outside its
database (a publish) can therefore repeat, as after any crash: they must be idempotent downstream.
A database outage is waited out without limit and does not count against the message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from django.db import DatabaseError, InterfaceError, close_old_connections, connections, transaction
from opentelemetry.trace import SpanKind

from cdc.consuming import metrics
from cdc.consuming.envelope import CloudEvent, MalformedEvent, cloudevent_parse, payload_build
from cdc.consuming.groups import ConsumerGroup, Route
from cdc.consuming.inbox import inbox_claim, inbox_claim_many, inbox_unclaim
from cdc.event_tracing import failure_span, span_continuing, subject_attributes
from ops import tracing

logger = structlog.get_logger(__name__)
# The dead-letter reason of an event whose handler failed every attempt (others: MalformedEvent's).
HANDLER_FAILED = "handler_failed"

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


class _HandlerFailed(Exception):
    """The handler of the batch's message `index` raised; the batch's transaction is rolled back."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error


@dataclass(frozen=True)
class _Ready:
    """A message that passed the edge checks: its envelope, handler and payload."""

    event: CloudEvent
    route: Route
    payload: Any


Item = _Ready | Verdict


class EventProcessor:
    def __init__(self, group: ConsumerGroup, retry: RetryPolicy) -> None:
        self.group = group
        self.retry = retry
        self.database = group.database()
        # Failure series exist from the start at zero: `increase()` sees the first retry or dead letter.
        for event_type in group.routes:
            metrics.FAILED.labels(group.name, event_type)
        for reason in (*MalformedEvent.REASONS, HANDLER_FAILED):
            metrics.DEAD_LETTERED.labels(group.name, reason)

    def process_batch(
        self, bodies: Sequence[bytes], *, wait: Wait, stopping: Callable[[], bool] = lambda: False
    ) -> list[Verdict]:
        """Settles a prefix of `bodies` (at least the first) and returns its verdicts in order.

        It stops early after a failing handler (retried alone) or when `stopping()` turns true.
        """
        close_old_connections()
        verdicts = self._settle([self._prepare(body) for body in bodies], wait, stopping)
        for verdict in verdicts:  # counted once settled for good
            if verdict.action == Verdict.ACK:
                metrics.CONSUMED.labels(self.group.name, verdict.outcome).inc()
            elif verdict.action == Verdict.DEAD_LETTER:
                metrics.DEAD_LETTERED.labels(self.group.name, verdict.reason).inc()
        return verdicts

    def _settle(self, items: list[Item], wait: Wait, stopping: Callable[[], bool]) -> list[Verdict]:
        try:
            return self._commit(items, stopping)
        except _HandlerFailed as failure:
            error = failure.error
            if not (isinstance(error, DatabaseError | InterfaceError) and self._database_lost()):
                # Redo the messages before the failing one (rolled back with it), then retry it alone.
                done = self._settle(items[: failure.index], wait, stopping) if failure.index else []
                if len(done) < failure.index:
                    return done  # stopping
                ready = items[failure.index]
                assert isinstance(ready, _Ready)
                return [*done, self._retry(ready, wait, failures=self._failure(ready, error, attempt=1))]
        except (DatabaseError, InterfaceError) as exc:
            error = exc
        # The database went away (or the commit failed): nothing of the batch happened. Start
        # again with its first message alone, which waits for the database to come back.
        logger.warning("consumer.batch_rolled_back", consumer_group=self.group.name, error=repr(error))
        close_old_connections()
        first = items[0]
        return [first if isinstance(first, Verdict) else self._retry(first, wait, failures=0)]

    def _commit(self, items: list[Item], stopping: Callable[[], bool]) -> list[Verdict]:
        """Claims the batch's events in the inbox with one statement, then runs the handlers of the
        events claimed now, in one transaction; all or nothing. (A round trip per message for its
        claim and a savepoint per message would each cost as much as the handlers' work.)"""
        verdicts: list[Verdict] = []
        ready = [item for item in items if isinstance(item, _Ready)]
        with transaction.atomic(using=self.database):
            claimed = inbox_claim_many(
                inbox=self.group.inbox,
                using=self.database,
                consumer=self.group.name,
                events=[(r.event.id, r.event.type, r.event.subject) for r in ready],
                at=datetime.now(UTC),
            )
            for index, item in enumerate(items):
                if index and stopping():
                    # What was claimed for the messages left in hand is given back.
                    inbox_unclaim(
                        inbox=self.group.inbox,
                        using=self.database,
                        consumer=self.group.name,
                        event_ids=list(claimed),
                    )
                    break
                if isinstance(item, Verdict):
                    verdicts.append(item)
                    continue
                first_time = item.event.id in claimed
                claimed.discard(item.event.id)  # a second copy in the same batch is a duplicate
                try:
                    verdicts.append(self._apply(item, claimed=first_time))
                except Exception as exc:  # settled by the caller: redo, retry or dead-letter
                    raise _HandlerFailed(index, exc) from exc
        return verdicts

    def _database_lost(self) -> bool:
        """Whether the last error was the database going away (not a handler's failing query)."""
        connection = connections[self.database]
        try:
            return connection.connection is None or not connection.is_usable()
        except (DatabaseError, InterfaceError):
            return True

    def _prepare(self, body: bytes) -> _Ready | Verdict:
        try:
            event = cloudevent_parse(body)
        except MalformedEvent as exc:
            return self._dead_letter(exc.reason, exc.detail, attempts=0, event=None, error=exc)
        with self._context(event):
            if not self.group.subscribes_to(event.type):
                # Only on Kafka, where one topic carries every type: not ours, not an error.
                return Verdict(Verdict.ACK, outcome="not_subscribed", event=event)
            try:
                route = self.group.route(event.type)
                payload = payload_build(route.payload_type, event.data)
            except MalformedEvent as exc:
                return self._dead_letter(exc.reason, exc.detail, attempts=0, event=event, error=exc)
        return _Ready(event=event, route=route, payload=payload)

    def _context(self, event: CloudEvent) -> Any:
        return structlog.contextvars.bound_contextvars(
            consumer_group=self.group.name,
            event_id=event.id,
            event_type=event.type,
            subject=event.subject,
            traceparent=event.traceparent,
            # The event's trace on every line of its handling, with tracing off too (inside the
            # handling's span, ops.tracing.add_trace_ids puts that span's ids instead).
            trace_id=tracing.trace_id_of(event.traceparent),
        )

    def _apply(self, ready: _Ready, *, claimed: bool | None = None) -> Verdict:
        """Runs the handler if the event is claimed now. `claimed` is None when the claim is still
        to be made (a message retried alone, in its own transaction)."""
        event = ready.event
        started = time.perf_counter()
        with self._context(event), transaction.atomic(using=self.database, savepoint=False):
            if claimed is None:
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
                with self._span(event):
                    ready.route.handler(ready.payload, event)
                    logger.debug("consumer.event_handled")
            else:
                logger.info("consumer.duplicate_skipped")
        if claimed:
            metrics.HANDLER_LATENCY.labels(self.group.name, event.type).observe(time.perf_counter() - started)
        return Verdict(Verdict.ACK, outcome="handled" if claimed else "duplicate", attempts=1, event=event)

    def _span(self, event: CloudEvent) -> Any:
        """The CONSUMER span of one handling, continuing the event's trace; an exception leaving
        the handler marks it failed (ops.tracing.record_failure)."""
        return span_continuing(
            f"consume {self.group.name}",
            traceparent=event.traceparent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.operation.type": "process",
                "messaging.consumer.group.name": self.group.name,
                **self._event_attributes(event),
            },
        )

    @staticmethod
    def _event_attributes(event: CloudEvent) -> dict[str, str]:
        return {
            "messaging.message.id": event.id,
            "cloudevents.event_id": event.id,
            "cloudevents.event_type": event.type,
            **subject_attributes(event.subject),
        }

    def _retry(self, ready: _Ready, wait: Wait, *, failures: int) -> Verdict:
        """Handles one message alone until it succeeds, runs out of attempts, or the consumer stops."""
        attempt, outages = failures, 0
        while True:
            if outages or attempt:
                if not wait(self.retry.delay(outages or attempt)):
                    return Verdict(Verdict.RELEASE, attempts=attempt, event=ready.event)
            try:
                verdict = self._apply(ready)
            except Exception as exc:  # noqa: BLE001 - any handler failure is retried, then dead-lettered
                if isinstance(exc, DatabaseError | InterfaceError) and self._database_lost():
                    # Not the message's fault: it does not count towards dead-lettering.
                    outages += 1
                    with self._context(ready.event):
                        logger.warning("consumer.database_unavailable", outages=outages, error=str(exc))
                    close_old_connections()
                    continue
                outages = 0
                attempt = self._failure(ready, exc, attempt=attempt + 1)
                if attempt >= self.retry.max_attempts:
                    with self._context(ready.event):
                        return self._dead_letter(
                            HANDLER_FAILED,
                            f"{type(exc).__name__}: {exc}",
                            attempts=attempt,
                            event=ready.event,
                            error=exc,
                        )
                continue
            return Verdict(verdict.action, outcome=verdict.outcome, attempts=attempt + 1, event=ready.event)

    def _failure(self, ready: _Ready, exc: Exception, *, attempt: int) -> int:
        metrics.FAILED.labels(self.group.name, ready.event.type).inc()
        with self._context(ready.event):
            logger.warning("consumer.handler_failed", attempt=attempt, exc_info=exc)
        return attempt

    def _dead_letter(
        self,
        reason: str,
        detail: str,
        *,
        attempts: int,
        event: CloudEvent | None,
        error: BaseException | None = None,
    ) -> Verdict:
        logger.error(
            "consumer.dead_lettered",
            consumer_group=self.group.name,
            reason=reason,
            detail=detail[:EXCEPTION_TEXT_LIMIT],
            attempts=attempts,
        )
        if error is not None:  # in the event's trace when it names one, else a trace of its own
            failure_span(
                f"dead-letter {self.group.name}",
                traceparent=event.traceparent if event else None,
                error=error,
                attributes={
                    "messaging.consumer.group.name": self.group.name,
                    "consumer.dead_letter_reason": reason,
                    "consumer.attempts": attempts,
                    **(self._event_attributes(event) if event else {}),
                },
            )
        return Verdict(
            Verdict.DEAD_LETTER,
            outcome="dead_lettered",
            reason=reason,
            detail=detail,
            attempts=attempts,
            event=event,
        )
