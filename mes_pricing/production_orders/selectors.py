"""The projection's reads: production orders as the deprecated API lists them, each with its
stages (in the order they were reached)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet

from mes_pricing.production_orders.models import ProjectedProductionOrder, ProjectedProductionStage


def production_order_list(*, order_id: int | None = None) -> QuerySet[ProjectedProductionOrder]:
    """Newest first (legacy's order); the caller pages it and then attaches the stages."""
    orders = ProjectedProductionOrder.objects.all()
    if order_id is not None:
        orders = orders.filter(order_id=order_id)
    return orders


def production_order_get(*, production_order_id: int) -> ProjectedProductionOrder | None:
    order = ProjectedProductionOrder.objects.filter(id=production_order_id).first()
    if order is not None:
        stages_attach([order])
    return order


def stages_attach(orders: Iterable[ProjectedProductionOrder]) -> None:
    """Sets `stage_list` on each order, in one query for the page (the stages have no foreign key:
    a stage may be recorded before its order)."""
    by_id = {order.id: order for order in orders}
    for order in by_id.values():
        order.stage_list = []  # type: ignore[attr-defined]
    for stage in ProjectedProductionStage.objects.filter(production_order_id__in=list(by_id)):
        by_id[stage.production_order_id].stage_list.append(stage)  # type: ignore[attr-defined]
