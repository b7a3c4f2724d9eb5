"""The `pricing-catalogue` consumer group: keeps the catalogue cost projection (pricing_material,
pricing_product, pricing_product_material, pricing_product_option) current from the catalogue's
row-state events, which the legacy `catalogue` capture publishes today (legacy/shop/catalogue_events.py)
and the shop service will publish once it owns the catalogue. The pricing service never reads the
shop's database.

Run with `SERVICE=mes_pricing manage.py consume pricing-catalogue`. The inbox
(pricing_catalogue_inbox) and the projection share the pricing database: an event is claimed in the
transaction that applies it, so a redelivered event has no second effect (and every write is an
upsert or a delete of the row the event names, so applying it again would change nothing either).
"""

from dataclasses import dataclass

from cdc.consuming.envelope import CloudEvent
from cdc.consuming.groups import ConsumerGroup
from mes_pricing.catalogue import services
from mes_pricing.catalogue.models import PricingCatalogueInboxEntry

GROUP_NAME = "pricing-catalogue"

pricing_catalogue = ConsumerGroup(GROUP_NAME, service="mes_pricing", inbox=PricingCatalogueInboxEntry)


@dataclass(frozen=True)
class MaterialChanged:
    material_id: int
    code: str
    unit_cost: str


@dataclass(frozen=True)
class MaterialDeleted:
    material_id: int


@dataclass(frozen=True)
class ProductChanged:
    product_id: int
    sku: str
    labour_minutes: int
    active: bool


@dataclass(frozen=True)
class ProductDeleted:
    product_id: int


@dataclass(frozen=True)
class ProductMaterialChanged:
    product_material_id: int
    product_id: int
    material_id: int
    quantity: str


@dataclass(frozen=True)
class ProductMaterialDeleted:
    product_material_id: int
    product_id: int


@dataclass(frozen=True)
class ProductOptionChanged:
    option_id: int
    product_id: int
    code: str
    extra_material_id: int | None
    extra_material_quantity: str
    extra_labour_minutes: int


@dataclass(frozen=True)
class ProductOptionDeleted:
    option_id: int
    product_id: int


@pricing_catalogue.handles("shop.material.changed.v1", MaterialChanged)
def material_changed(event: MaterialChanged, meta: CloudEvent) -> None:
    services.material_put(material_id=event.material_id, code=event.code, unit_cost=event.unit_cost)


@pricing_catalogue.handles("shop.material.deleted.v1", MaterialDeleted)
def material_deleted(event: MaterialDeleted, meta: CloudEvent) -> None:
    services.material_remove(material_id=event.material_id)


@pricing_catalogue.handles("shop.product.changed.v1", ProductChanged)
def product_changed(event: ProductChanged, meta: CloudEvent) -> None:
    services.product_put(
        product_id=event.product_id, sku=event.sku, labour_minutes=event.labour_minutes, active=event.active
    )


@pricing_catalogue.handles("shop.product.deleted.v1", ProductDeleted)
def product_deleted(event: ProductDeleted, meta: CloudEvent) -> None:
    services.product_remove(product_id=event.product_id)


@pricing_catalogue.handles("shop.product_material.changed.v1", ProductMaterialChanged)
def product_material_changed(event: ProductMaterialChanged, meta: CloudEvent) -> None:
    services.product_material_put(
        product_material_id=event.product_material_id,
        product_id=event.product_id,
        material_id=event.material_id,
        quantity=event.quantity,
    )


@pricing_catalogue.handles("shop.product_material.deleted.v1", ProductMaterialDeleted)
def product_material_deleted(event: ProductMaterialDeleted, meta: CloudEvent) -> None:
    services.product_material_remove(product_material_id=event.product_material_id)


@pricing_catalogue.handles("shop.product_option.changed.v1", ProductOptionChanged)
def product_option_changed(event: ProductOptionChanged, meta: CloudEvent) -> None:
    services.product_option_put(
        option_id=event.option_id,
        product_id=event.product_id,
        code=event.code,
        extra_material_id=event.extra_material_id,
        extra_material_quantity=event.extra_material_quantity,
        extra_labour_minutes=event.extra_labour_minutes,
    )


@pricing_catalogue.handles("shop.product_option.deleted.v1", ProductOptionDeleted)
def product_option_deleted(event: ProductOptionDeleted, meta: CloudEvent) -> None:
    services.product_option_remove(option_id=event.option_id)
