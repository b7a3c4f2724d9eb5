"""Tables of the pricing service, on the pricing database: pricing rules, quantity discounts and
API keys.

They mirror legacy/mes/models.py column for column (same table, column, constraint and index names,
types, nullability): the data-migration toolkit copies their rows from the monolith by binary COPY
and keeps them in step with CDC, so the shapes must stay equal. Keys move with the data and keep
working: the legacy hash (SHA-256 of a 256-bit random token) is kept, see docs/pricing-api.md.
"""

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
    # A fast hash is right here: keys are 256-bit random tokens, not passwords; a slow KDF would add
    # nothing against guessing and would cost every request. Legacy's hash, so moved keys still work.
    return hashlib.sha256(raw_key.encode()).hexdigest()


class ApiKey(models.Model):
    """A credential of an external pricing API user; only the hash of the key is stored."""

    name = models.CharField(max_length=100, unique=True)
    prefix = models.CharField(max_length=8)
    key_hash = models.CharField(max_length=64, unique=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "mes_api_key"
