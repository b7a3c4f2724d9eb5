"""`migrate_data plan [--slice X]`: what each slice would move, or why it cannot."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from migrations.plan_report import SlicePlan, slice_plans
from migrations.steps import StepRefused

HELP = "list each slice: source and target database, tables in foreign-key order, rows (changes nothing)"
DESCRIPTION = (
    "Lists every slice of the migration plan (STRANGLER_PLAN_FILE) as the toolkit sees it: the source "
    "and the target database, the slice's tables in foreign-key order (parents first) with their primary "
    "key, rows on each side (estimated from the catalogue for large tables) and the target's sequence. "
    "A slice whose tables do not match on both sides (a table or column missing, a column of another "
    "type, no single-column primary key) is shown with the reason it is refused; every other step "
    "refuses it too. Exits non-zero when any listed slice is refused."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--slice", help="show only this slice")
    parser.add_argument("--json", action="store_true", help="print the plan as one JSON list")


def run(options: dict[str, Any], out: Any) -> None:
    plans = slice_plans(name=options["slice"])
    if options["json"]:
        out.write(json.dumps([asdict(p) for p in plans]))
    else:
        for plan in plans:
            plan_write(plan, out)
    refused = [p.name for p in plans if p.refused]
    if refused:
        raise StepRefused(f"{len(refused)} of {len(plans)} slices refused: {', '.join(refused)}.")


def plan_write(plan: SlicePlan, out: Any) -> None:
    if plan.no_tables:
        out.write(f"slice {plan.name} (service {plan.service}): no tables, routes only; nothing to move")
        return
    if plan.refused:
        out.write(f"slice {plan.name} (service {plan.service}): REFUSED: {plan.refused}")
        return
    out.write(f"slice {plan.name} (service {plan.service}): {plan.source_database} -> {plan.target_database}")
    for table in plan.tables:
        sequence = f", sequence {table.sequence}" if table.sequence else ""
        out.write(
            f"  {table.name}: key {table.key}, {table.columns} columns, {table.rows_source} rows in the "
            f"source, {table.rows_target} in the target{sequence}"
        )
