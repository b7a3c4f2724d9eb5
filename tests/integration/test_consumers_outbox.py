"""outbox_write: one call that adds an event row to the caller's open transaction, and refuses to
run outside one (the event could then outlive a rolled-back change)."""

from collections.abc import Iterator
from decimal import Decimal

import pytest
import structlog
from django.db import connections, transaction
from django.test.utils import isolate_apps

from cdc.outbox_events import OutboxEvent, OutboxOutsideTransaction, OutboxPayloadError, outbox_write

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, databases=["default", "control"]),
]


@pytest.fixture
def outbox() -> Iterator[type[OutboxEvent]]:
    """A service's concrete outbox, here on the control database (the cdc app's)."""
    with isolate_apps("cdc"):

        class ProbeOutboxEvent(OutboxEvent):
            class Meta(OutboxEvent.Meta):
                app_label = "cdc"
                db_table = "cdc_probe_outbox"

        with connections["control"].schema_editor() as editor:
            editor.create_model(ProbeOutboxEvent)
        yield ProbeOutboxEvent
        with connections["control"].schema_editor() as editor:
            editor.delete_model(ProbeOutboxEvent)


def write(outbox: type[OutboxEvent], **overrides: object) -> OutboxEvent:
    arguments: dict = {
        "aggregate_type": "order",
        "aggregate_id": 42,
        "event_type": "shop.order.placed.v1",
        "payload": {"order_id": 42, "total": "10.50"},
        "outbox": outbox,
        **overrides,
    }
    return outbox_write(**arguments)


def test_outbox_write_outside_a_transaction_is_refused(outbox) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(OutboxOutsideTransaction, match="transaction.atomic"):
        write(outbox)
    assert outbox.objects.using("control").count() == 0


def test_outbox_row_commits_and_rolls_back_with_the_callers_change(outbox) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RuntimeError), transaction.atomic(using="control"):
        write(outbox)
        raise RuntimeError("the change fails after the event was written")
    assert outbox.objects.using("control").count() == 0

    with structlog.contextvars.bound_contextvars(traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01"):
        with transaction.atomic(using="control"):
            event = write(outbox)
    row = outbox.objects.using("control").get()
    assert row.id == event.id
    assert (row.aggregatetype, row.aggregateid, row.type) == ("order", "42", "shop.order.placed.v1")
    assert row.payload == {"order_id": 42, "total": "10.50"}
    assert row.traceparent == "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    columns = {
        c.name
        for c in connections["control"].introspection.get_table_description(
            connections["control"].cursor(), "cdc_probe_outbox"
        )
    }
    assert {"id", "aggregatetype", "aggregateid", "type", "payload", "traceparent", "created_at"} <= columns


def test_outbox_write_refuses_payloads_that_are_not_plain_json(outbox) -> None:  # type: ignore[no-untyped-def]
    with transaction.atomic(using="control"):
        with pytest.raises(OutboxPayloadError, match="not plain JSON"):
            write(outbox, payload={"total": Decimal("10.50")})
        with pytest.raises(OutboxPayloadError, match="JSON object"):
            write(outbox, payload=[1, 2])
        with pytest.raises(OutboxPayloadError, match="v<N>"):
            write(outbox, event_type="shop.order.placed")
    assert outbox.objects.using("control").count() == 0
