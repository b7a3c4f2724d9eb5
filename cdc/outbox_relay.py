"""The edge of the outbox relay: a record of Debezium's outbox event router (key = aggregateid,
value = payload, headers id/type/aggregatetype/traceparent) becomes a CloudEvent (cdc/contract.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from cdc.contract import subject_of
from cdc.events import cloud_event, iso_time


class UnreadableOutboxRecord(ValueError):
    """An outbox record without the columns the contract names."""


def _headers(record: Any) -> dict[str, Any]:
    headers = {}
    for header in record.headers():
        raw = header.getValue()
        headers[str(header.getKey())] = json.loads(str(raw)) if raw is not None else None
    return headers


def _committed_at(record: Any) -> str:
    try:
        millis = int(record.sourceRecord().timestamp())
    except Exception:  # noqa: BLE001 - the relay time is the fallback when the record has none
        return iso_time(datetime.now(UTC))
    return iso_time(datetime.fromtimestamp(millis / 1000, UTC))


def outbox_record_translate(
    *, key: str | None, value: str | None, headers: dict[str, Any], time: str, source: str
) -> dict[str, Any]:
    missing = [name for name in ("id", "type", "aggregatetype") if not headers.get(name)]
    if missing or key is None:
        raise UnreadableOutboxRecord(f"outbox record lacks {', '.join(missing) or 'aggregateid'}")
    aggregate_id = json.loads(key)
    data = json.loads(value) if value else {}
    if isinstance(data, str):  # payload stored as a JSON string rather than an object
        data = json.loads(data)
    return cloud_event(
        event_id=str(headers["id"]),
        event_type=str(headers["type"]),
        source=source,
        subject=subject_of(str(headers["aggregatetype"]), aggregate_id),
        time=time,
        data=data,
        traceparent=headers.get("traceparent") or None,
    )


def outbox_records_translate(records: Sequence[Any], *, source: str) -> list[dict[str, Any]]:
    events = []
    for record in records:
        value = record.value()
        headers = _headers(record)
        if "id" not in headers:
            continue  # heartbeats and other non-outbox records
        key = record.key()
        events.append(
            outbox_record_translate(
                key=None if key is None else str(key),
                value=None if value is None else str(value),
                headers=headers,
                time=_committed_at(record),
                source=source,
            )
        )
    return events
