"""Price calculation of a configurable product: materials, labour and options under a pricing rule.
A copy of legacy/mes/pricing.py (an extracted service may not import the monolith); the parity
tests (tests/integration/test_pricing_calculation.py, tests/integration/test_pricing_parity.py) guard
that the two stay the same to the cent.

Pure and deterministic: the same inputs and rule give the same price, to the cent.
"""

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
HUNDRED = Decimal(100)
SIXTY = Decimal(60)


@dataclass(frozen=True)
class MaterialUse:
    unit_cost: Decimal
    quantity: Decimal


@dataclass(frozen=True)
class OptionCost:
    code: str
    materials: tuple[MaterialUse, ...]
    labour_minutes: int


@dataclass(frozen=True)
class Rule:
    labour_rate_per_hour: Decimal
    overhead_percent: Decimal
    margin_percent: Decimal
    # (min_quantity, percent) tiers; the highest tier the quantity reaches applies.
    discounts: tuple[tuple[int, Decimal], ...] = ()


@dataclass(frozen=True)
class PriceBreakdown:
    materials: Decimal
    labour: Decimal
    overhead: Decimal
    margin: Decimal
    discount_percent: Decimal
    unit_price: Decimal
    quantity: int
    total: Decimal


def _materials_cost(uses: tuple[MaterialUse, ...]) -> Decimal:
    return sum((use.unit_cost * use.quantity for use in uses), Decimal(0))


def discount_for(quantity: int, tiers: tuple[tuple[int, Decimal], ...]) -> Decimal:
    reached = [percent for minimum, percent in tiers if quantity >= minimum]
    return max(reached, default=Decimal(0))


def price_calculate(
    *,
    materials: tuple[MaterialUse, ...],
    labour_minutes: int,
    options: tuple[OptionCost, ...],
    quantity: int,
    rule: Rule,
) -> PriceBreakdown:
    if quantity <= 0:
        raise ValueError("quantity must be positive")
    material_cost = _materials_cost(materials) + sum(
        (_materials_cost(option.materials) for option in options), Decimal(0)
    )
    minutes = labour_minutes + sum(option.labour_minutes for option in options)
    labour = Decimal(minutes) * rule.labour_rate_per_hour / SIXTY
    cost = material_cost + labour
    overhead = cost * rule.overhead_percent / HUNDRED
    margin = (cost + overhead) * rule.margin_percent / HUNDRED
    discount = discount_for(quantity, rule.discounts)
    unit = ((cost + overhead + margin) * (HUNDRED - discount) / HUNDRED).quantize(CENT, ROUND_HALF_UP)
    return PriceBreakdown(
        materials=material_cost.quantize(CENT, ROUND_HALF_UP),
        labour=labour.quantize(CENT, ROUND_HALF_UP),
        overhead=overhead.quantize(CENT, ROUND_HALF_UP),
        margin=margin.quantize(CENT, ROUND_HALF_UP),
        discount_percent=discount,
        unit_price=unit,
        quantity=quantity,
        total=(unit * quantity).quantize(CENT, ROUND_HALF_UP),
    )
