"""The projection's tables, on the pricing database: production orders as the production service's
events describe them, keyed by the production order id external users know (legacy's id, kept by
the move to mes_production). Read-only for the API; only the consumer writes them."""

from django.db import models

from cdc.consuming.inbox import AbstractInboxEntry


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


class ProjectedProductionOrder(models.Model):
    """One production order; written when its production.order.started event arrives."""

    id = models.BigIntegerField(primary_key=True)  # production_order_id of the events
    order_id = models.BigIntegerField(unique=True)
    order_public_id = models.UUIDField()
    status = models.CharField(max_length=16, choices=ProductionStatus.choices)
    lines = models.JSONField(default=list)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "public_production_order"
        ordering = ["-id"]


class ProjectedProductionStage(models.Model):
    """One stage a production order reached. No foreign key: a stage event may arrive before its
    order's started event (a republish, a redelivery after a crash); it waits here, unseen, until
    the order row exists."""

    production_order_id = models.BigIntegerField()
    status = models.CharField(max_length=16, choices=ProductionStatus.choices)
    at = models.DateTimeField()

    class Meta:
        db_table = "public_production_stage"
        ordering = ["at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["production_order_id", "status"], name="public_stage_once")
        ]


class ProductionOrdersInboxEntry(AbstractInboxEntry):
    """Events the projection's consumer group has handled (see cdc.consuming.inbox)."""

    class Meta(AbstractInboxEntry.Meta):
        db_table = "public_production_inbox"
