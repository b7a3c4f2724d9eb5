"""The versioned JSON schema of every event type (cdc/schemas/<type>.json) and the check that a
publisher runs on each event before it sends anything."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
ENVELOPE_SCHEMA = "_cloudevent.json"


class EventSchemaError(ValueError):
    """An event that does not match its type's schema, or whose type has no schema."""


def schema_dirs() -> list[Path]:
    """cdc/schemas, then any directory of settings.CDC_EXTRA_SCHEMA_DIRS (services' own types)."""
    from django.conf import settings

    return [SCHEMA_DIR, *(Path(d) for d in getattr(settings, "CDC_EXTRA_SCHEMA_DIRS", []))]


def _schema_file(file_name: str) -> Path | None:
    return next((d / file_name for d in schema_dirs() if (d / file_name).is_file()), None)


@cache
def _validator(file_name: str) -> Draft202012Validator:
    path = _schema_file(file_name)
    assert path is not None, file_name
    schema = json.loads(path.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def known_event_types() -> list[str]:
    return sorted({p.stem for d in schema_dirs() for p in d.glob("*.json") if not p.name.startswith("_")})


def _first_error(validator: Draft202012Validator, instance: Any) -> str | None:
    error = best_match(validator.iter_errors(instance))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path) or "(root)"
    return f"{where}: {error.message}"


def event_validate(event: Mapping[str, Any]) -> None:
    """Raises EventSchemaError unless the event is a valid CloudEvent whose data matches the
    schema of its type."""
    problem = _first_error(_validator(ENVELOPE_SCHEMA), event)
    if problem:
        raise EventSchemaError(f"event {event.get('id')!r} is not a valid CloudEvent: {problem}")
    event_type = event["type"]
    if _schema_file(f"{event_type}.json") is None:
        raise EventSchemaError(
            f"event type {event_type!r} has no schema; add cdc/schemas/{event_type}.json before publishing it"
        )
    problem = _first_error(_validator(f"{event_type}.json"), event["data"])
    if problem:
        raise EventSchemaError(
            f"event {event['id']!r} of type {event_type!r} does not match its schema: {problem}"
        )
