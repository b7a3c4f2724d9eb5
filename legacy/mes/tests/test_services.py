"""MES services on the database: quotes from the stored rules, production orders and stages."""

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from legacy.mes.exceptions import PricingRefused, PricingUnavailable, ProductNotOffered, UnknownOption
from legacy.mes.models import PricingRule, ProductionStage
from legacy.mes.services import production_advance, production_order_create, quote_calculate, quote_for_sku
from tests.factories import PricingRuleFactory, ProductFactory

pytestmark = pytest.mark.django_db
AT = datetime(2026, 1, 1, tzinfo=UTC)


def test_quote_prices_product_materials_labour_and_option_under_the_active_rule() -> None:
    PricingRuleFactory()
    product = ProductFactory()
    breakdown = quote_calculate(product=product, option_codes=["lacquer"], quantity=10)
    # materials 2 * 12.5 + 0.5 * 4 = 27; labour 40 min at 60/h = 40; cost 67; overhead 6.70;
    # margin 14.74; 88.44 less the 5 % tier from 10 pieces = 84.018
    assert breakdown.materials == Decimal("27.00")
    assert breakdown.labour == Decimal("40.00")
    assert breakdown.unit_price == Decimal("84.02")
    assert breakdown.total == Decimal("840.20")


def test_quote_uses_the_newest_active_rule() -> None:
    PricingRuleFactory(margin_percent=Decimal("20"))
    PricingRuleFactory(margin_percent=Decimal("50"))
    PricingRuleFactory(margin_percent=Decimal("90"), active=False)
    breakdown = quote_calculate(product=ProductFactory(), option_codes=[], quantity=1)
    assert breakdown.unit_price == Decimal("90.75")  # 55 + 5.5 overhead, + 50 % margin


@pytest.mark.parametrize(
    ("options", "quantity", "code"),
    [
        (["gold-leaf"], 1, "unknown_option"),
        (["lacquer", "lacquer"], 1, "duplicate_option"),
        ([], 0, "invalid_quantity"),
        ([], -3, "invalid_quantity"),
    ],
)
def test_quote_refuses_bad_requests_with_a_domain_error(options: list[str], quantity: int, code: str) -> None:
    PricingRuleFactory()
    with pytest.raises(PricingRefused) as refused:
        quote_calculate(product=ProductFactory(), option_codes=options, quantity=quantity)
    assert refused.value.code == code


def test_unknown_option_error_names_the_options_available() -> None:
    PricingRuleFactory()
    product = ProductFactory()
    with pytest.raises(UnknownOption) as refused:
        quote_calculate(product=product, option_codes=["gold-leaf"], quantity=1)
    assert "gold-leaf" in refused.value.message
    assert refused.value.details == {"unknown": ["gold-leaf"], "available": ["lacquer"]}


def test_quote_without_an_active_rule_is_refused() -> None:
    PricingRuleFactory(active=False)
    assert PricingRule.objects.filter(active=True).count() == 0
    with pytest.raises(PricingUnavailable) as refused:
        quote_calculate(product=ProductFactory(), option_codes=[], quantity=1)
    assert refused.value.code == "pricing_unavailable"


def test_a_repeated_production_request_returns_the_first_production_order() -> None:
    first, created = production_order_create(order_id=7, order_public_id=str(uuid.uuid4()), lines=[], at=AT)
    again, created_again = production_order_create(
        order_id=7, order_public_id=str(uuid.uuid4()), lines=[], at=AT
    )
    assert (created, created_again) == (True, False)
    assert again.id == first.id
    assert ProductionStage.objects.filter(production_order=first).count() == 1


def test_production_advances_stage_by_stage_and_stops_at_done() -> None:
    production, _ = production_order_create(order_id=8, order_public_id=str(uuid.uuid4()), lines=[], at=AT)
    seen = []
    while (advanced := production_advance(production_order_id=production.id, at=AT)) is not None:
        seen.append(advanced.status)
    assert seen == ["cutting", "assembly", "quality_check", "done"]
    stages = list(
        ProductionStage.objects.filter(production_order=production).values_list("status", flat=True)
    )
    assert stages == ["queued", "cutting", "assembly", "quality_check", "done"]


def test_a_quote_for_a_sku_no_active_product_has_is_refused() -> None:
    PricingRuleFactory()
    retired = ProductFactory(active=False)
    for sku in ("NO-SUCH-SKU", retired.sku):
        with pytest.raises(ProductNotOffered) as refused:
            quote_for_sku(sku=sku, option_codes=[], quantity=1)
        assert (refused.value.code, refused.value.details) == ("unknown_product", {"unknown": [sku]})
