"""The price rules of legacy.mes.pricing, checked against figures worked out by hand."""

from decimal import Decimal

import pytest

from legacy.mes.pricing import MaterialUse, OptionCost, Rule, discount_for, price_calculate

D = Decimal
PLAIN = Rule(labour_rate_per_hour=D("60"), overhead_percent=D("0"), margin_percent=D("0"))
TIERED = Rule(
    labour_rate_per_hour=D("60"),
    overhead_percent=D("10"),
    margin_percent=D("20"),
    discounts=((10, D("5")), (100, D("12"))),
)
WOOD = MaterialUse(unit_cost=D("12.5"), quantity=D("2"))  # 25.00
LACQUER = OptionCost(code="lacquer", materials=(MaterialUse(D("4"), D("0.5")),), labour_minutes=10)
ENGRAVING = OptionCost(code="engraving", materials=(), labour_minutes=15)


def price(**overrides):  # type: ignore[no-untyped-def]
    arguments = {"materials": (WOOD,), "labour_minutes": 30, "options": (), "quantity": 1, "rule": PLAIN}
    return price_calculate(**{**arguments, **overrides})


def test_materials_are_unit_cost_times_quantity_summed() -> None:
    steel = MaterialUse(unit_cost=D("3.3333"), quantity=D("3"))  # 9.9999
    breakdown = price(materials=(WOOD, steel), labour_minutes=0)
    assert breakdown.materials == D("35.00")
    assert breakdown.unit_price == D("35.00")


def test_labour_is_minutes_at_the_hourly_rate() -> None:
    breakdown = price(materials=(), labour_minutes=45)
    assert breakdown.labour == D("45.00")
    assert breakdown.unit_price == D("45.00")


def test_options_add_their_materials_and_labour() -> None:
    breakdown = price(options=(LACQUER, ENGRAVING))
    assert breakdown.materials == D("27.00")  # 25 + 4 * 0.5
    assert breakdown.labour == D("55.00")  # 30 + 10 + 15 minutes at 60/h
    assert breakdown.unit_price == D("82.00")


def test_overhead_is_a_percentage_of_cost_and_margin_of_cost_plus_overhead() -> None:
    rule = Rule(labour_rate_per_hour=D("60"), overhead_percent=D("10"), margin_percent=D("20"))
    breakdown = price(rule=rule)
    # cost 25 + 30 = 55; overhead 5.50; margin (55 + 5.5) * 20% = 12.10
    assert (breakdown.overhead, breakdown.margin) == (D("5.50"), D("12.10"))
    assert breakdown.unit_price == D("72.60")
    assert breakdown.total == D("72.60")


@pytest.mark.parametrize(
    ("quantity", "percent", "unit_price"),
    [
        (1, D("0"), D("72.60")),
        (9, D("0"), D("72.60")),
        (10, D("5"), D("68.97")),  # 72.60 * 0.95
        (99, D("5"), D("68.97")),
        (100, D("12"), D("63.89")),  # 72.60 * 0.88 = 63.888
        (5000, D("12"), D("63.89")),
    ],
)
def test_the_highest_discount_tier_reached_applies(
    quantity: int, percent: Decimal, unit_price: Decimal
) -> None:
    breakdown = price(rule=TIERED, quantity=quantity)
    assert breakdown.discount_percent == percent
    assert breakdown.unit_price == unit_price
    assert breakdown.total == unit_price * quantity
    assert breakdown.quantity == quantity


def test_discount_tiers_need_not_be_sorted() -> None:
    tiers = ((100, D("12")), (10, D("5")), (50, D("8")))
    assert [discount_for(q, tiers) for q in (1, 10, 49, 50, 100)] == [0, 5, 5, 8, 12]


def test_unit_price_rounds_half_up_to_the_cent_before_the_total() -> None:
    # 0.125 of material: the unit price is 0.13 (half up), and the total is 3 * 0.13, not 0.375.
    breakdown = price(materials=(MaterialUse(D("0.125"), D("1")),), labour_minutes=0, quantity=3)
    assert breakdown.unit_price == D("0.13")
    assert breakdown.total == D("0.39")
    below_half = price(materials=(MaterialUse(D("0.1249"), D("1")),), labour_minutes=0)
    assert below_half.unit_price == D("0.12")


def test_every_figure_has_two_decimal_places() -> None:
    breakdown = price(materials=(MaterialUse(D("1.23456"), D("1.5")),), labour_minutes=7, rule=TIERED)
    for figure in (breakdown.materials, breakdown.labour, breakdown.overhead, breakdown.margin):
        assert figure.as_tuple().exponent == -2
    assert breakdown.unit_price.as_tuple().exponent == -2
    assert breakdown.total.as_tuple().exponent == -2


def test_the_same_inputs_give_the_same_price_whatever_the_option_order() -> None:
    first = price(options=(LACQUER, ENGRAVING), rule=TIERED, quantity=12)
    again = price(options=(LACQUER, ENGRAVING), rule=TIERED, quantity=12)
    reordered = price(options=(ENGRAVING, LACQUER), rule=TIERED, quantity=12)
    assert first == again == reordered


@pytest.mark.parametrize("quantity", [0, -1, -100])
def test_quantity_below_one_is_refused(quantity: int) -> None:
    with pytest.raises(ValueError, match="quantity must be positive"):
        price(quantity=quantity)
