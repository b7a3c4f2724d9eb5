"""The inbox: ids of the events a consumer group has handled, kept in the consumer's OWN database.

Each consuming app subclasses `InboxEntry` in its models (so the table lives, and migrates, with
the app's other tables). A row is claimed in the same transaction as the handler's effect: a
redelivered event finds its row and has no second effect; a handler that fails rolls its claim
back with its effect.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connections, models


class InboxEntry(models.Model):
    consumer = models.CharField(max_length=100)
    event_id = models.CharField(max_length=255)
    event_type = models.CharField(max_length=255)
    subject = models.CharField(max_length=255, blank=True, default="")
    processed_at = models.DateTimeField()

    class Meta:
        abstract = True
        constraints = [
            models.UniqueConstraint(fields=["consumer", "event_id"], name="%(app_label)s_%(class)s_once")
        ]
        indexes = [models.Index(fields=["processed_at"], name="%(app_label)s_%(class)s_at")]


def inbox_claim(
    *,
    inbox: type[InboxEntry],
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
