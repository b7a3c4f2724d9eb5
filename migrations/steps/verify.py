"""`migrate_data verify --slice X`: are the slice's tables equal on both sides, and which rows differ."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from migrations.slices import slice_get
from migrations.steps import StepRefused
from migrations.verify import VerifyReport, verify_slice

HELP = "compare a slice's tables on both sides by chunked checksums, down to the rows that differ"
DESCRIPTION = (
    "Computes a checksum per chunk of keys in SQL on the source and the target at once, drills the "
    "chunks that differ down to their keys, and names for each differing row what differs: missing in "
    "the target, in the target only, or the columns whose values differ. A difference that goes away "
    "within about two seconds (the sync catching up) is not reported. Writes to the target by anyone "
    "but the slice's service and the sync (stray writes) make the verification unclean too. "
    "--changed compares only the keys the sync changed since they were last found equal (the re-verify "
    "set) and takes the equal ones out of it. A clean full verification is reported to the proxy's "
    "control plane with the sync's lag: it opens the gate from syncing to shadow. Exits non-zero when "
    "the verification is not clean."
)

LISTED_DIFFERENCES = 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--slice", required=True, help="the slice to verify (see `migrate_data plan`)")
    parser.add_argument(
        "--changed",
        action="store_true",
        help="check only the keys in the re-verify set (what the sync changed)",
    )
    parser.add_argument(
        "--chunk-keys",
        type=int,
        default=10_000,
        help="keys per checksum chunk (and per batch with --changed; default: %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def run(options: dict[str, Any], out: Any) -> None:
    if options["chunk_keys"] < 1:
        raise StepRefused(f"--chunk-keys must be at least 1, not {options['chunk_keys']}.")
    report = verify_slice(
        slice_get(options["slice"]), changed_only=options["changed"], chunk_keys=options["chunk_keys"]
    )
    if options["json"]:
        out.write(json.dumps(report_json(report), default=str))
    else:
        report_write(report, out)
    if not report.clean:
        raise StepRefused(
            f"Slice {report.slice_name} is not verified: {len(report.differences)} differing rows, "
            f"{len(report.stray_writes)} stray writes."
        )


def report_json(report: VerifyReport) -> dict[str, Any]:
    return {**asdict(report), "rows_per_second": round(report.rows_per_second)}


def report_write(report: VerifyReport, out: Any) -> None:
    what = "re-verify set" if report.changed_only else "full"
    for table in report.tables:
        if report.changed_only:
            out.write(f"{table.table}: {table.rows_source} changed keys compared")
        else:
            out.write(
                f"{table.table}: {table.rows_source} rows in the source, {table.rows_target} in the target, "
                f"{table.chunks_differing} of {table.chunks} chunks differ ({table.seconds:.1f} s)"
            )
    for difference in report.differences[:LISTED_DIFFERENCES]:
        out.write(f"  DIFFERENT {difference.describe()}")
    if len(report.differences) > LISTED_DIFFERENCES:
        out.write(f"  ... and {len(report.differences) - LISTED_DIFFERENCES} more (--json lists them all)")
    for stray in report.stray_writes[:LISTED_DIFFERENCES]:
        out.write(
            f"  STRAY {stray.operation} on {stray.table} key {stray.key} at {stray.at:%Y-%m-%d %H:%M:%S} "
            f"by writer {stray.writer or '(untagged)'}, application {stray.application_name or '-'}, "
            f"user {stray.db_user}"
        )
    if report.changed_only:
        out.write(f"re-verify set: {report.reverify_keys_cleared} keys found equal and cleared")
    verdict = "clean" if report.clean else "NOT clean"
    out.write(
        f"{what} verification of slice {report.slice_name}: {verdict}; {report.rows_checked} rows in "
        f"{report.seconds:.1f} s ({report.rows_per_second:,.0f} rows/s)"
    )
    if report.verified_at is not None:
        out.write(
            f"reported to the control plane: verified at {report.verified_at:%Y-%m-%d %H:%M:%S}, "
            f"sync lag {report.reported_lag_seconds:.2f} s"
        )
