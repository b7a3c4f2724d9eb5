"""What `migrate_data plan` shows: each slice of the plan as the toolkit would move it, or the
sentence saying why it refuses to."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings

from migrations.raw_connections import slice_connections
from migrations.slices import Slice, SliceRefused, plan_current, slice_get, slice_tables
from migrations.table_stats import rows_estimate


@dataclass(frozen=True)
class TablePlan:
    name: str
    key: str
    columns: int
    rows_source: int  # estimated (pg_class.reltuples) for large tables, counted for small ones
    rows_target: int
    sequence: str | None  # the target's sequence behind the key
    source_sequence: str | None


@dataclass
class SlicePlan:
    name: str
    service: str
    source_database: str = ""  # logical (legacy) and actual database name
    target_database: str = ""
    tables: list[TablePlan] = field(default_factory=list)
    refused: str | None = None  # why the toolkit will not move this slice
    no_tables: bool = False  # routes only: nothing to move


def _database_label(slice_: Slice, *, target: bool) -> str:
    alias = slice_.target_alias if target else slice_.source_alias
    logical = slice_.target_database if target else slice_.source_database
    return f"{logical} ({settings.DATABASES[alias]['NAME']})"


def slice_plans(*, name: str | None = None) -> list[SlicePlan]:
    """Every slice of the plan (or the one named), its tables in foreign-key order with their
    row counts, or its refusal."""
    plan = plan_current()
    if name is not None:
        slice_get(name, plan)  # an unknown name is refused with the plan's names
    plans = []
    for spec in plan.slices:
        if name is not None and spec.name != name:
            continue
        result = SlicePlan(name=spec.name, service=spec.service)
        plans.append(result)
        if not spec.tables:
            result.no_tables = True
            continue
        try:
            slice_ = slice_get(spec.name, plan)
            result.source_database = _database_label(slice_, target=False)
            result.target_database = _database_label(slice_, target=True)
            result.tables = _tables(slice_)
        except SliceRefused as exc:
            result.refused = str(exc)
    return plans


def _tables(slice_: Slice) -> list[TablePlan]:
    shapes = slice_tables(slice_)
    with (
        slice_connections(slice_, application_name="migrate_data plan") as (source, target),
        source.cursor() as source_cursor,
        target.cursor() as target_cursor,
    ):
        return [
            TablePlan(
                name=shape.name,
                key=shape.key,
                columns=len(shape.columns),
                rows_source=rows_estimate(source_cursor, shape.name),
                rows_target=rows_estimate(target_cursor, shape.name),
                sequence=shape.sequence,
                source_sequence=shape.source_sequence,
            )
            for shape in shapes
        ]
