"""CRM writes on its own database: staff notes (announced through the CRM's outbox) and the
deletions that follow the shop's (what legacy's ON DELETE CASCADE foreign keys did)."""

from __future__ import annotations

import structlog
from django.db import transaction

from cdc.cloudevents import iso_time
from cdc.outbox_events import outbox_write
from config.routers import model_database_alias
from crm_app.exceptions import EmptyNote
from crm_app.models import CrmOutboxEvent, Note

logger = structlog.get_logger(__name__)

NOTE_ADDED = "crm.note.added.v1"


def note_add(*, customer_id: int, order_id: int | None, author: str, text: str) -> Note:
    """Stores the note and its crm.note.added.v1 event in one transaction. Raises EmptyNote."""
    if not text.strip():
        raise EmptyNote()
    with transaction.atomic(using=model_database_alias(Note)):
        note = Note.objects.create(
            customer_id=customer_id, order_id=order_id, author=author, text=text.strip()
        )
        outbox_write(
            aggregate_type="order" if order_id is not None else "customer",
            aggregate_id=order_id if order_id is not None else customer_id,
            event_type=NOTE_ADDED,
            payload={
                "note_id": note.id,
                "customer_id": customer_id,
                "order_id": order_id,
                "author": author,
                "text": note.text,
                "created_at": iso_time(note.created_at),
            },
            outbox=CrmOutboxEvent,
            at=note.created_at,
        )
    logger.info("note.added", note_id=note.id, order_id=order_id, customer_id=customer_id)
    return note


def customer_notes_delete(*, customer_id: int) -> int:
    """Deletes every note on the customer (the shop deleted them); the number deleted."""
    deleted, _ = Note.objects.filter(customer_id=customer_id).delete()
    logger.info("notes.deleted_with_customer", customer_id=customer_id, notes=deleted)
    return deleted


def order_notes_delete(*, order_id: int) -> int:
    """Deletes every note on the order (the shop deleted it); the number deleted."""
    deleted, _ = Note.objects.filter(order_id=order_id).delete()
    logger.info("notes.deleted_with_order", order_id=order_id, notes=deleted)
    return deleted
