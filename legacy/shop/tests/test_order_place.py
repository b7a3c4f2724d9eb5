"""Placing an order: every line priced, the total their sum, and all or nothing."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from legacy.mes.exceptions import PricingUnavailable
from legacy.shop.exceptions import OrderLineRefused, OrderRefused, UnknownProduct
from legacy.shop.models import Customer, Order, OrderLine, OrderStatusChange
from legacy.shop.services import MAX_LINES_PER_ORDER, OrderLineRequest, guest_order_place, order_place
from tests.factories import CustomerFactory, PricingRuleFactory, ProductFactory

pytestmark = pytest.mark.django_db
AT = datetime(2026, 1, 1, tzinfo=UTC)


def row_counts() -> tuple[int, int, int, int]:
    return (
        Customer.objects.count(),
        Order.objects.count(),
        OrderLine.objects.count(),
        OrderStatusChange.objects.count(),
    )


def test_order_total_is_the_sum_of_its_priced_lines() -> None:
    PricingRuleFactory()
    chair, table = ProductFactory(), ProductFactory(labour_minutes=90)
    order = order_place(
        customer=CustomerFactory(),
        lines=[
            OrderLineRequest(sku=chair.sku, quantity=2, options=["lacquer"]),
            OrderLineRequest(sku=table.sku, quantity=10),
            OrderLineRequest(sku=chair.sku, quantity=1),
        ],
        at=AT,
    )
    lines = list(order.lines.order_by("id"))
    assert [(line.product.sku, line.quantity) for line in lines] == [
        (chair.sku, 2),
        (table.sku, 10),
        (chair.sku, 1),
    ]
    # chair + lacquer 88.44; table: (25 + 90) * 1.1 * 1.2 = 151.80, 5 % off from 10 = 144.21
    assert [line.unit_price for line in lines] == [Decimal("88.44"), Decimal("144.21"), Decimal("72.60")]
    assert [line.line_total for line in lines] == [Decimal("176.88"), Decimal("1442.10"), Decimal("72.60")]
    order.refresh_from_db()
    assert order.total == sum(line.line_total for line in lines) == Decimal("1691.58")


def test_placed_order_starts_placed_with_one_history_entry_and_sorted_options() -> None:
    PricingRuleFactory()
    product = ProductFactory()
    product.options.create(code="engraving", name="Engraving", extra_labour_minutes=5)
    customer = CustomerFactory()
    order = order_place(
        customer=customer,
        lines=[OrderLineRequest(sku=product.sku, quantity=1, options=["lacquer", "engraving"])],
        at=AT,
    )
    assert order.status == "placed"
    assert list(order.history.values_list("status", "actor", "at")) == [("placed", customer.email, AT)]
    assert order.lines.get().options == ["engraving", "lacquer"]


@pytest.mark.parametrize(
    ("bad_line", "error_code"),
    [
        (OrderLineRequest(sku="NO-SUCH-SKU", quantity=1), "unknown_product"),
        (OrderLineRequest(sku="{sku}", quantity=1, options=["gold-leaf"]), "unknown_option"),
        (OrderLineRequest(sku="{sku}", quantity=0), "invalid_quantity"),
        (OrderLineRequest(sku="{sku}", quantity=-2), "invalid_quantity"),
        (OrderLineRequest(sku="{sku}", quantity=1, options=["lacquer", "lacquer"]), "duplicate_option"),
    ],
)
def test_one_bad_line_refuses_the_whole_order(bad_line: OrderLineRequest, error_code: str) -> None:
    PricingRuleFactory()
    product = ProductFactory()
    customer = CustomerFactory()
    bad_line = OrderLineRequest(
        sku=bad_line.sku.format(sku=product.sku), quantity=bad_line.quantity, options=bad_line.options
    )
    before = row_counts()
    with pytest.raises(OrderRefused) as refused:
        order_place(
            customer=customer,
            lines=[OrderLineRequest(sku=product.sku, quantity=1), bad_line],
            at=AT,
        )
    assert refused.value.code == error_code
    assert row_counts() == before


def test_a_bad_line_is_named_by_its_position() -> None:
    PricingRuleFactory()
    product = ProductFactory()
    with pytest.raises(OrderLineRefused) as refused:
        order_place(
            customer=CustomerFactory(),
            lines=[
                OrderLineRequest(sku=product.sku, quantity=1),
                OrderLineRequest(sku=product.sku, quantity=1, options=["gold-leaf"]),
            ],
            at=AT,
        )
    assert refused.value.message.startswith("Line 2: ")
    assert "gold-leaf" in refused.value.message


def test_inactive_product_cannot_be_ordered() -> None:
    PricingRuleFactory()
    product = ProductFactory(active=False)
    with pytest.raises(UnknownProduct) as refused:
        order_place(customer=CustomerFactory(), lines=[OrderLineRequest(sku=product.sku, quantity=1)], at=AT)
    assert refused.value.code == "unknown_product"
    assert refused.value.details == {"unknown": [product.sku]}


@pytest.mark.parametrize(
    ("count", "error_code"), [(0, "empty_order"), (MAX_LINES_PER_ORDER + 1, "too_many_lines")]
)
def test_order_line_count_is_bounded(count: int, error_code: str) -> None:
    PricingRuleFactory()
    product = ProductFactory()
    with pytest.raises(OrderRefused) as refused:
        order_place(
            customer=CustomerFactory(),
            lines=[OrderLineRequest(sku=product.sku, quantity=1)] * count,
            at=AT,
        )
    assert refused.value.code == error_code
    assert Order.objects.count() == 0


def test_order_without_an_active_pricing_rule_is_refused() -> None:
    product = ProductFactory()
    with pytest.raises(PricingUnavailable) as refused:
        order_place(customer=CustomerFactory(), lines=[OrderLineRequest(sku=product.sku, quantity=1)], at=AT)
    assert refused.value.code == "pricing_unavailable"
    assert Order.objects.count() == 0


def test_guest_order_refused_leaves_no_new_customer_behind() -> None:
    PricingRuleFactory()
    before = row_counts()
    with pytest.raises(UnknownProduct):
        guest_order_place(
            email="new@example.test", name="New", lines=[OrderLineRequest(sku="NO-SUCH", quantity=1)], at=AT
        )
    assert row_counts() == before


def test_guest_order_reuses_the_customer_of_the_same_email_in_any_case() -> None:
    PricingRuleFactory()
    product = ProductFactory()
    lines = [OrderLineRequest(sku=product.sku, quantity=1)]
    first = guest_order_place(email="Guest@Example.test", name="Guest", lines=lines, at=AT)
    second = guest_order_place(email="guest@example.test", name="Guest", lines=lines, at=AT)
    assert first.customer_id == second.customer_id
    assert Customer.objects.get().email == "guest@example.test"
