"""The edge of the outbox relay: a record of Debezium's outbox event router (key = aggregateid,
value = payload, headers id/type/aggregatetype/traceparent) becomes a CloudEvent (cdc/contract.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from cdc.cloudevents import cloud_event, iso_time
from cdc.contract import subject_of
from cdc.records import CapturedRecord


class UnreadableOutboxRecord(ValueError):
    """An outbox record without the columns the contract names."""


def _committed_at(record: CapturedRecord) -> str:
    if record.timestamp_ms is None:
        return iso_time(datetime.now(UTC))  # the relay time is the fallback when the record has none
    return iso_time(datetime.fromtimestamp(record.timestamp_ms / 1000, UTC))


def outbox_record_translate(record: CapturedRecord, *, source: str) -> list[dict[str, Any]]:
    """The CloudEvent of one outbox row; none for records that are not outbox rows (heartbeats)."""
    headers = record.headers
    if "id" not in headers:
        return []
    missing = [name for name in ("id", "type", "aggregatetype") if not headers.get(name)]
    if missing or record.key is None:
        raise UnreadableOutboxRecord(f"outbox record lacks {', '.join(missing) or 'aggregateid'}")
    aggregate_id = json.loads(record.key)
    data = json.loads(record.value) if record.value else {}
    if isinstance(data, str):  # payload stored as a JSON string rather than an object
        data = json.loads(data)
    return [
        cloud_event(
            event_id=str(headers["id"]),
            event_type=str(headers["type"]),
            source=source,
            subject=subject_of(str(headers["aggregatetype"]), aggregate_id),
            time=_committed_at(record),
            data=data,
            traceparent=headers.get("traceparent") or None,
        )
    ]
