"""The shop service's tables on its own database.

The catalogue, customer and order tables mirror legacy/shop/models.py column for column (same table,
column, constraint and index names, types, nullability): the data-migration toolkit copies rows
between the two databases by binary COPY, and tests/contract checks the shapes stay equal.
"""

import secrets
import uuid

from django.db import models

from cdc.consuming.inbox import AbstractInboxEntry
from cdc.outbox_events import OutboxEvent


class Material(models.Model):
    code = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=120)
    unit = models.CharField(max_length=16, default="kg")
    unit_cost = models.DecimalField(max_digits=12, decimal_places=4)

    class Meta:
        db_table = "shop_material"

    def __str__(self) -> str:
        return self.code


class Product(models.Model):
    sku = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    labour_minutes = models.PositiveIntegerField()
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "shop_product"
        ordering = ["sku"]

    def __str__(self) -> str:
        return self.sku


class ProductMaterial(models.Model):
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="materials")
    material = models.ForeignKey(Material, on_delete=models.PROTECT)
    quantity = models.DecimalField(max_digits=12, decimal_places=4)

    class Meta:
        db_table = "shop_product_material"
        constraints = [models.UniqueConstraint(fields=["product", "material"], name="product_material_once")]


class ProductOption(models.Model):
    """A configurable choice on a product (finish, size, ...) that adds material and labour."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="options")
    code = models.CharField(max_length=32)
    name = models.CharField(max_length=120)
    extra_material = models.ForeignKey(Material, null=True, blank=True, on_delete=models.PROTECT)
    extra_material_quantity = models.DecimalField(max_digits=12, decimal_places=4, default=0)
    extra_labour_minutes = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "shop_product_option"
        ordering = ["code"]
        constraints = [models.UniqueConstraint(fields=["product", "code"], name="option_code_once")]


def new_customer_token() -> str:
    return secrets.token_urlsafe(24)


class Customer(models.Model):
    email = models.EmailField(unique=True)
    name = models.CharField(max_length=200)
    company = models.CharField(max_length=200, blank=True, default="")
    # The customer API's credential: "Authorization: Bearer <token>".
    api_token = models.CharField(max_length=64, unique=True, default=new_customer_token)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "shop_customer"

    def __str__(self) -> str:
        return self.email


class OrderStatus(models.TextChoices):
    PLACED = "placed"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    IN_PRODUCTION = "in_production"
    DONE = "done"


class Order(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="orders")
    status = models.CharField(max_length=16, choices=OrderStatus.choices, default=OrderStatus.PLACED)
    total = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3, default="EUR")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Written by the CRM's polling loop once it has sent the order to the MES.
    sent_to_mes_at = models.DateTimeField(null=True, blank=True)
    production_stage = models.CharField(max_length=16, blank=True, default="")

    class Meta:
        db_table = "shop_order"
        ordering = ["-id"]
        indexes = [
            models.Index(
                fields=["status"],
                name="order_unsent_confirmed",
                condition=models.Q(status="confirmed", sent_to_mes_at__isnull=True),
            )
        ]


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT)
    quantity = models.PositiveIntegerField()
    options = models.JSONField(default=list)
    unit_price = models.DecimalField(max_digits=14, decimal_places=2)
    line_total = models.DecimalField(max_digits=14, decimal_places=2)

    class Meta:
        db_table = "shop_order_line"
        ordering = ["id"]


class OrderStatusChange(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="history")
    status = models.CharField(max_length=16, choices=OrderStatus.choices)
    note = models.CharField(max_length=300, blank=True, default="")
    actor = models.CharField(max_length=64, default="system")
    at = models.DateTimeField()

    class Meta:
        db_table = "shop_order_status_history"
        ordering = ["at", "id"]


class ShopOutboxEvent(OutboxEvent):
    """Events the shop publishes, written in the transaction of the change they announce and relayed
    by `manage.py cdc run --outbox --database shop --table shop_outbox`."""

    class Meta(OutboxEvent.Meta):
        db_table = "shop_outbox"


class ShopInboxEntry(AbstractInboxEntry):
    """Events the shop's consumer groups have handled (see cdc.consuming.inbox)."""

    class Meta(AbstractInboxEntry.Meta):
        db_table = "shop_inbox"
