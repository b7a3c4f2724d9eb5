"""`migrate_data backfill --slice X`: copy a slice's tables into its service's database."""

from __future__ import annotations

import argparse
from typing import Any

from migrations.backfill import BackfillOptions, BackfillReport, backfill_slice
from migrations.progress_display import table_progress
from migrations.slices import slice_get

HELP = "copy a slice's tables into its service's database (resumable, throttleable)"
DESCRIPTION = (
    "Copies the tables of one slice from the source database to its service's database by keyset-paged "
    "binary COPY, parents before children. First it creates the forward stream's replication slot, so "
    "that every change made during the copy reaches the target later through `migrate_data sync`. Each "
    "chunk commits with a checkpoint in the target: a run that was stopped or killed resumes where it "
    "was, and no row is copied twice. A target table that holds rows no checkpoint accounts for is "
    "refused (use --restart). At the end the stray-write triggers are installed on the target tables. "
    "Shows a progress bar per table on a terminal and prints rows, seconds and rows/s per table."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--slice", required=True, help="the slice to copy (see `migrate_data plan`)")
    parser.add_argument(
        "--chunk-rows",
        type=int,
        default=50_000,
        help="rows per COPY chunk and checkpoint (default: %(default)s)",
    )
    parser.add_argument(
        "--max-rows-per-second",
        type=float,
        default=None,
        metavar="N",
        help="throttle: copy at most N rows per second on average (default: no limit)",
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="empty the slice's target tables and checkpoints, then copy everything again",
    )
    parser.add_argument("--dry-run", action="store_true", help="print what would be done and change nothing")


def run(options: dict[str, Any], out: Any) -> None:
    slice_ = slice_get(options["slice"])
    request = BackfillOptions(
        chunk_rows=options["chunk_rows"],
        max_rows_per_second=options["max_rows_per_second"],
        restart=options["restart"],
        dry_run=options["dry_run"],
    )
    with table_progress("copying") as progress:
        report = backfill_slice(slice_, request, on_progress=progress.update)
    report_write(report, out)


def report_write(report: BackfillReport, out: Any) -> None:
    if report.dry_run:
        out.write(f"dry run, nothing changed; backfill of slice {report.slice_name} would:")
        for action in report.actions:
            out.write(f"  - {action}")
        return
    for action in report.actions:
        out.write(action)
    for table in report.tables:
        if table.already_done:
            out.write(f"{table.table}: done before ({table.rows_copied} rows)")
        else:
            out.write(
                f"{table.table}: {table.rows} rows in {table.seconds:.1f} s "
                f"({table.rows_per_second:,.0f} rows/s), {table.chunks} chunks, "
                f"{table.rows_copied} copied in all"
            )
    out.write(
        f"backfill of slice {report.slice_name} done: {report.rows} rows in {report.seconds:.1f} s "
        f"({report.rows_per_second:,.0f} rows/s while copying)"
    )
