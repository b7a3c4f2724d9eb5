"""The inbox: ids of the events a consumer group has handled, kept in the consumer's OWN database.

Each consuming app subclasses `AbstractInboxEntry` in its models (so the table lives, and migrates, with
the app's other tables). A row is claimed in the same transaction as the handler's effect: a
redelivered event finds its row and has no second effect; a handler that fails rolls its claim
back with its effect.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connections, models


class AbstractInboxEntry(models.Model):
    """One event a consumer group has handled; abstract: the concrete table is the consuming app's."""

    consumer = models.CharField(max_length=100)
    event_id = models.CharField(max_length=255)
    event_type = models.CharField(max_length=255)
    subject = models.CharField(max_length=255, blank=True, default="")
    # Indexed for pruning old entries (an unnamed index: a name built from a long app label and
    # class name would pass Django's 30-character limit).
    processed_at = models.DateTimeField(db_index=True)

    class Meta:
        abstract = True
        constraints = [
            models.UniqueConstraint(fields=["consumer", "event_id"], name="%(app_label)s_%(class)s_once")
        ]


def inbox_claim(
    *,
    inbox: type[AbstractInboxEntry],
    using: str,
    consumer: str,
    event_id: str,
    event_type: str,
    subject: str,
    at: datetime,
) -> bool:
    """Records the event as handled by `consumer`; False when it already was (a duplicate).

    Must run inside the transaction that holds the handler's effect. A concurrent claim of the same
    event (a redelivery to a second consumer while the first still works) waits on the unique
    index and then sees the first one's outcome.
    """
    connection = connections[using]
    table = connection.ops.quote_name(inbox._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (consumer, event_id, event_type, subject, processed_at) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (consumer, event_id) DO NOTHING RETURNING id",
            [consumer, event_id, event_type[:255], subject[:255], at],
        )
        return cursor.fetchone() is not None


def inbox_claim_many(
    *,
    inbox: type[AbstractInboxEntry],
    using: str,
    consumer: str,
    events: list[tuple[str, str, str]],
    at: datetime,
) -> set[str]:
    """Claims a batch of (event_id, event_type, subject) in one statement; returns the ids claimed
    now (the others were handled before). Same transaction rule as `inbox_claim`."""
    if not events:
        return set()
    unique = list(
        {
            event_id: (event_id, event_type[:255], subject[:255]) for event_id, event_type, subject in events
        }.values()
    )
    connection = connections[using]
    table = connection.ops.quote_name(inbox._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (consumer, event_id, event_type, subject, processed_at) "
            "SELECT %s, e.id, e.type, e.subject, %s FROM unnest(%s::text[], %s::text[], %s::text[]) "
            "AS e(id, type, subject) ON CONFLICT (consumer, event_id) DO NOTHING RETURNING event_id",
            [consumer, at, [e[0] for e in unique], [e[1] for e in unique], [e[2] for e in unique]],
        )
        return {row[0] for row in cursor.fetchall()}


def inbox_unclaim(
    *, inbox: type[AbstractInboxEntry], using: str, consumer: str, event_ids: list[str]
) -> None:
    """Takes back claims of a batch's messages that were left unhandled (the consumer is stopping)."""
    if not event_ids:
        return
    connection = connections[using]
    table = connection.ops.quote_name(inbox._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE consumer = %s AND event_id = ANY(%s)", [consumer, event_ids]
        )
