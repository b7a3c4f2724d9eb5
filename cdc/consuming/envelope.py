"""The edge between the wire and the handlers: a CloudEvents 1.0 JSON message becomes a checked
`CloudEvent`, and its `data` becomes the handler's payload dataclass. Anything that does not fit
raises `MalformedEvent` with a reason code that ends up on the dead-letter queue.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# `<domain>.<entity>.<happened>.v<N>`: the version suffix is part of the contract.
EVENT_TYPE_PATTERN = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+\.v[0-9]+$")


class MalformedEvent(Exception):
    """A message no handler can take; `reason` is one of the codes below."""

    NOT_JSON = "not_json"
    NOT_CLOUDEVENT = "not_cloudevent"
    UNKNOWN_TYPE = "unknown_type"
    SCHEMA_MISMATCH = "schema_mismatch"
    REASONS = (NOT_JSON, NOT_CLOUDEVENT, UNKNOWN_TYPE, SCHEMA_MISMATCH)

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class CloudEvent:
    """The envelope of one event, transport details removed."""

    id: str
    source: str
    type: str
    subject: str
    time: datetime | None
    traceparent: str
    data: Mapping[str, Any]


def event_name(event_type: str) -> str:
    """`sales.invoice.paid.v1` -> `sales.invoice.paid`."""
    if not EVENT_TYPE_PATTERN.match(event_type):
        raise ValueError(f"event type {event_type!r} does not read <domain>.<entity>.<happened>.v<N>")
    return event_type.rsplit(".", 1)[0]


def cloudevent_parse(body: bytes) -> CloudEvent:
    """Checks a structured-mode CloudEvents 1.0 JSON message and returns its envelope."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedEvent(MalformedEvent.NOT_JSON, f"body is not JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise MalformedEvent(MalformedEvent.NOT_CLOUDEVENT, "body is JSON but not an object")
    if document.get("specversion") != "1.0":
        raise MalformedEvent(
            MalformedEvent.NOT_CLOUDEVENT, f"specversion is {document.get('specversion')!r}, not '1.0'"
        )
    for attribute in ("id", "source", "type"):
        if not isinstance(document.get(attribute), str) or not document[attribute]:
            raise MalformedEvent(
                MalformedEvent.NOT_CLOUDEVENT, f"attribute {attribute!r} is missing or empty"
            )
    content_type = document.get("datacontenttype", "application/json")
    if content_type != "application/json":
        raise MalformedEvent(
            MalformedEvent.NOT_CLOUDEVENT, f"datacontenttype {content_type!r} is not application/json"
        )
    data = document.get("data", {})
    if not isinstance(data, dict):
        raise MalformedEvent(MalformedEvent.SCHEMA_MISMATCH, "data is not a JSON object")
    time = None
    if document.get("time") is not None:
        try:
            time = datetime.fromisoformat(str(document["time"]).replace("Z", "+00:00"))
        except ValueError as exc:
            raise MalformedEvent(
                MalformedEvent.NOT_CLOUDEVENT, f"time {document['time']!r} is not RFC 3339"
            ) from exc
    return CloudEvent(
        id=document["id"],
        source=document["source"],
        type=document["type"],
        subject=str(document.get("subject") or ""),
        time=time,
        traceparent=str(document.get("traceparent") or ""),
        data=data,
    )


def _fits(value: Any, annotation: Any) -> bool:
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, option) for option in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        return isinstance(value, list) and all(_fits(element, item) for element in value)
    if origin is dict:
        return isinstance(value, dict)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def payload_build(payload_type: type[Any], data: Mapping[str, Any]) -> Any:
    """Builds the handler's frozen dataclass from `data`, checking presence and plain types.

    Fields the dataclass does not declare are ignored, so producers may add fields to a version.
    """
    hints = typing.get_type_hints(payload_type)
    values = {}
    for field in dataclasses.fields(payload_type):
        if field.name not in data:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise MalformedEvent(MalformedEvent.SCHEMA_MISMATCH, f"data has no {field.name!r}")
            continue
        value = data[field.name]
        if not _fits(value, hints[field.name]):
            raise MalformedEvent(
                MalformedEvent.SCHEMA_MISMATCH,
                f"data.{field.name} = {value!r} is not {hints[field.name]}",
            )
        values[field.name] = value
    return payload_type(**values)
