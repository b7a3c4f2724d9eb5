"""`migrate_data rollback --slice X [--to PHASE]`: one phase back; from live, a reverse cutover."""

from __future__ import annotations

import argparse
from typing import Any

from migrations.cutover import ROLLBACK_TARGETS, rollback_run
from migrations.steps.operator import freeze_arguments_add, result_report, who

HELP = "One phase back (or --to PHASE); from live, a reverse cutover under a bounded freeze."
DESCRIPTION = (
    "From syncing, shadow or canary: the slice moves back (writes are on legacy already). From live: "
    "the reverse cutover, keeping every write: freeze the slice's writes in every proxy, write a marker "
    "in the new database and wait until the reverse stream applied it in legacy, verify the changed "
    "rows, move legacy's sequences past the new side's maximum plus --sequence-gap, then back to canary "
    "(held writes go to legacy) and drop the reverse slot: the forward stream follows legacy again. "
    "Past --max-freeze-ms it aborts and the slice stays live. --to legacy also drops the forward slot "
    "(no WAL kept for nobody): syncing again needs `migrate_data backfill --restart`."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--slice", required=True, dest="slice_name", help="The slice to roll back.")
    parser.add_argument(
        "--to", dest="to_phase", choices=ROLLBACK_TARGETS, default=None, help="Phase to go back to."
    )
    freeze_arguments_add(
        parser,
        freeze="Longest write freeze of a rollback from live",
        gap="Keys of headroom past the new side's maximum",
    )


def run(options: dict[str, Any], out: Any) -> None:
    result = rollback_run(
        options["slice_name"],
        who=who(options),
        to_phase=options["to_phase"],
        max_freeze_ms=options["max_freeze_ms"],
        sequence_gap=options["sequence_gap"],
        dry_run=options["dry_run"],
        report=out.write,
        hold_lock_seconds=options["hold_lock"],
    )
    result_report(result, out)
