"""The one edge module that turns Debezium change envelopes of the legacy tables into domain events.

Nothing past this module sees a Debezium envelope. Mapping (payloads in cdc/schemas/):

- shop_customer: insert -> shop.customer.registered.v1, update of email/name/company ->
  shop.customer.updated.v1, delete -> shop.customer.deleted.v1 (the API token never leaves).
- shop_order: insert -> shop.order.created.v1 (header values), a changed production_stage ->
  shop.order.production_stage_changed.v1, delete -> shop.order.deleted.v1. Status changes are
  announced from the status history (below), which says who and when.
- shop_order_line: insert/update/delete -> shop.order_line.added/changed/removed.v1 with the
  product's sku, subject = the order, so a consumer can build a production order from events alone.
- shop_order_status_history: each inserted row announces the status it records: placed, confirmed,
  cancelled, in_production (production_started), done (production_completed). The legacy shop writes
  the order, its lines, then the "placed" row in one transaction, so an order's line events always
  come before its placed event, and all of them before its confirmed event.

Any other change (bookkeeping columns such as updated_at or sent_to_mes_at, history edits) yields
no event. Unknown columns are ignored, so added columns do not break the stream.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from cdc import contract
from cdc.events import cloud_event, stable_event_id, time_from_micros

Row = dict[str, Any]

# The status history's statuses and the event each one announces.
STATUS_EVENTS = {
    "placed": contract.ORDER_PLACED,
    "confirmed": contract.ORDER_CONFIRMED,
    "cancelled": contract.ORDER_CANCELLED,
    "in_production": contract.ORDER_PRODUCTION_STARTED,
    "done": contract.ORDER_PRODUCTION_COMPLETED,
}
CAPTURED_TABLES = ("shop_customer", "shop_order", "shop_order_line", "shop_order_status_history")
CUSTOMER_FIELDS = ("email", "name", "company")
# Published with the captured tables only to move the slot forward (cdc/replication.py).
IGNORED_TABLES = frozenset({"cdc_heartbeat"})


class ProductCatalog(Protocol):
    """Gives the sku of a product id (order lines store only the id)."""

    def sku_of(self, product_id: int) -> str: ...


class UntranslatableChange(ValueError):
    """A change of a captured table that the translation cannot read (a bug or an unknown shape)."""


@dataclass(frozen=True)
class Change:
    """One row change, read out of a Debezium envelope."""

    table: str
    op: str  # c (insert), u (update), d (delete), r (snapshot read)
    before: Row | None
    after: Row | None
    lsn: int | None
    tx_id: int | None
    committed_at_us: int

    @property
    def row(self) -> Row:
        row = self.after if self.after is not None else self.before
        if row is None:
            raise UntranslatableChange(f"{self.table} change without row values")
        return row

    def position(self) -> str:
        return f"{self.lsn}/{self.tx_id}"


@dataclass(frozen=True)
class DomainEvent:
    """What a translator decided: the type, subject and data of one event."""

    event_type: str
    subject: str
    data: dict[str, Any]


def change_from_envelope(value: str | bytes | dict[str, Any]) -> Change | None:
    """Reads a Debezium JSON envelope (schemas off); None for records that are not row changes
    (heartbeats, transaction markers, tombstones)."""
    envelope = json.loads(value) if isinstance(value, str | bytes) else value
    if not isinstance(envelope, dict) or "op" not in envelope:
        return None
    source = envelope.get("source") or {}
    micros = source.get("ts_us") or (source.get("ts_ms") or envelope.get("ts_ms") or 0) * 1000
    return Change(
        table=source.get("table", ""),
        op=envelope["op"],
        before=envelope.get("before"),
        after=envelope.get("after"),
        lsn=source.get("lsn"),
        tx_id=source.get("txId"),
        committed_at_us=int(micros),
    )


def _json_list(value: Any) -> list[Any]:
    # Debezium sends json/jsonb columns as a JSON string.
    parsed = json.loads(value) if isinstance(value, str) else value
    return list(parsed or [])


def _customer(change: Change, catalog: ProductCatalog) -> list[DomainEvent]:
    row = change.row
    subject = contract.subject_of("customer", row["id"])
    if change.op == "d":
        return [DomainEvent(contract.CUSTOMER_DELETED, subject, {"customer_id": row["id"]})]
    values = {"customer_id": row["id"], **{f: row.get(f) or "" for f in CUSTOMER_FIELDS}}
    if change.op in ("c", "r"):
        return [
            DomainEvent(contract.CUSTOMER_REGISTERED, subject, {**values, "created_at": row["created_at"]})
        ]
    before = change.before or {}
    changed = [f for f in CUSTOMER_FIELDS if before.get(f) != row.get(f)]
    if not before or not changed:
        return []
    return [DomainEvent(contract.CUSTOMER_UPDATED, subject, {**values, "changed": changed})]


def _order(change: Change, catalog: ProductCatalog) -> list[DomainEvent]:
    row = change.row
    subject = contract.subject_of("order", row["id"])
    if change.op == "d":
        return [DomainEvent(contract.ORDER_DELETED, subject, {"order_id": row["id"]})]
    if change.op in ("c", "r"):
        data = {
            "order_id": row["id"],
            "public_id": row["public_id"],
            "customer_id": row["customer_id"],
            "status": row["status"],
            "total": row["total"],
            "currency": row["currency"],
            "created_at": row["created_at"],
        }
        return [DomainEvent(contract.ORDER_CREATED, subject, data)]
    before = change.before or {}
    stage, previous = row.get("production_stage") or "", before.get("production_stage") or ""
    if before and stage != previous:
        data = {"order_id": row["id"], "stage": stage, "previous_stage": previous}
        return [DomainEvent(contract.ORDER_PRODUCTION_STAGE_CHANGED, subject, data)]
    return []


def _order_line(change: Change, catalog: ProductCatalog) -> list[DomainEvent]:
    row = change.row
    subject = contract.subject_of("order", row["order_id"])
    if change.op == "d":
        return [
            DomainEvent(
                contract.ORDER_LINE_REMOVED, subject, {"order_id": row["order_id"], "line_id": row["id"]}
            )
        ]
    data = {
        "order_id": row["order_id"],
        "line_id": row["id"],
        "product_id": row["product_id"],
        "sku": catalog.sku_of(row["product_id"]),
        "quantity": row["quantity"],
        "options": [str(option) for option in _json_list(row.get("options"))],
        "unit_price": row["unit_price"],
        "line_total": row["line_total"],
    }
    event_type = contract.ORDER_LINE_CHANGED if change.op == "u" else contract.ORDER_LINE_ADDED
    return [DomainEvent(event_type, subject, data)]


def _status_history(change: Change, catalog: ProductCatalog) -> list[DomainEvent]:
    if change.op not in ("c", "r"):
        return []  # the history is append-only; edits of old rows announce nothing
    row = change.row
    event_type = STATUS_EVENTS.get(row["status"])
    if event_type is None:
        raise UntranslatableChange(f"status history row {row['id']} has unknown status {row['status']!r}")
    data = {
        "order_id": row["order_id"],
        "at": row["at"],
        "actor": row.get("actor") or "",
        "note": row.get("note") or "",
    }
    return [DomainEvent(event_type, contract.subject_of("order", row["order_id"]), data)]


TRANSLATORS: dict[str, Callable[[Change, ProductCatalog], list[DomainEvent]]] = {
    "shop_customer": _customer,
    "shop_order": _order,
    "shop_order_line": _order_line,
    "shop_order_status_history": _status_history,
}


def change_translate(*, change: Change, catalog: ProductCatalog, source: str) -> list[dict[str, Any]]:
    """The CloudEvents one row change announces (often one, sometimes none)."""
    if change.table in IGNORED_TABLES:
        return []
    translator = TRANSLATORS.get(change.table)
    if translator is None:
        raise UntranslatableChange(f"table {change.table!r} is captured but has no translation")
    events = []
    for domain_event in translator(change, catalog):
        key = change.row.get("id")
        event_id = stable_event_id(change.position(), change.table, key, change.op, domain_event.event_type)
        events.append(
            cloud_event(
                event_id=event_id,
                event_type=domain_event.event_type,
                source=source,
                subject=domain_event.subject,
                time=time_from_micros(change.committed_at_us),
                data=domain_event.data,
            )
        )
    return events


def envelopes_translate(
    *, values: Iterable[str | bytes | dict[str, Any]], catalog: ProductCatalog, source: str
) -> list[dict[str, Any]]:
    """Events of a batch of envelopes, in the batch's order."""
    events: list[dict[str, Any]] = []
    for value in values:
        if value is None:
            continue
        change = change_from_envelope(value)
        if change is not None:
            events.extend(change_translate(change=change, catalog=catalog, source=source))
    return events
