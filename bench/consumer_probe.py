"""The consumer group bench/consumers.py measures (loaded by its consumer processes through
CONSUMER_MODULES): each event leaves one row in bench_probe_effect, in the inbox's transaction,
so the benchmark times the consumer framework and one small effect, nothing of a domain."""

from dataclasses import dataclass

from django.db import connections

from cdc.consuming.envelope import CloudEvent
from cdc.consuming.groups import ConsumerGroup
from legacy.crm.models import CrmInboxEntry

EFFECT_TABLE = "bench_probe_effect"
EVENT_TYPE = "bench.probe.recorded.v1"
probe = ConsumerGroup("bench-probe", service="legacy", inbox=CrmInboxEntry)


def effect_table_reset() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {EFFECT_TABLE} "
            "(id bigserial PRIMARY KEY, aggregate text NOT NULL, seq integer NOT NULL)"
        )
        cursor.execute(f"TRUNCATE {EFFECT_TABLE}")


def effects_count() -> int:
    with connections["default"].cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {EFFECT_TABLE}")
        return int(cursor.fetchone()[0])


@dataclass(frozen=True)
class Recorded:
    aggregate: str
    seq: int


@probe.handles(EVENT_TYPE, Recorded)
def recorded(event: Recorded, meta: CloudEvent) -> None:
    with connections[probe.database()].cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {EFFECT_TABLE} (aggregate, seq) VALUES (%s, %s)", [event.aggregate, event.seq]
        )
