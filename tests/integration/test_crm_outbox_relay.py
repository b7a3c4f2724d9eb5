"""The CRM's outbox relay, `manage.py cdc run --outbox --database crm --table crm_outbox` with
SERVICE=crm (as crm_app/processes.py starts it): a note's crm.note.added.v1 reaches the broker once,
checked against its schema (contracts/events/crm/), with the outbox row's id as its id."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from crm_app.models import CrmOutboxEvent
from crm_app.processes import OUTBOX_TABLE
from crm_app.services import note_add
from harness.waiting import wait_until
from tests.cdc_fixtures import CdcProcess, EventCollector, cdc_child_env, engine_process, unique_name

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases=["default", "crm"])]


@pytest.fixture(scope="module")
def crm_outbox_relay(
    django_db_setup: None,
    django_db_blocker: Any,
    live_env: dict[str, str],
    amqp_url: str,
    event_collector: EventCollector,
    worker_id: str,
) -> Iterator[CdcProcess]:
    from cdc.captures import outbox_engine_config
    from harness.engine_slot import engine_on_slot

    with django_db_blocker.unblock():
        config = engine_on_slot(
            outbox_engine_config(database="crm", table=OUTBOX_TABLE), slot=unique_name(worker_id, "crmobx")
        )
        name = config.target.slot_name
        env = cdc_child_env(
            live_env,
            config,
            SERVICE="crm",
            CDC_AMQP_URL=amqp_url,
            CDC_OUTBOX_SLOT_NAME=name,
            CDC_OUTBOX_PUBLICATION_NAME=name,
        )
        args = ("--outbox", "--database", "crm", "--table", OUTBOX_TABLE)
        with engine_process(config, env, tag="crm-outbox", args=args) as relay:
            yield relay


def test_a_note_is_announced_once_through_the_crm_outbox(
    crm_outbox_relay: CdcProcess, event_collector: EventCollector
) -> None:
    note = note_add(customer_id=5, order_id=77, author="staff.anna", text="asked for a discount")
    row = CrmOutboxEvent.objects.get(aggregateid="77")

    wait_until(
        lambda: event_collector.events(lambda e: e["id"] == str(row.id)),
        seconds=60,
        what="the note's event relayed",
        process=crm_outbox_relay,
    )
    (event,) = event_collector.events(lambda e: e["id"] == str(row.id))
    assert (event["type"], event["subject"], event["source"]) == (
        "crm.note.added.v1",
        "order:77",
        "/crm/crm_outbox",
    )
    assert event["data"] == {
        "note_id": note.id,
        "customer_id": 5,
        "order_id": 77,
        "author": "staff.anna",
        "text": "asked for a discount",
        "created_at": row.payload["created_at"],
    }
    assert crm_outbox_relay.alive()
