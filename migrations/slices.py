"""The slices of the migration plan as the data toolkit sees them: which tables move from which
database to which, and each table's shape read from PostgreSQL's catalogue on both sides.

The plan says `service:` and `tables:` per slice; config/processes.py says which database each
service (and the legacy backend) owns. Nothing here knows what the tables mean.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.db import connections

from cdc.replication import CaptureTarget
from config.processes import PROCESSES
from config.routers import database_alias
from strangler.plan import Plan, plan_load_file


class SliceRefused(Exception):
    """A slice the toolkit cannot move: unknown, without tables, or whose two sides do not match."""


@dataclass(frozen=True)
class TableShape:
    """One table of a slice, as both databases have it."""

    name: str
    key: str  # the single-column primary key, used for keyset paging and drill-down
    columns: tuple[str, ...]  # the columns both sides have, in the target's order
    json_columns: frozenset[str]  # json/jsonb columns (the change stream sends them as text)
    sequence: str | None  # the target's sequence behind `key`, if any
    source_sequence: str | None  # the source's sequence behind `key`, if any


@dataclass(frozen=True)
class Slice:
    name: str
    service: str
    source_database: str  # logical names (legacy, shop, ...)
    target_database: str
    table_names: tuple[str, ...]  # as the plan lists them

    @property
    def source_alias(self) -> str:
        return database_alias(self.source_database)

    @property
    def target_alias(self) -> str:
        return database_alias(self.target_database)

    @property
    def slot_prefix(self) -> str:
        """Base of this slice's slot and publication names (lower-case identifier). Slots are
        server-wide, so the name carries a digest of the source database's name: two checkouts (or
        a test run beside the demo) on one server never share a slot."""
        database = str(settings.DATABASES[self.source_alias]["NAME"])
        digest = hashlib.sha1(database.encode()).hexdigest()[:6]
        return f"mig_{self.name.replace('-', '_').lower()[:40]}_{digest}"

    def stream_target(self, direction: str) -> CaptureTarget:
        """What a stream captures: forward reads the source (slot `mig_<slice>_fwd`), reverse the
        new database (`mig_<slice>_rev`); both publish the slice's tables (old values kept, so an
        update applies only the columns it changed) plus the marker and position tables."""
        from migrations.state import MARKER_TABLE, POSITION_TABLE

        if direction not in ("forward", "reverse"):
            raise ValueError(f"direction {direction!r} is neither forward nor reverse")
        name = f"{self.slot_prefix}_{'fwd' if direction == 'forward' else 'rev'}"
        return CaptureTarget(
            database_alias=self.source_alias if direction == "forward" else self.target_alias,
            tables=(*self.table_names, MARKER_TABLE, POSITION_TABLE),
            slot_name=name,
            publication_name=name,
            replica_identity_full=self.table_names,
        )

    def applies_to_alias(self, direction: str) -> str:
        """The database a stream writes to."""
        return self.target_alias if direction == "forward" else self.source_alias


def _backend_database(backend: str, *, slice_name: str) -> str:
    process = PROCESSES.get(backend)
    if process is None:
        raise SliceRefused(
            f"Slice {slice_name!r}: backend {backend!r} is not a process of this codebase "
            f"({', '.join(PROCESSES)}), so its database is unknown."
        )
    return process.database


def plan_current() -> Plan:
    return plan_load_file(settings.STRANGLER_PLAN_FILE)


def slices_all(plan: Plan | None = None) -> list[Slice]:
    """Every slice of the plan that has tables, in plan order."""
    plan = plan or plan_current()
    return [
        Slice(
            name=spec.name,
            service=spec.service,
            source_database=_backend_database(spec.legacy, slice_name=spec.name),
            target_database=_backend_database(spec.service, slice_name=spec.name),
            table_names=tuple(spec.tables),
        )
        for spec in plan.slices
        if spec.tables
    ]


def slice_get(name: str, plan: Plan | None = None) -> Slice:
    plan = plan or plan_current()
    names = [spec.name for spec in plan.slices]
    if name not in names:
        raise SliceRefused(f"No slice {name!r} in the plan; the plan has {', '.join(names)}.")
    for slice_ in slices_all(plan):
        if slice_.name == name:
            return slice_
    raise SliceRefused(f"Slice {name!r} lists no tables in the plan, so it has no data to move.")


def _columns(alias: str, table: str) -> list[tuple[str, str]]:
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
            [table],
        )
        return [(name, data_type) for name, data_type in cursor.fetchall()]


def _primary_key(alias: str, table: str) -> list[str]:
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
            "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = %s::regclass AND i.indisprimary",
            [f'public."{table}"'],
        )
        return [row[0] for row in cursor.fetchall()]


def _sequence(alias: str, table: str, column: str) -> str | None:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [f'public."{table}"', column])
        return cursor.fetchone()[0]


def _references(alias: str, tables: tuple[str, ...]) -> dict[str, set[str]]:
    """For each table, the tables of the slice it has a foreign key to."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text FROM pg_constraint c "
            "WHERE c.contype = 'f' AND c.conrelid::regclass::text = ANY(%s)",
            [list(tables)],
        )
        found: dict[str, set[str]] = {table: set() for table in tables}
        for child, parent in cursor.fetchall():
            child, parent = child.strip('"'), parent.strip('"')
            if parent in found and parent != child:
                found[child].add(parent)
        return found


