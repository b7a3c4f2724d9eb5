"""The legacy capture as a later release could register it: the status history also announces
"on_hold" (as test.order.on_hold.v1, schema in tests/schemas). The dead-letter test names it in
CDC_CAPTURES to replay a change the running engine could not translate."""

from __future__ import annotations

import dataclasses

from cdc.captures import Capture
from cdc.contract import subject_of
from cdc.row_changes import RowChange
from cdc.translation import DomainEvent
from legacy.shop import change_events

ON_HOLD = "test.order.on_hold.v1"


def capture() -> Capture:
    legacy = change_events.capture()
    status_history = legacy.translators["shop_order_status_history"]

    def status_history_with_on_hold(change: RowChange) -> list[DomainEvent]:
        row = change.row
        if change.op == "c" and row["status"] == "on_hold":
            data = {"order_id": row["order_id"], "note": row.get("note") or ""}
            return [DomainEvent(ON_HOLD, subject_of("order", row["order_id"]), data)]
        return status_history(change)

    translators = {**legacy.translators, "shop_order_status_history": status_history_with_on_hold}
    return dataclasses.replace(legacy, translators=translators)
