"""The cost data a price needs, projected from the catalogue's events and keyed by the catalogue's
own ids. No foreign keys: events of different rows arrive in no guaranteed order, so a bill of
materials line may land before its material; a quote reads whatever is complete."""

from django.db import models

from cdc.consuming.inbox import AbstractInboxEntry


class CostMaterial(models.Model):
    id = models.BigIntegerField(primary_key=True)
    code = models.CharField(max_length=32)
    unit_cost = models.DecimalField(max_digits=12, decimal_places=4)

    class Meta:
        db_table = "pricing_material"


class CostProduct(models.Model):
    id = models.BigIntegerField(primary_key=True)
    sku = models.CharField(max_length=32, unique=True)
    labour_minutes = models.PositiveIntegerField()
    active = models.BooleanField(default=True)

    class Meta:
        db_table = "pricing_product"


class CostProductMaterial(models.Model):
    id = models.BigIntegerField(primary_key=True)
    product_id = models.BigIntegerField(db_index=True)
    material_id = models.BigIntegerField()
    quantity = models.DecimalField(max_digits=12, decimal_places=4)

    class Meta:
        db_table = "pricing_product_material"


class CostProductOption(models.Model):
    id = models.BigIntegerField(primary_key=True)
    product_id = models.BigIntegerField(db_index=True)
    code = models.CharField(max_length=32)
    extra_material_id = models.BigIntegerField(null=True, blank=True)
    extra_material_quantity = models.DecimalField(max_digits=12, decimal_places=4, default=0)
    extra_labour_minutes = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "pricing_product_option"


class PricingCatalogueInboxEntry(AbstractInboxEntry):
    """Catalogue events the `pricing-catalogue` consumer group has applied (cdc.consuming.inbox):
    in the pricing database, claimed in the transaction that writes the projection."""

    class Meta(AbstractInboxEntry.Meta):
        db_table = "pricing_catalogue_inbox"
