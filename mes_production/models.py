"""Tables of the production service, on the production database.

`mes_production_order` and `mes_production_stage` keep legacy's names, columns, types, nullability
and constraints (legacy/mes/models.py): the data-migration toolkit copies and syncs them from the
legacy database (plan slice `production`). Their times are set by the services, which are given
the time, rather than by auto_now (the columns are the same). The projection of shop orders is
what the consumer needs to start production without reading the shop's database.
"""

from django.db import models

from cdc.consuming.inbox import AbstractInboxEntry
from cdc.outbox_events import OutboxEvent


class ProductionStatus(models.TextChoices):
    QUEUED = "queued"
    CUTTING = "cutting"
    ASSEMBLY = "assembly"
    QUALITY_CHECK = "quality_check"
    DONE = "done"


STAGE_SEQUENCE = [
    ProductionStatus.QUEUED,
    ProductionStatus.CUTTING,
    ProductionStatus.ASSEMBLY,
    ProductionStatus.QUALITY_CHECK,
    ProductionStatus.DONE,
]


class ProductionOrder(models.Model):
    # The shop order this production order makes; unique, so a redelivered event is harmless.
    order_id = models.BigIntegerField(unique=True)
    order_public_id = models.UUIDField()
    status = models.CharField(
        max_length=16, choices=ProductionStatus.choices, default=ProductionStatus.QUEUED
    )
    lines = models.JSONField(default=list)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "mes_production_order"
        ordering = ["-id"]


class ProductionStage(models.Model):
    production_order = models.ForeignKey(ProductionOrder, on_delete=models.CASCADE, related_name="stages")
    status = models.CharField(max_length=16, choices=ProductionStatus.choices)
    at = models.DateTimeField()

    class Meta:
        db_table = "mes_production_stage"
        ordering = ["at", "id"]
        constraints = [models.UniqueConstraint(fields=["production_order", "status"], name="stage_once")]


class ShopOrder(models.Model):
    """A shop order as its events announced it (shop.order.created.v1): what production needs."""

    order_id = models.BigIntegerField(primary_key=True)
    public_id = models.UUIDField()

    class Meta:
        db_table = "production_shop_order"


class ShopOrderLine(models.Model):
    """An order line as the shop's events last described it (added, changed; removed deletes it)."""

    line_id = models.BigIntegerField(primary_key=True)
    order_id = models.BigIntegerField(db_index=True)
    sku = models.CharField(max_length=64)
    quantity = models.PositiveIntegerField()
    options = models.JSONField(default=list)

    class Meta:
        db_table = "production_shop_order_line"


class ProductionOutboxEvent(OutboxEvent):
    """Events the production service publishes (production.order.*), written in the transaction of
    the change they announce and relayed by
    `manage.py cdc run --outbox --database production --table production_outbox`."""

    class Meta(OutboxEvent.Meta):
        db_table = "production_outbox"


class ProductionInboxEntry(AbstractInboxEntry):
    """Events the production consumer group has handled (see cdc.consuming.inbox)."""

    class Meta(AbstractInboxEntry.Meta):
        db_table = "production_inbox"
