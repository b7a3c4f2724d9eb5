"""Quotes from the catalogue projection and the service's own rules: refusals in the monolith's
order, and no price at all when the projection lacks a material the price needs."""

from decimal import Decimal

import pytest

from mes_pricing.catalogue.models import CostMaterial, CostProduct, CostProductMaterial, CostProductOption
from mes_pricing.exceptions import (
    CostDataIncomplete,
    DuplicateOption,
    PricingUnavailable,
    ProductNotOffered,
    UnknownOption,
)
from mes_pricing.models import PricingRule, QuantityDiscount
from mes_pricing.selectors import quote_for_sku

pytestmark = pytest.mark.django_db(databases=["default", "pricing"])


@pytest.fixture
def table() -> CostProduct:
    rule = PricingRule.objects.create(
        name="standard",
        labour_rate_per_hour=Decimal("42.00"),
        overhead_percent=Decimal("10.00"),
        margin_percent=Decimal("20.00"),
    )
    QuantityDiscount.objects.create(rule=rule, min_quantity=10, percent=Decimal("5.00"))
    CostMaterial.objects.create(id=501, code="OAK", unit_cost=Decimal("48.5000"))
    CostMaterial.objects.create(id=502, code="OIL", unit_cost=Decimal("12.0000"))
    product = CostProduct.objects.create(id=71, sku="TABLE", labour_minutes=90)
    CostProductMaterial.objects.create(id=1, product_id=71, material_id=501, quantity=Decimal("1.5000"))
    CostProductOption.objects.create(
        id=1,
        product_id=71,
        code="OILED",
        extra_material_id=502,
        extra_material_quantity=Decimal("0.2500"),
        extra_labour_minutes=15,
    )
    return product


def test_a_quote_prices_materials_labour_options_and_the_discount(table: CostProduct) -> None:
    quote = quote_for_sku(sku="TABLE", option_codes=["OILED"], quantity=10)
    # materials 1.5*48.5 + 0.25*12 = 75.75; labour 105 min at 42/h = 73.50; cost 149.25;
    # overhead 14.925; margin 32.835; 197.01 less 5% = 187.1595 -> 187.16
    assert quote.breakdown.materials == Decimal("75.75") and quote.breakdown.labour == Decimal("73.50")
    assert quote.breakdown.unit_price == Decimal("187.16") and quote.breakdown.total == Decimal("1871.60")
    assert quote.options == ["OILED"] and quote.breakdown.discount_percent == Decimal("5.00")


def test_refusals_come_in_the_monoliths_order(table: CostProduct) -> None:
    with pytest.raises(ProductNotOffered):
        quote_for_sku(sku="CHAIR", option_codes=["X", "X"], quantity=1)
    with pytest.raises(DuplicateOption):
        quote_for_sku(sku="TABLE", option_codes=["NOPE", "NOPE"], quantity=1)
    with pytest.raises(UnknownOption) as unknown:
        quote_for_sku(sku="TABLE", option_codes=["NOPE"], quantity=1)
    assert unknown.value.details == {"unknown": ["NOPE"], "available": ["OILED"]}
    PricingRule.objects.update(active=False)
    with pytest.raises(PricingUnavailable):
        quote_for_sku(sku="TABLE", option_codes=[], quantity=1)


def test_a_retired_product_is_not_offered(table: CostProduct) -> None:
    CostProduct.objects.filter(id=71).update(active=False)
    with pytest.raises(ProductNotOffered):
        quote_for_sku(sku="TABLE", option_codes=[], quantity=1)


def test_a_material_not_yet_projected_gives_no_price_rather_than_a_wrong_one(table: CostProduct) -> None:
    CostMaterial.objects.filter(id=502).delete()
    assert quote_for_sku(sku="TABLE", option_codes=[], quantity=1).breakdown.unit_price > 0
    with pytest.raises(CostDataIncomplete) as incomplete:
        quote_for_sku(sku="TABLE", option_codes=["OILED"], quantity=1)
    assert incomplete.value.code == "pricing_unavailable"
    assert incomplete.value.details == {"missing_materials": [502]}
