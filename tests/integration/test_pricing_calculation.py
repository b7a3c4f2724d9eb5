"""The pricing service's calculation module (a copy of the monolith's, which it may not import)
gives the monolith's breakdown, field for field, for any materials, options, quantity and rule.
Pure functions, no processes: many examples in little time; the HTTP parity test covers the rest."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from legacy.mes import pricing as legacy
from mes_pricing import pricing as extracted


def money(places: int, high: str) -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=Decimal(0), max_value=Decimal(high), places=places)


uses = st.lists(st.tuples(money(4, "9999.9999"), money(4, "999.9999")), max_size=5)
options = st.lists(
    st.tuples(st.text("ABCXYZ", min_size=1, max_size=4), uses, st.integers(0, 600)), max_size=4
)
rules = st.tuples(
    money(2, "500.00"),
    money(2, "999.99"),
    money(2, "999.99"),
    st.lists(st.tuples(st.integers(1, 10_000), money(2, "100.00")), max_size=5),
)


def inputs(module, materials, chosen, rule):  # type: ignore[no-untyped-def]
    use = lambda pairs: tuple(module.MaterialUse(unit_cost=c, quantity=q) for c, q in pairs)  # noqa: E731
    rate, overhead, margin, tiers = rule
    return {
        "materials": use(materials),
        "options": tuple(module.OptionCost(code=c, materials=use(m), labour_minutes=n) for c, m, n in chosen),
        "rule": module.Rule(
            labour_rate_per_hour=rate,
            overhead_percent=overhead,
            margin_percent=margin,
            discounts=tuple(tiers),
        ),
    }


@given(
    materials=uses, chosen=options, rule=rules, minutes=st.integers(0, 2_000), quantity=st.integers(1, 10_000)
)
@settings(max_examples=500, deadline=None)
def test_the_copy_prices_as_the_monolith(materials, chosen, rule, minutes, quantity) -> None:  # type: ignore[no-untyped-def]
    ours = extracted.price_calculate(
        labour_minutes=minutes, quantity=quantity, **inputs(extracted, materials, chosen, rule)
    )
    theirs = legacy.price_calculate(
        labour_minutes=minutes, quantity=quantity, **inputs(legacy, materials, chosen, rule)
    )
    assert ours.__dict__ == theirs.__dict__
