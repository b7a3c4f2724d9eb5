"""Trace context through the WAL: the transaction that writes a row also writes the W3C traceparent
of the span that made it, as a transactional logical decoding message, so the CDC engine can
continue the request's trace in the events it publishes.

Writing side: `wal_trace_install()` (connected to `connection_created` when tracing is on) adds an
execute wrapper to every PostgreSQL connection; on the first write of a transaction made under a
sampled span it runs `SELECT pg_logical_emit_message(true, 'traceparent', '<traceparent>')` in that
transaction, once (a write outside `atomic` is wrapped in one, so the message shares its transaction).
Reading side: pgoutput delivers the message inside the transaction's stream and Debezium's
PostgreSQL connector hands it over as a message record (`<topic prefix>.message`, op "m") carrying
the transaction id; `TraceContexts` maps transaction id -> traceparent for the rows of the same
transaction. Message records are never translated into domain events.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from opentelemetry import trace

from ops import tracing

MESSAGE_PREFIX = "traceparent"
# Debezium names the destination of logical decoding messages `<topic.prefix>.message`.
MESSAGE_DESTINATION_SUFFIX = ".message"
# Enough transactions for a batch whose message came a batch before its rows; the oldest are dropped.
DEFAULT_CAPACITY = 10_000

_TX_ID = re.compile(r'"txId":\s*(\d+)')
_WRITE_VERBS = ("insert", "update", "delete", "merge")
_EMIT_SQL = "SELECT pg_logical_emit_message(true, %s, %s)"


# --- reading: the CDC engine -----------------------------------------------------------------


def is_message_destination(destination: str) -> bool:
    return destination.endswith(MESSAGE_DESTINATION_SUFFIX)


@dataclass(frozen=True)
class TraceMessage:
    """The trace context one transaction left in the WAL."""

    tx_id: int
    traceparent: str


def trace_message_read(value: str | None) -> TraceMessage | None:
    """The transaction id and traceparent of a Debezium logical decoding message record carrying trace
    context; None for any other record, a message of another prefix, a non-transactional message or
    a content that is not a well-formed traceparent."""
    if not value:
        return None
    try:
        envelope = json.loads(value)
    except ValueError:
        return None
    if not isinstance(envelope, dict) or envelope.get("op") != "m":
        return None
    message = envelope.get("message") or {}
    source = envelope.get("source") or {}
    if not isinstance(message, dict) or message.get("prefix") != MESSAGE_PREFIX:
        return None
    tx_id = source.get("txId") if isinstance(source, dict) else None
    if not isinstance(tx_id, int):
        return None
    traceparent = _content_text(message.get("content"))
    if traceparent is None or tracing.context_from_traceparent(traceparent) is None:
        return None
    return TraceMessage(tx_id, traceparent)


def _content_text(content: Any) -> str | None:
    """The message content: bytes, which the JSON converter writes as base64."""
    if not isinstance(content, str):
        return None
    try:
        return base64.b64decode(content, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        return None


def record_tx_id(value: str | None) -> int | None:
    """The transaction id of a Debezium change envelope (source.txId), read without parsing the JSON:
    inside a JSON string a quote is escaped, so the first match is the source's."""
    if not value:
        return None
    match = _TX_ID.search(value)
    return int(match.group(1)) if match else None


class TraceContexts:
    """Transaction id -> traceparent of the last `capacity` transactions that left one in the WAL.

    A transaction may carry several (a consumer handling a batch of events in one transaction
    emits one per event's span): a row belongs to the last message before it in the stream, or,
    when its transaction's message comes after it, to the first one. The handler therefore
    reads a batch twice: `remember` on the first pass (the first message of a transaction wins),
    `advance` in stream order on the second, while rows look up `traceparent_of`."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._by_tx: OrderedDict[int, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_tx)

    def remember(self, tx_id: int, traceparent: str) -> bool:
        """Keeps `traceparent` for `tx_id` unless the transaction has one; False when it is
        malformed or already known."""
        if tx_id in self._by_tx or tracing.context_from_traceparent(traceparent) is None:
            return False
        self._set(tx_id, traceparent)
        return True

    def advance(self, tx_id: int, traceparent: str) -> None:
        """The transaction's rows from here on belong to `traceparent` (a later message of it)."""
        if tracing.context_from_traceparent(traceparent) is not None:
            self._set(tx_id, traceparent)

    def _set(self, tx_id: int, traceparent: str) -> None:
        self._by_tx[tx_id] = traceparent
        self._by_tx.move_to_end(tx_id)
        while len(self._by_tx) > self.capacity:
            self._by_tx.popitem(last=False)

    def traceparent_of(self, tx_id: int | None) -> str | None:
        return None if tx_id is None else self._by_tx.get(tx_id)


# --- writing: every process whose writes may be captured ---------------------------------------


def _is_write(sql: str) -> bool:
    return sql.lstrip()[:6].lower().startswith(_WRITE_VERBS)


class WalTraceWriter:
    """A Django execute wrapper (one per connection): the first write of each transaction made under
    a sampled span first leaves the span's traceparent in the WAL, in that transaction (and again
    when a later write of it runs under another span)."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self._emitting = False
        self._traceparent = ""
        self._marker: Callable[[], None] | None = None

    def _emitted_here(self, traceparent: str) -> bool:
        """Whether this transaction has `traceparent` in the WAL already: the marker left in its
        on_commit list is cleared at commit, at rollback and with a rolled-back savepoint (whose
        message is discarded with it)."""
        marker = self._marker
        return (
            traceparent == self._traceparent
            and marker is not None
            and any(entry[1] is marker for entry in self.connection.run_on_commit)
        )

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        if self._emitting or not _is_write(sql):
            return execute(sql, params, many, context)
        span_context = trace.get_current_span().get_span_context()
        if not (span_context.is_valid and span_context.trace_flags.sampled):
            return execute(sql, params, many, context)
        connection = self.connection
        if not connection.in_atomic_block:
            # A write in autocommit is a transaction of its own: give it one the message can share.
            with transaction.atomic(using=connection.alias):
                return self(execute, sql, params, many, context)
        traceparent = tracing.current_traceparent()
        if not self._emitted_here(traceparent):
            self._emitting = True
            try:
                with connection.cursor() as cursor:
                    cursor.execute(_EMIT_SQL, [MESSAGE_PREFIX, traceparent])
            finally:
                self._emitting = False

            def marker() -> None:
                return None

            self._traceparent, self._marker = traceparent, marker
            connection.on_commit(marker)
        return execute(sql, params, many, context)


def wal_trace_install(sender: Any = None, *, connection: Any, **_: Any) -> None:
    """`connection_created` receiver: adds the writer to a new PostgreSQL connection when tracing
    is on (when it is off, nothing is added and writes cost nothing more)."""
    if not tracing.enabled() or connection.vendor != "postgresql":
        return
    if not any(isinstance(wrapper, WalTraceWriter) for wrapper in connection.execute_wrappers):
        connection.execute_wrappers.append(WalTraceWriter(connection))
