"""The one edge module where Debezium change envelopes become `RowChange` objects.

Nothing past this module sees a Debezium envelope: translators (registered by the domain that owns
the tables, see cdc/captures.py) get a `RowChange` with plain before/after row values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

Row = dict[str, Any]


class UntranslatableChange(ValueError):
    """A change of a captured table that its translation cannot read (a bug or an unknown shape)."""


@dataclass(frozen=True)
class RowChange:
    """One row change of a captured table, read out of a Debezium envelope."""

    table: str
    op: str  # c (insert), u (update), d (delete), r (snapshot read)
    before: Row | None
    after: Row | None
    lsn: int | None  # the change's own WAL position
    tx_id: int | None
    committed_at_us: int
    # The LSN of the last commit the stream passed before this change's transaction (the first
    # element of Debezium's source.sequence): (commit_lsn, lsn) grows in stream order, so a
    # redelivered change is recognised by its position. None for the first transaction an engine
    # streams without stored offsets.
    commit_lsn: int | None = None

    @property
    def row(self) -> Row:
        row = self.after if self.after is not None else self.before
        if row is None:
            raise UntranslatableChange(f"{self.table} change without row values")
        return row

    def position(self) -> str:
        return f"{self.lsn}/{self.tx_id}"


def row_change_from_envelope(value: str | bytes | dict[str, Any]) -> RowChange | None:
    """Reads a Debezium JSON envelope (schemas off); None for records that are not row changes
    (heartbeats, transaction markers, tombstones, logical decoding messages: op "m")."""
    envelope = json.loads(value) if isinstance(value, str | bytes) else value
    if not isinstance(envelope, dict) or "op" not in envelope or envelope["op"] == "m":
        return None
    source = envelope.get("source") or {}
    micros = source.get("ts_us") or (source.get("ts_ms") or envelope.get("ts_ms") or 0) * 1000
    return RowChange(
        table=source.get("table", ""),
        op=envelope["op"],
        before=envelope.get("before"),
        after=envelope.get("after"),
        lsn=source.get("lsn"),
        tx_id=source.get("txId"),
        committed_at_us=int(micros),
        commit_lsn=_sequence_commit_lsn(source.get("sequence")),
    )


def _sequence_commit_lsn(sequence: Any) -> int | None:
    """`source.sequence` is a JSON text `["<last commit lsn>", "<lsn>"]` (either may be null)."""
    if not sequence:
        return None
    try:
        parsed = json.loads(sequence) if isinstance(sequence, str) else sequence
        return int(parsed[0]) if parsed and parsed[0] is not None else None
    except (ValueError, TypeError, IndexError) as exc:
        raise UntranslatableChange(f"source.sequence {sequence!r} is not [commit lsn, lsn]") from exc


def json_column(value: Any) -> list[Any]:
    """A json/jsonb column's list value: Debezium sends such columns as a JSON string."""
    parsed = json.loads(value) if isinstance(value, str) else value
    return list(parsed or [])
