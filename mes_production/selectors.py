"""Reads of the production service: the projected lines of a shop order, when production next
has work to do."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connections

from config.routers import model_database_alias
from mes_production.models import ProductionOrder, ProductionStage, ProductionStatus, ShopOrderLine


def shop_order_lines(*, order_id: int) -> list[dict]:
    """The order's lines as production needs them (the legacy MES request's shape), in line order."""
    rows = ShopOrderLine.objects.filter(order_id=order_id).order_by("line_id")
    return [{"sku": r.sku, "quantity": r.quantity, "options": list(r.options)} for r in rows]


def production_next_due(*, stage_seconds: float) -> datetime | None:
    """When the earliest unfinished production order is due to move on; None when none is open."""
    connection = connections[model_database_alias(ProductionOrder)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT min(last_at) FROM (SELECT (SELECT max(s.at) FROM {ProductionStage._meta.db_table} s "
            f"WHERE s.production_order_id = o.id) AS last_at FROM {ProductionOrder._meta.db_table} o "
            "WHERE o.status <> %s) AS open_orders",
            [ProductionStatus.DONE.value],
        )
        (last_at,) = cursor.fetchone()
    return None if last_at is None else last_at + timedelta(seconds=stage_seconds)
