"""Pricing reads: the quote of a product, from the catalogue projection's cost data
(mes_pricing.catalogue) and the service's own pricing rules. Same checks, in the same order, as the
monolith's legacy/mes/services.quote_for_sku, so that both refuse and price alike."""

from collections.abc import Sequence
from dataclasses import dataclass

from mes_pricing.catalogue.models import CostMaterial, CostProduct, CostProductMaterial, CostProductOption
from mes_pricing.exceptions import (
    CostDataIncomplete,
    DuplicateOption,
    InvalidQuantity,
    PricingUnavailable,
    ProductNotOffered,
    UnknownOption,
)
from mes_pricing.models import PricingRule
from mes_pricing.pricing import MaterialUse, OptionCost, PriceBreakdown, Rule, price_calculate


@dataclass(frozen=True)
class Quote:
    sku: str
    options: list[str]  # sorted
    breakdown: PriceBreakdown


def active_rule() -> Rule:
    """The newest active pricing rule with its discount tiers."""
    rule = PricingRule.objects.filter(active=True).order_by("-created_at", "-id").first()
    if rule is None:
        raise PricingUnavailable()
    return Rule(
        labour_rate_per_hour=rule.labour_rate_per_hour,
        overhead_percent=rule.overhead_percent,
        margin_percent=rule.margin_percent,
        discounts=tuple((d.min_quantity, d.percent) for d in rule.discounts.all()),
    )


def quote_for_sku(*, sku: str, option_codes: Sequence[str], quantity: int, rule: Rule | None = None) -> Quote:
    """Prices `quantity` of the active product `sku` with the chosen options.

    Raises ProductNotOffered, InvalidQuantity, DuplicateOption, UnknownOption, PricingUnavailable
    (no active rule) or CostDataIncomplete (the projection lacks a material the price needs)."""
    product = CostProduct.objects.filter(sku=sku, active=True).first()
    if product is None:
        raise ProductNotOffered(sku=sku)
    if quantity <= 0:
        raise InvalidQuantity(quantity=quantity)
    if len(set(option_codes)) != len(option_codes):
        raise DuplicateOption()
    known = {option.code: option for option in CostProductOption.objects.filter(product_id=product.id)}
    unknown = sorted(set(option_codes) - known.keys())
    if unknown:
        raise UnknownOption(sku=product.sku, unknown=unknown, available=sorted(known))
    lines = list(CostProductMaterial.objects.filter(product_id=product.id).order_by("id"))
    chosen = [known[code] for code in sorted(option_codes)]
    material_ids = {line.material_id for line in lines} | {
        option.extra_material_id for option in chosen if option.extra_material_id is not None
    }
    unit_costs = dict(CostMaterial.objects.filter(id__in=material_ids).values_list("id", "unit_cost"))
    missing = sorted(material_ids - unit_costs.keys())
    if missing:
        raise CostDataIncomplete(sku=product.sku, material_ids=missing)
    materials = tuple(
        MaterialUse(unit_cost=unit_costs[line.material_id], quantity=line.quantity) for line in lines
    )
    options = tuple(
        OptionCost(
            code=option.code,
            materials=(
                (MaterialUse(unit_costs[option.extra_material_id], option.extra_material_quantity),)
                if option.extra_material_id is not None
                else ()
            ),
            labour_minutes=option.extra_labour_minutes,
        )
        for option in chosen
    )
    breakdown = price_calculate(
        materials=materials,
        labour_minutes=product.labour_minutes,
        options=options,
        quantity=quantity,
        rule=rule or active_rule(),
    )
    return Quote(sku=product.sku, options=sorted(option_codes), breakdown=breakdown)
