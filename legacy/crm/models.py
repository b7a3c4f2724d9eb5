"""CRM tables on the shared database: staff notes on customers and orders, the events inbox."""

from django.db import models

from cdc.consuming.inbox import AbstractInboxEntry
from legacy.shop.models import Customer, Order


class Note(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="notes")
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.CASCADE, related_name="notes")
    author = models.CharField(max_length=150)
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "crm_note"
        ordering = ["-created_at", "-id"]


class CrmInboxEntry(AbstractInboxEntry):
    """Events the CRM's consumer groups have handled (see cdc.consuming.inbox)."""

    class Meta(AbstractInboxEntry.Meta):
        db_table = "crm_inbox"
