"""What an engine captures, found through settings: a system registers its captures in
settings.CDC_CAPTURES ({name: "module:factory"}), each factory returning a `Capture` (which tables
of which database, the translator of each table, the events' source). The toolkit builds the
engine's configuration and its record translation from that spec; the outbox relay (rows of one
outbox table, relayed as they are) needs no registration.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from cdc.engine import EngineConfig
from cdc.outbox_relay import outbox_record_translate
from cdc.records import CapturedRecord, RecordTranslate
from cdc.replication import CaptureTarget
from cdc.row_changes import row_change_from_envelope
from cdc.translation import Translator, row_change_translate
from config.routers import database_alias

OUTBOX_PREFIX = "outbox"
SLOT_NAME_MAX = 63  # PostgreSQL's identifier limit


def default_slot_name(base: str, *, database: str) -> str:
    """`<DB_NAME_PREFIX><base>` for the logical database `database`. Slots belong to the server and
    databases do not: a copy of the database under another name (a test run's `test_legacy` beside
    the developer's `legacy`) gets a suffix from its name, so that two copies never fight over one
    slot; the usual database keeps the plain name. Names past PostgreSQL's limit are shortened with
    a hash of the whole."""
    slot = f"{settings.DB_NAME_PREFIX}{base}".lower()
    actual = str(settings.DATABASES[database_alias(database)]["NAME"])
    if actual != f"{settings.DB_NAME_PREFIX}{database}":
        slot = f"{slot}_{hashlib.sha1(actual.encode()).hexdigest()[:6]}"
    if len(slot) > SLOT_NAME_MAX:
        slot = f"{slot[: SLOT_NAME_MAX - 9]}_{hashlib.sha1(slot.encode()).hexdigest()[:8]}"
    return slot


class UnknownCapture(LookupError):
    """No capture of that name is registered in settings.CDC_CAPTURES."""


@dataclass(frozen=True)
class Capture:
    """A system's registration of one capture: the toolkit runs it, the system owns its meaning."""

    name: str
    # Logical database (a key of settings.DATABASE_NAMES) holding the tables.
    database: str
    tables: tuple[str, ...]
    # table -> its translator; a captured table without one is an untranslatable change.
    translators: Mapping[str, Translator]
    # CloudEvents `source` of the events, e.g. "/<system>/<part>".
    source: str
    # Tables whose old row values the translators compare on update/delete.
    replica_identity_full: tuple[str, ...] = ()
    # Debezium's snapshot.mode for this capture ("initial": announce every existing row on the
    # first start, before streaming); empty: settings.CDC_SNAPSHOT_MODE.
    snapshot_mode: str = ""


def capture_names() -> list[str]:
    return sorted(settings.CDC_CAPTURES)


def capture_load(name: str) -> Capture:
    """The capture registered as `name` (imports its factory and calls it)."""
    spec = settings.CDC_CAPTURES.get(name)
    if spec is None:
        registered = ", ".join(capture_names()) or "none"
        raise UnknownCapture(f"no capture named {name!r} in CDC_CAPTURES (registered: {registered})")
    module_name, _, factory_name = spec.partition(":")
    factory = getattr(importlib.import_module(module_name), factory_name or "capture")
    capture = factory()
    if not isinstance(capture, Capture):
        raise TypeError(f"{spec} returned {type(capture).__name__}, not a cdc.captures.Capture")
    return capture


def capture_engine_config(capture: Capture) -> EngineConfig:
    """The engine of a registered capture; slot, publication, offset table and topic prefix come
    from the CDC_* settings when set, else are named after the capture."""
    slot = settings.CDC_SLOT_NAME or default_slot_name(f"cdc_{capture.name}", database=capture.database)
    return EngineConfig(
        name=capture.name,
        target=CaptureTarget(
            database_alias=database_alias(capture.database),
            tables=capture.tables,
            slot_name=slot,
            publication_name=settings.CDC_PUBLICATION_NAME or slot,
            replica_identity_full=capture.replica_identity_full,
        ),
        offset_table=settings.CDC_OFFSET_TABLE or f"cdc_offsets_{capture.name}",
        topic_prefix=settings.CDC_TOPIC_PREFIX or capture.name,
        extra_properties=(("snapshot.mode", capture.snapshot_mode),) if capture.snapshot_mode else (),
    )


def capture_translate(capture: Capture) -> RecordTranslate:
    """Translation of one record of a registered capture: envelope -> RowChange -> events."""

    def translate(record: CapturedRecord) -> list[dict[str, Any]]:
        if record.value is None:
            return []  # a tombstone
        change = row_change_from_envelope(record.value)
        if change is None:
            return []
        return row_change_translate(change=change, translators=capture.translators, source=capture.source)

    return translate


def outbox_capture_name(*, database: str, table: str) -> str:
    """The name an outbox relay's engine, metrics and dead letters carry."""
    return f"{OUTBOX_PREFIX}:{database}:{table}"


def outbox_engine_config(*, database: str, table: str) -> EngineConfig:
    """An outbox relay on `table` of the logical database `database` (a key of DATABASE_NAMES);
    its slot, publication, offset table and topic prefix are named after both."""
    if database not in settings.DATABASE_NAMES:
        raise ValueError(f"database {database!r} is not one of {', '.join(settings.DATABASE_NAMES)}")
    suffix = f"{database}_{table}"
    slot = settings.CDC_OUTBOX_SLOT_NAME or default_slot_name(f"cdc_outbox_{suffix}", database=database)
    return EngineConfig(
        name=f"outbox-{suffix}",
        target=CaptureTarget(
            database_alias=database_alias(database),
            tables=(table,),
            slot_name=slot,
            publication_name=settings.CDC_OUTBOX_PUBLICATION_NAME or slot,
        ),
        # Named after the slot: offsets are positions in that slot's history and nobody else's.
        offset_table=f"cdc_offsets_{slot}",
        topic_prefix=f"outbox_{suffix}".lower(),
        outbox=True,
        capture=outbox_capture_name(database=database, table=table),
    )


def outbox_translate(*, database: str, table: str) -> RecordTranslate:
    source = f"/{database}/{table}"

    def translate(record: CapturedRecord) -> list[dict[str, Any]]:
        return outbox_record_translate(record, source=source)

    return translate


def record_translate_for(capture_name: str) -> RecordTranslate:
    """The translation of the capture a dead letter came from, with the code as it is now."""
    if capture_name.startswith(f"{OUTBOX_PREFIX}:"):
        _, database, table = capture_name.split(":", 2)
        return outbox_translate(database=database, table=table)
    return capture_translate(capture_load(capture_name))
