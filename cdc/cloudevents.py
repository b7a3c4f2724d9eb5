"""Building CloudEvents (see cdc/contract.py): stable ids from a change's position, trace context."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

from cdc.contract import DATA_CONTENT_TYPE, SPEC_VERSION


def stable_event_id(*parts: object) -> str:
    """A UUID-shaped id that is the same every time the same change is read again."""
    digest = hashlib.sha256("/".join(str(part) for part in parts).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))


def traceparent_for(event_id: str) -> str:
    """A W3C traceparent derived from the event id: a change read from the WAL has no caller's
    trace, and deriving it keeps a redelivered event in the same trace."""
    digest = hashlib.sha256(f"trace/{event_id}".encode()).hexdigest()
    return f"00-{digest[:32]}-{digest[32:48]}-01"


def iso_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def time_from_micros(micros: int) -> str:
    return iso_time(datetime.fromtimestamp(micros / 1_000_000, UTC))


def cloud_event(
    *,
    event_id: str,
    event_type: str,
    source: str,
    subject: str,
    time: str,
    data: dict[str, Any],
    traceparent: str | None = None,
) -> dict[str, Any]:
    return {
        "specversion": SPEC_VERSION,
        "id": event_id,
        "source": source,
        "type": event_type,
        "subject": subject,
        "time": time,
        "datacontenttype": DATA_CONTENT_TYPE,
        "traceparent": traceparent or traceparent_for(event_id),
        "data": data,
    }
