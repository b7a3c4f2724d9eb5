"""The hand-over sweep to events mode: every confirmed order the poller left is sent once."""

from datetime import UTC, datetime
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from legacy.crm.orchestrator import confirmed_orders_dispatch_all, confirmed_orders_waiting
from legacy.crm.services import order_confirm
from legacy.shop.models import Order
from legacy.shop.services import OrderLineRequest, order_place
from tests.factories import CustomerFactory, PricingRuleFactory, ProductFactory

pytestmark = pytest.mark.django_db
AT = datetime(2026, 1, 1, tzinfo=UTC)


def confirmed_orders(count: int) -> list[int]:
    PricingRuleFactory()
    product, customer = ProductFactory(), CustomerFactory()
    ids = []
    for _ in range(count):
        order = order_place(customer=customer, lines=[OrderLineRequest(sku=product.sku, quantity=1)], at=AT)
        ids.append(order_confirm(order_id=order.id, actor="staff", at=AT).id)
    return ids


def test_every_waiting_order_is_sent_once_across_batches() -> None:
    ids = confirmed_orders(5)
    sent: list[dict[str, Any]] = []

    assert confirmed_orders_dispatch_all(batch_size=2, at=AT, send=sent.append) == 5
    assert confirmed_orders_dispatch_all(batch_size=2, at=AT, send=sent.append) == 0
    assert sorted(request["order_id"] for request in sent) == ids
    assert confirmed_orders_waiting() == 0
    assert not Order.objects.filter(id__in=ids, sent_to_mes_at__isnull=True).exists()


def test_the_command_dry_run_counts_and_sends_nothing(settings) -> None:  # type: ignore[no-untyped-def]
    settings.ORCHESTRATION_MODE = "events"
    confirmed_orders(3)
    out = StringIO()

    call_command("send_confirmed_to_mes", "--dry-run", stdout=out)

    assert out.getvalue().strip() == "3 confirmed orders wait to be sent to the MES"
    assert confirmed_orders_waiting() == 3


def test_sweep_and_poll_send_nothing_when_production_runs_in_the_service(settings: Any) -> None:
    from django.core.management.base import CommandError

    from legacy.crm.tasks import poll_confirmed_orders

    settings.MES_PRODUCTION = "service"
    settings.ORCHESTRATION_MODE = "polling"
    ids = confirmed_orders(3)

    with pytest.raises(CommandError, match="MES_PRODUCTION=service"):
        call_command("send_confirmed_to_mes", stdout=StringIO())
    assert poll_confirmed_orders() == 0
    assert confirmed_orders_waiting() == len(ids)
    assert not Order.objects.filter(id__in=ids, sent_to_mes_at__isnull=False).exists()
