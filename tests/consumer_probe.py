"""A consumer group for the consumer framework's tests (loaded by consumer processes through
CONSUMER_MODULES): each handled event leaves one row in consumer_probe_effect, and the event's
data can ask the handler to be slow, to fail, or to kill its process right after commit."""

import os
import signal
import time
from dataclasses import dataclass

import structlog
from django.db import connections, transaction

from cdc.consuming.envelope import CloudEvent
from cdc.consuming.groups import ConsumerGroup
from legacy.crm.models import CrmInboxEntry

logger = structlog.get_logger(__name__)

PROBE_TABLE = "consumer_probe_effect"
probe = ConsumerGroup("test-probe", service="legacy", inbox=CrmInboxEntry)


def probe_table_reset(using: str = "default") -> None:
    with connections[using].cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {PROBE_TABLE} (id bigserial PRIMARY KEY, "
            "aggregate text NOT NULL, seq integer NOT NULL, event_id text NOT NULL, pid integer NOT NULL, "
            "at timestamptz DEFAULT now())"
        )
        cursor.execute(f"TRUNCATE {PROBE_TABLE}")


def probe_effects(using: str = "default") -> list[tuple[str, int, str, int]]:
    """(aggregate, seq, event_id, pid) of every effect, in the order they were committed."""
    with connections[using].cursor() as cursor:
        cursor.execute(f"SELECT aggregate, seq, event_id, pid FROM {PROBE_TABLE} ORDER BY id")
        return list(cursor.fetchall())


@dataclass(frozen=True)
class Recorded:
    aggregate: str
    seq: int
    sleep_seconds: float = 0.0
    kill_after_commit: bool = False


@probe.handles("test.probe.recorded.v1", Recorded)
def recorded(event: Recorded, meta: CloudEvent) -> None:
    logger.info("probe.handling", aggregate=event.aggregate, seq=event.seq)
    if event.sleep_seconds:
        time.sleep(event.sleep_seconds)
    using = probe.database()
    with connections[using].cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {PROBE_TABLE} (aggregate, seq, event_id, pid) VALUES (%s, %s, %s, %s)",
            [event.aggregate, event.seq, meta.id, os.getpid()],
        )
    if event.kill_after_commit:
        # Dies after the effect and the inbox row are committed, before the broker hears an ack.
        transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL), using=using)


@dataclass(frozen=True)
class Failing:
    seq: int


@probe.handles("test.probe.failing.v1", Failing)
def failing(event: Failing, meta: CloudEvent) -> None:
    raise RuntimeError(f"probe handler fails on purpose (seq {event.seq})")
