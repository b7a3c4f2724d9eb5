"""The CRM service's tables on its own database: staff notes, the events outbox and inbox.

`crm_note` keeps legacy's columns, types, nullability and column order (the data-migration toolkit
copies rows column for column by binary COPY), but customer_id and order_id are plain numbers: the
customers and orders are the shop's, in another database. What legacy's ON DELETE CASCADE did is
done by the `crm` consumer group (crm_app/consumers.py) when the shop announces a deletion.
"""

from django.db import models

from cdc.consuming.inbox import AbstractInboxEntry
from cdc.outbox_events import OutboxEvent


class Note(models.Model):
    author = models.CharField(max_length=150)
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    customer_id = models.BigIntegerField(db_index=True)
    order_id = models.BigIntegerField(null=True, blank=True, db_index=True)

    class Meta:
        db_table = "crm_note"
        ordering = ["-created_at", "-id"]


class CrmOutboxEvent(OutboxEvent):
    """Events the CRM publishes, written in the transaction of the change they announce and relayed
    by `manage.py cdc run --outbox --database crm --table crm_outbox`."""

    class Meta(OutboxEvent.Meta):
        db_table = "crm_outbox"


class CrmInboxEntry(AbstractInboxEntry):
    """Events the CRM's consumer groups have handled (see cdc.consuming.inbox)."""

    class Meta(AbstractInboxEntry.Meta):
        db_table = "crm_inbox"
