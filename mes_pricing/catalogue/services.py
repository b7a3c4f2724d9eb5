"""Writes of the catalogue cost projection, one per catalogue event (mes_pricing/catalogue/consumers.py).

Each write sets a row to the state its event carries (an upsert) or removes it, so applying an event
again changes nothing. Rows are keyed by the catalogue's own ids.
"""

from __future__ import annotations

from decimal import Decimal

from mes_pricing.catalogue.models import CostMaterial, CostProduct, CostProductMaterial, CostProductOption


def material_put(*, material_id: int, code: str, unit_cost: str) -> None:
    CostMaterial.objects.update_or_create(
        id=material_id, defaults={"code": code, "unit_cost": Decimal(unit_cost)}
    )


def material_remove(*, material_id: int) -> None:
    CostMaterial.objects.filter(id=material_id).delete()


def product_put(*, product_id: int, sku: str, labour_minutes: int, active: bool) -> None:
    # A sku is unique in the catalogue at any moment: another row holding it here is a product whose
    # rename or deletion has not arrived yet (products are ordered per product only); its own later
    # event puts it back in its new state.
    CostProduct.objects.filter(sku=sku).exclude(id=product_id).delete()
    CostProduct.objects.update_or_create(
        id=product_id, defaults={"sku": sku, "labour_minutes": labour_minutes, "active": active}
    )


def product_remove(*, product_id: int) -> None:
    # The catalogue deletes a product's bill of materials and options with it (their own deletions
    # follow on the same subject); removing them here too keeps a quote from seeing half a product.
    CostProductMaterial.objects.filter(product_id=product_id).delete()
    CostProductOption.objects.filter(product_id=product_id).delete()
    CostProduct.objects.filter(id=product_id).delete()


def product_material_put(
    *, product_material_id: int, product_id: int, material_id: int, quantity: str
) -> None:
    CostProductMaterial.objects.update_or_create(
        id=product_material_id,
        defaults={"product_id": product_id, "material_id": material_id, "quantity": Decimal(quantity)},
    )


def product_material_remove(*, product_material_id: int) -> None:
    CostProductMaterial.objects.filter(id=product_material_id).delete()


def product_option_put(
    *,
    option_id: int,
    product_id: int,
    code: str,
    extra_material_id: int | None,
    extra_material_quantity: str,
    extra_labour_minutes: int,
) -> None:
    CostProductOption.objects.update_or_create(
        id=option_id,
        defaults={
            "product_id": product_id,
            "code": code,
            "extra_material_id": extra_material_id,
            "extra_material_quantity": Decimal(extra_material_quantity),
            "extra_labour_minutes": extra_labour_minutes,
        },
    )


def product_option_remove(*, option_id: int) -> None:
    CostProductOption.objects.filter(id=option_id).delete()
