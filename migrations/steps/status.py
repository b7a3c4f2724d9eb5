"""`migrate_data status [--slice X]`: where each slice stands in its migration (changes nothing)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from migrations.slices import SliceRefused, slice_get, slices_all
from migrations.status_report import SliceStatus, slice_status

HELP = "phase, backfill progress, sync position and lag, re-verify set, stray writes (changes nothing)"
DESCRIPTION = (
    "Shows, per slice with tables (or the one named): its phase in the proxy's control plane, the "
    "backfill's progress per table, each stream's position, changes applied and lag (forward: legacy -> "
    "new, reverse: new -> legacy) and its replication slot's retained WAL, the size of the re-verify "
    "set, the stray writes recorded in the target, and the time of the last clean verification."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--slice", help="show only this slice")
    parser.add_argument("--json", action="store_true", help="print one JSON list")


def run(options: dict[str, Any], out: Any) -> None:
    slices = [slice_get(options["slice"])] if options["slice"] else slices_all()
    found: list[SliceStatus | dict[str, str]] = []
    for slice_ in slices:
        try:
            found.append(slice_status(slice_))
        except SliceRefused as exc:
            found.append({"name": slice_.name, "refused": str(exc)})
    if options["json"]:
        out.write(json.dumps([asdict(s) if isinstance(s, SliceStatus) else s for s in found], default=str))
        return
    for status in found:
        if isinstance(status, dict):
            out.write(f"slice {status['name']}: REFUSED: {status['refused']}")
        else:
            status_write(status, out)


def _bytes(count: int | None) -> str:
    return "-" if count is None else f"{count / 1_048_576:.1f} MiB"


def status_write(status: SliceStatus, out: Any) -> None:
    phase = status.phase or "unknown to the control plane (run `strangler load-plan`)"
    weight = f", canary weight {status.canary_weight:g}%" if status.phase == "canary" else ""
    out.write(f"slice {status.name} (service {status.service}): phase {phase}{weight}")
    done = sum(1 for t in status.backfill if t.done)
    out.write(f"  backfill: {done} of {len(status.backfill)} tables done")
    for table in status.backfill:
        state = "done" if table.done else (f"after key {table.last_key}" if table.started else "not started")
        out.write(f"    {table.table}: {table.rows_copied} of ~{table.rows_source} rows copied, {state}")
    for stream in status.streams:
        slot = (
            f"slot {stream.slot_name} {'active' if stream.slot_active else 'idle'}, "
            f"retains {_bytes(stream.slot_retained_wal_bytes)}"
            if stream.slot_exists
            else f"no slot {stream.slot_name}"
        )
        position = stream.position
        if position is None:
            applied = f"nothing applied in {stream.applies_to} yet"
        else:
            applied = (
                f"{position.changes_applied} changes applied in {stream.applies_to}, last at "
                f"{position.applied_at:%Y-%m-%d %H:%M:%S}, lag {position.lag_seconds:.2f} s, "
                f"position {position.commit_lsn}/{position.change_lsn}"
            )
        out.write(f"  {stream.stream}: {applied}; {slot}")
    out.write(f"  re-verify set: {status.reverify_keys} keys")
    triggers = f"{len(status.stray_triggers)} of {len(status.backfill)} tables watched"
    out.write(f"  stray writes: {status.stray_writes} ({triggers})")
    verified = (
        f"{status.last_clean_verification:%Y-%m-%d %H:%M:%S}" if status.last_clean_verification else "never"
    )
    out.write(f"  last clean verification: {verified}")
