"""`migrate_data cutover --slice X`: canary -> live under a bounded write freeze."""

from __future__ import annotations

import argparse
from typing import Any

from migrations.cutover import cutover_run
from migrations.steps.operator import freeze_arguments_add, result_report, who

HELP = "canary -> live under a bounded write freeze (--dry-run shows the steps)."
DESCRIPTION = (
    "Moves the slice's write ownership from legacy to its service. Needs the slice in canary at weight "
    "100, its required slices live, the forward sync running within the slice's lag bound and no stray "
    "writes. Then: freeze the slice's writes in every proxy and wait until each has none in flight; write "
    "a marker at the source and wait until the forward stream applied it; verify the rows changed since "
    "the last clean pass; create the reverse slot; move the target's sequences past the source maximum "
    "plus --sequence-gap; flip (held writes go to the new service). Past --max-freeze-ms at any step it "
    "aborts: the reverse slot is dropped, held writes go to legacy, the slice stays canary, nothing is "
    "lost. One run per slice at a time; SIGTERM/SIGINT wait until the run finished or aborted."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--slice", required=True, dest="slice_name", help="The slice to cut over.")
    freeze_arguments_add(
        parser,
        freeze="Longest write freeze before the cutover aborts",
        gap="Keys of headroom between the two sides' sequences",
    )


def run(options: dict[str, Any], out: Any) -> None:
    result = cutover_run(
        options["slice_name"],
        who=who(options),
        max_freeze_ms=options["max_freeze_ms"],
        sequence_gap=options["sequence_gap"],
        dry_run=options["dry_run"],
        report=out.write,
        hold_lock_seconds=options["hold_lock"],
    )
    result_report(result, out)
