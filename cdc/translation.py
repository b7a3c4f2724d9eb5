"""Row changes into CloudEvents, through the translators a domain registers for its tables.

A translator (`Translator`) reads one `RowChange` of its table and decides which domain events it
announces (`DomainEvent`: type, subject, data); this module gives each one a stable id derived
from the change's position, so a change read again yields the same events. Which tables map to
which events is the domain's knowledge (registered as a capture, see cdc/captures.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cdc.cloudevents import cloud_event, stable_event_id, time_from_micros
from cdc.replication import HEARTBEAT_TABLE
from cdc.row_changes import RowChange, UntranslatableChange


@dataclass(frozen=True)
class DomainEvent:
    """What a translator decided: the type, subject and data of one event."""

    event_type: str
    subject: str
    data: dict[str, Any]


Translator = Callable[[RowChange], list[DomainEvent]]


def row_change_translate(
    *, change: RowChange, translators: Mapping[str, Translator], source: str
) -> list[dict[str, Any]]:
    """The CloudEvents one row change announces (often one, sometimes none).

    Raises UntranslatableChange for a table without a translator; a translator raises it (or any
    other error) for a change it cannot read."""
    if change.table == HEARTBEAT_TABLE:
        return []
    translator = translators.get(change.table)
    if translator is None:
        raise UntranslatableChange(f"table {change.table!r} is captured but has no translator")
    events = []
    for domain_event in translator(change):
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