def _foreign_key_order(tables: tuple[str, ...], references: dict[str, set[str]]) -> list[str]:
    """Parents before children (plan order among equals), so every chunk's references exist."""
    ordered: list[str] = []
    remaining = list(tables)
    while remaining:
        ready = [t for t in remaining if references[t] <= set(ordered)]
        if not ready:  # a cycle: keep plan order (foreign keys are deferred to commit)
            ready = remaining[:1]
        ordered.extend(ready)
        remaining = [t for t in remaining if t not in ready]
    return ordered


def _shape(slice_: Slice, table: str) -> TableShape:
    source = _columns(slice_.source_alias, table)
    target = _columns(slice_.target_alias, table)
    where = f"Slice {slice_.name!r}, table {table}"
    if not source:
        raise SliceRefused(f"{where}: no such table in the {slice_.source_database} database.")
    if not target:
        raise SliceRefused(
            f"{where}: no such table in the {slice_.target_database} database; "
            f"run `manage.py db_setup` (the {slice_.service} service's migrations create it)."
        )
    source_types = dict(source)
    missing = [name for name, _ in target if name not in source_types]
    if missing:
        raise SliceRefused(
            f"{where}: the {slice_.target_database} side has columns the source lacks ({', '.join(missing)})."
        )
    differing = [
        f"{name} ({source_types[name]} -> {data_type})"
        for name, data_type in target
        if source_types[name] != data_type
    ]
    if differing:
        raise SliceRefused(f"{where}: columns of another type on each side: {', '.join(differing)}.")
    keys = _primary_key(slice_.target_alias, table)
    if len(keys) != 1 or _primary_key(slice_.source_alias, table) != keys:
        raise SliceRefused(
            f"{where}: the toolkit pages by a single-column primary key, the same on both sides "
            f"(source {_primary_key(slice_.source_alias, table)}, target {keys})."
        )
    return TableShape(
        name=table,
        key=keys[0],
        columns=tuple(name for name, _ in target),
        json_columns=frozenset(name for name, data_type in target if data_type in ("json", "jsonb")),
        sequence=_sequence(slice_.target_alias, table, keys[0]),
        source_sequence=_sequence(slice_.source_alias, table, keys[0]),
    )


def slice_tables(slice_: Slice) -> list[TableShape]:
    """The slice's tables in foreign-key order with their shapes; raises SliceRefused with the
    first mismatch between the two sides (a column missing or of another type, no primary key)."""
    return _slice_tables_cached(slice_)


@cache
def _slice_tables_cached(slice_: Slice) -> list[TableShape]:
    order = _foreign_key_order(slice_.table_names, _references(slice_.target_alias, slice_.table_names))
    return [_shape(slice_, table) for table in order]


def slice_tables_forget() -> None:
    """Reads the catalogue again next time (after a schema change)."""
    _slice_tables_cached.cache_clear()
