"""Waiting for the monolith's worker to finish the orders a test's traffic confirmed, so that it
does not write into the next test's database after this one is flushed."""

from __future__ import annotations

from django.db.models import QuerySet

from harness.waiting import wait_until
from legacy.shop.models import Order, OrderStatus
from legacy.traffic.credentials import STAFF_USERNAME


def orders_in_flight() -> QuerySet[Order]:
    """Orders confirmed and not yet in production, and those the traffic's staff confirmed that
    production has not finished."""
    confirmed_by_traffic = Order.objects.filter(history__actor=STAFF_USERNAME).exclude(
        status=OrderStatus.DONE
    )
    return Order.objects.filter(status=OrderStatus.CONFIRMED) | confirmed_by_traffic


def orders_in_flight_wait(*, seconds: float = 60) -> None:
    """Returns once every confirmed order has gone through production."""
    wait_until(
        lambda: not orders_in_flight().exists(),
        seconds=seconds,
        interval=0.2,
        what="every confirmed order through production",
    )
