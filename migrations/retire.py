"""Retiring a live slice: after its soak time and a clean full verification, the slice is promoted to
retired, its streams' slots are dropped (reverse sync stops; the forward stream has nothing left to
follow) and its legacy tables are moved to the `migration_archive` schema under a dated name.

Each step is safe to repeat: a retire that stopped half-way (a dropped connection) is finished by
running it again on the retired slice.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connections, transaction
from django.utils import timezone

from cdc.replication import capture_teardown
from migrations.cutover import CutoverResult, Report, guarded_run
from migrations.models import CutoverRun, RunKind, RunOutcome
from migrations.slices import Slice
from migrations.steps import StepRefused
from migrations.verify import verify_slice
from strangler import services
from strangler.models import Phase
from strangler.models import Slice as ControlSlice

ARCHIVE_SCHEMA = "migration_archive"


@dataclass(frozen=True)
class TableArchive:
    table: str
    archived_as: str

    def statements(self) -> list[str]:
        return [
            f'ALTER TABLE public."{self.table}" RENAME TO "{self.archived_as}"',
            f'ALTER TABLE public."{self.archived_as}" SET SCHEMA {ARCHIVE_SCHEMA}',
        ]


def archives_planned(slice_: Slice, stamp: str) -> list[TableArchive]:
    """The slice's legacy tables still in `public`, each with its archive name (at most 63 bytes)."""
    with connections[slice_.source_alias].cursor() as cursor:
        cursor.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY(%s)",
            [list(slice_.table_names)],
        )
        present = {row[0] for row in cursor.fetchall()}
    names = archives_names([t for t in slice_.table_names if t in present], stamp)
    return [TableArchive(table, archived_as) for table, archived_as in names.items()]


def archives_names(tables: list[str], stamp: str) -> dict[str, str]:
    """Each table's name in the archive: its own, shortened to fit PostgreSQL's 63 bytes, and the stamp."""
    return {table: f"{table[: 63 - len(stamp) - 1]}_{stamp}" for table in tables}


def archives_apply(slice_: Slice, archives: list[TableArchive]) -> None:
    """One transaction: every table moves, or none."""
    alias = slice_.source_alias
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {ARCHIVE_SCHEMA}")
        for archive in archives:
            for statement in archive.statements():
                cursor.execute(statement)


def _verify_full(slice_: Slice) -> tuple[bool, str, int]:
    report = verify_slice(slice_, changed_only=False, report_progress=True)
    found = [d.describe() for d in report.differences[:5]]
    if report.stray_writes:
        found.insert(0, f"{len(report.stray_writes)} stray write(s)")
    return report.clean, "; ".join(found), report.rows_checked


def retire_run(
    slice_name: str,
    *,
    who: str,
    confirm: str,
    force: bool = False,
    why: str = "",
    dry_run: bool = False,
    report: Report = print,
) -> CutoverResult:
    """live -> retired, then the slots dropped and the legacy tables archived (see the module)."""
    if confirm != slice_name:
        raise StepRefused(
            f"Retiring {slice_name!r} stops its reverse sync and archives its legacy tables, after which it "
            f"cannot be rolled back: repeat its name to confirm (--confirm {slice_name})."
        )

    def body(
        slice_: Slice, control: ControlSlice, result: CutoverResult, run: CutoverRun | None
    ) -> CutoverResult:
        verb = "would " if dry_run else ""
        if control.phase == Phase.RETIRED:
            report(f"{slice_name} is retired already; finishing what is left of its retirement")
        elif control.phase != Phase.LIVE:
            raise StepRefused(
                f"Slice {slice_name!r} is in phase {control.phase}; only a live slice is retired "
                f"(`migrate_data cutover --slice {slice_name}` first)."
            )
        else:
            # The soak gate (strangler's live -> retired gate) first, changing nothing: it says what to do.
            services.slice_promote(name=slice_name, who=who, why=why, force=force, dry_run=True)
            clean, differences, rows = _verify_full(slice_)
            if not clean:
                raise StepRefused(
                    f"The full verification of {slice_name!r} is not clean ({differences}): repair and "
                    f"verify again (`migrate_data verify --slice {slice_name}`) before retiring."
                )
            report(f"full verification clean: {rows} rows equal on both sides")
            if not dry_run:
                services.slice_promote(
                    name=slice_name, who=who, why=why or f"retire run {result.run_id}", force=force
                )
            result.actions.append(f"{verb}promote {slice_name} to retired (routes stay on {slice_.service})")
        for direction in ("reverse", "forward"):
            result.actions += capture_teardown(slice_.stream_target(direction), dry_run=dry_run)
        archives = archives_planned(slice_, timezone.now().strftime("%Y%m%d%H%M%S"))
        if archives:
            statements = [f"CREATE SCHEMA IF NOT EXISTS {ARCHIVE_SCHEMA}"]
            statements += [s for archive in archives for s in archive.statements()]
            if not dry_run:
                archives_apply(slice_, archives)
            result.actions.append(f"in {slice_.source_database}, one transaction:")
            result.actions += [f"  {statement};" for statement in statements]
        else:
            result.actions.append(f"no legacy table of {slice_name} is left in public: nothing to archive")
        result.to_phase = Phase.RETIRED
        result.outcome = RunOutcome.DRY_RUN if dry_run else RunOutcome.COMPLETED
        return result

    return guarded_run(
        slice_name=slice_name,
        kind=RunKind.RETIRE,
        who=who,
        dry_run=dry_run,
        max_freeze_ms=None,
        report=report,
        body=body,
    )
