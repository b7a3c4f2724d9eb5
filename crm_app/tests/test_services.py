"""Notes on the crm database: a note and its crm.note.added.v1 event commit together, the event
matches its schema, and the shop's deletions take the notes with them."""

from datetime import UTC, datetime

import pytest
from django.db import transaction

from cdc.cloudevents import cloud_event
from cdc.event_schemas import event_validate
from crm_app.exceptions import EmptyNote
from crm_app.models import CrmOutboxEvent, Note
from crm_app.services import customer_notes_delete, note_add, order_notes_delete

pytestmark = pytest.mark.django_db(databases=["default", "crm"])


def test_a_note_and_its_event_are_written_together() -> None:
    note = note_add(customer_id=7, order_id=42, author="staff.anna", text="  called back  ")

    (event,) = CrmOutboxEvent.objects.all()
    assert (note.text, note.customer_id, note.order_id) == ("called back", 7, 42)
    assert (event.type, event.aggregatetype, event.aggregateid) == ("crm.note.added.v1", "order", "42")
    assert event.payload["note_id"] == note.id and event.payload["text"] == "called back"
    event_validate(
        cloud_event(
            event_id=str(event.id),
            event_type=event.type,
            source="/crm/crm_outbox",
            subject=f"order:{event.aggregateid}",
            time=event.payload["created_at"],
            data=event.payload,
        )
    )


def test_a_failed_transaction_leaves_neither_note_nor_event() -> None:
    with pytest.raises(RuntimeError), transaction.atomic(using="crm"):
        note_add(customer_id=7, order_id=42, author="staff.anna", text="lost")
        raise RuntimeError("the caller's transaction fails")
    assert not Note.objects.exists() and not CrmOutboxEvent.objects.exists()


def test_an_empty_note_is_refused() -> None:
    with pytest.raises(EmptyNote):
        note_add(customer_id=7, order_id=42, author="staff.anna", text="  \n ")
    assert not Note.objects.exists() and not CrmOutboxEvent.objects.exists()


def test_deleting_a_customer_or_an_order_deletes_only_their_notes() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for customer_id, order_id in [(1, 10), (1, 11), (2, 20), (2, 21)]:
        Note.objects.create(customer_id=customer_id, order_id=order_id, author="a", text="t", created_at=at)

    assert order_notes_delete(order_id=20) == 1
    assert customer_notes_delete(customer_id=1) == 2
    assert list(Note.objects.values_list("order_id", flat=True)) == [21]
    assert customer_notes_delete(customer_id=1) == 0
