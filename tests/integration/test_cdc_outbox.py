"""The outbox relay: a second engine with Debezium's outbox event router relays each row of an
outbox table (Debezium's default columns plus traceparent) as one CloudEvent whose id is the
row's id."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections

from harness.engine_slot import engine_on_slot
from harness.waiting import wait_until
from tests.cdc_fixtures import (
    PROJECT_ROOT,
    CdcProcess,
    EventCollector,
    cdc_child_env,
    engine_process,
    unique_name,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, databases=["default", "control", "production"]),
]
TABLE = "cdc_test_outbox"
EVENT_TYPE = "test.outbox_probe.v1"


@pytest.fixture(scope="module")
def outbox_relay(
    django_db_setup: None,
    django_db_blocker: Any,
    live_env: dict[str, str],
    amqp_url: str,
    event_collector: EventCollector,
    worker_id: str,
) -> Iterator[CdcProcess]:
    from cdc.captures import outbox_engine_config

    with django_db_blocker.unblock():
        with connections["production"].cursor() as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (id uuid PRIMARY KEY, "
                "aggregatetype varchar(64) NOT NULL, aggregateid varchar(64) NOT NULL, "
                "type varchar(120) NOT NULL, payload jsonb NOT NULL, "
                "traceparent varchar(55) NOT NULL DEFAULT '')"
            )
        config = engine_on_slot(
            outbox_engine_config(database="production", table=TABLE), slot=unique_name(worker_id, "obx")
        )
        name = config.target.slot_name
        env = cdc_child_env(
            live_env,
            config,
            CDC_AMQP_URL=amqp_url,
            CDC_OUTBOX_SLOT_NAME=name,
            CDC_OUTBOX_PUBLICATION_NAME=name,
            CDC_EXTRA_SCHEMA_DIRS=str(PROJECT_ROOT / "tests" / "schemas"),
        )
        outbox = ("--outbox", "--database", "production", "--table", TABLE)
        with engine_process(config, env, tag="cdc-outbox", args=outbox) as relay:
            yield relay
        with connections["production"].cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")


def outbox_write(rows: list[tuple[uuid.UUID, str, dict[str, Any], str]]) -> None:
    with connections["production"].cursor() as cursor:
        for row_id, aggregate_id, payload, traceparent in rows:
            cursor.execute(
                f"INSERT INTO {TABLE} (id, aggregatetype, aggregateid, type, payload, traceparent) "
                "VALUES (%s, 'order', %s, %s, %s, %s)",
                [row_id, aggregate_id, EVENT_TYPE, json.dumps(payload), traceparent],
            )


def test_outbox_rows_are_relayed_once_each_with_their_id_subject_and_trace(
    outbox_relay: CdcProcess, event_collector: EventCollector
) -> None:
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    rows = [
        (uuid.uuid4(), str(700 + n), {"n": n, "label": f"row {n}"}, trace if n % 2 else "") for n in range(30)
    ]
    outbox_write(rows[:20])
    outbox_write(rows[20:])
    with connections["production"].cursor() as cursor:
        # The usual outbox housekeeping: relayed rows are deleted; a delete announces nothing.
        cursor.execute(f"DELETE FROM {TABLE} WHERE id = %s", [rows[0][0]])
    ids = {str(row[0]) for row in rows}

    wait_until(
        lambda: ids <= {e["id"] for e in event_collector.events()}, seconds=60, what="all outbox rows relayed"
    )
    relayed = event_collector.events(lambda e: e["id"] in ids)
    assert len(relayed) == len(rows)
    by_id = {e["id"]: e for e in relayed}
    for row_id, aggregate_id, payload, traceparent in rows:
        event = by_id[str(row_id)]
        assert event["type"] == EVENT_TYPE
        assert event["subject"] == f"order:{aggregate_id}"
        assert event["data"] == payload
        assert event["source"] == f"/production/{TABLE}"
        if traceparent:
            assert event["traceparent"] == traceparent
        else:
            assert event["traceparent"].startswith("00-")
    assert [e["data"]["n"] for e in relayed] == list(range(30))
    assert outbox_relay.alive()
