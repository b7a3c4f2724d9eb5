"""`migrate_data retire --slice X --confirm X`: live -> retired, legacy tables archived."""

from __future__ import annotations

import argparse
from typing import Any

from migrations.retire import ARCHIVE_SCHEMA, retire_run
from migrations.steps.operator import result_report, who, who_add_argument

HELP = "live -> retired after a clean full verification: reverse sync stops, legacy tables archived."
DESCRIPTION = (
    "Only for a live slice whose soak time has passed (strangler's live -> retired gate; --force with "
    "--why overrides it, audited) and whose full verification is clean. Promotes the slice to retired, "
    "drops its streams' slots (reverse sync stops) and moves its legacy tables to the "
    f"{ARCHIVE_SCHEMA} schema under a dated name, in one transaction. After this the slice cannot be "
    "rolled back, so its name must be repeated with --confirm. --dry-run prints the statements."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--slice", required=True, dest="slice_name", help="The slice to retire.")
    parser.add_argument("--confirm", required=True, metavar="SLICE", help="The slice's name again.")
    parser.add_argument(
        "--force", action="store_true", help="Retire before the soak time passed (needs --why)."
    )
    parser.add_argument("--why", default="", help="The reason, kept in the audit log.")
    parser.add_argument(
        "--dry-run", action="store_true", help="Check and print the statements; change nothing."
    )
    who_add_argument(parser)


def run(options: dict[str, Any], out: Any) -> None:
    result = retire_run(
        options["slice_name"],
        who=who(options),
        confirm=options["confirm"],
        force=options["force"],
        why=options["why"],
        dry_run=options["dry_run"],
        report=out.write,
    )
    result_report(result, out)
