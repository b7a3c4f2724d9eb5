"""MES tables on the shared database: pricing rules, API keys, production orders and stages."""

import hashlib

from django.db import models


class PricingRule(models.Model):
    """One pricing regime; the newest active rule prices every quote."""

    name = models.CharField(max_length=64, unique=True)
    labour_rate_per_hour = models.DecimalField(max_digits=10, decimal_places=2)
    overhead_percent = models.DecimalField(max_digits=5, decimal_places=2)
    margin_percent = models.DecimalField(max_digits=5, decimal_places=2)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "mes_pricing_rule"


class QuantityDiscount(models.Model):
    rule = models.ForeignKey(PricingRule, on_delete=models.CASCADE, related_name="discounts")
    min_quantity = models.PositiveIntegerField()
    percent = models.DecimalField(max_digits=5, decimal_places=2)

    class Meta:
        db_table = "mes_quantity_discount"
        ordering = ["-min_quantity"]
        constraints = [models.UniqueConstraint(fields=["rule", "min_quantity"], name="discount_tier_once")]


# The first characters of a key, stored in clear so that a key can be told apart in lists and logs.
API_KEY_PREFIX_LENGTH = 8


def hash_api_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


class ApiKey(models.Model):
    """A credential of an external MES API user; only the hash of the key is stored."""

    name = models.CharField(max_length=100, unique=True)
    prefix = models.CharField(max_length=8)
    key_hash = models.CharField(max_length=64, unique=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "mes_api_key"


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
    # The shop order this production order makes; unique so a redelivered request is harmless.
    order_id = models.BigIntegerField(unique=True)
    order_public_id = models.UUIDField()
    status = models.CharField(
        max_length=16, choices=ProductionStatus.choices, default=ProductionStatus.QUEUED
    )
    lines = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

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
