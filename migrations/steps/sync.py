"""`migrate_data sync --slice NAME`: keeps a slice's two sides in step (docs/data-migration.md)."""

from __future__ import annotations

import signal
from argparse import ArgumentParser
from typing import Any, TextIO

import structlog
from django.conf import settings
from django.db import connections

from migrations.slices import Slice, slice_get, slice_tables
from migrations.state import POSITION_TABLE, stream_name
from migrations.steps import StepRefused
from migrations.streams import (
    DIRECTIONS,
    SyncRunner,
    backfill_progress,
    forward_slot_check,
    stream_engine_config,
)

logger = structlog.get_logger(__name__)

HELP = "stream row changes legacy -> new (and new -> legacy once the reverse slot exists)"
DESCRIPTION = (
    "Applies the changes of the slice's tables from the legacy database to the new one through "
    "the forward stream's replication slot (created by `backfill`, which must have finished; the sync "
    "waits for it), several source transactions per target commit, the source position stored in the "
    "target in the same transaction, so a killed sync applies nothing twice. While the reverse slot "
    "exists (a cutover creates it), changes of the new database flow back to legacy too; neither "
    "direction echoes the other's writes. The forward lag goes to the control plane (the syncing "
    "gate) and to Prometheus. Runs until SIGTERM/SIGINT; --once applies what is there and exits."
)


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--slice", required=True, help="the slice of the migration plan to sync")
    parser.add_argument(
        "--once",
        action="store_true",
        help="apply what the sources hold now, then exit (tests, operations)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the streams, slots, positions and tables the sync would apply to, and exit",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=settings.METRICS_PORT,
        help="serve Prometheus /metrics on this port (default METRICS_PORT; 0: off)",
    )


def run(options: dict[str, Any], out: TextIO) -> None:
    slice_ = slice_get(options["slice"])
    shapes = slice_tables(slice_)
    if options["dry_run"]:
        _describe(slice_, out)
        return
    if options["metrics_port"] < 0:
        raise StepRefused(f"--metrics-port {options['metrics_port']} is not a port; give 0 for none.")
    forward_slot_check(slice_)
    if options["metrics_port"]:
        from prometheus_client import start_http_server

        start_http_server(options["metrics_port"])
    runner = SyncRunner(slice_, shapes, report_lag=_control_lag_report(slice_.name))

    def stop(signum: int, frame: Any) -> None:
        logger.info("sync.stopping", slice=slice_.name, signal=signal.Signals(signum).name)
        runner.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # Run until stopped, the sync is a long-running process whose every line is a JSON log line;
    # with --once it is an operator's command and also prints what it applied.
    once = options["once"]
    if once:
        out.write(f"sync of slice {slice_.name}: {slice_.source_database} -> {slice_.target_database} (once)")
    logger.info(
        "sync.started",
        slice=slice_.name,
        source=slice_.source_database,
        target=slice_.target_database,
        once=once,
    )
    runner.run(once=once)
    for direction in DIRECTIONS:
        progress = runner.streams[direction].progress
        if progress.batches:
            stream = stream_name(slice_.name, direction)
            logger.info("sync.stream_applied", slice=slice_.name, stream=stream, changes=progress.applied)
            if once:
                out.write(f"{stream}: {progress.applied} changes applied")
    logger.info("sync.stopped", slice=slice_.name)
    if once:
        out.write(f"sync of slice {slice_.name} stopped")


def _control_lag_report(slice_name: str) -> Any:
    from strangler import selectors, services

    def report(lag_seconds: float) -> None:
        # The verification time is the verify step's; the sync passes it through unchanged.
        verified_at = (
            selectors.slice_list().filter(name=slice_name).values_list("sync_verified_at", flat=True).first()
        )
        services.slice_report_sync(name=slice_name, lag_seconds=lag_seconds, verified_at=verified_at)

    return report


def _position(alias: str, stream: str) -> str:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [POSITION_TABLE])
        if not cursor.fetchone()[0]:
            return "none yet"
        cursor.execute(
            f"SELECT commit_lsn, change_lsn, changes_applied, last_marker, source_committed_at "
            f"FROM {POSITION_TABLE} WHERE stream = %s",
            [stream],
        )
        row = cursor.fetchone()
    if row is None:
        return "none yet"
    commit, change, applied, marker, committed_at = row
    return (
        f"[{commit}, {change}], {applied} changes applied, last marker {marker or '-'}, "
        f"source time {committed_at.isoformat() if committed_at else '-'}"
    )


def _describe(slice_: Slice, out: TextIO) -> None:
    from cdc.replication import slot_status

    out.write(f"slice {slice_.name}: {slice_.source_database} -> {slice_.target_database} (dry run)")
    for direction in DIRECTIONS:
        config = stream_engine_config(slice_, direction)
        target = config.target
        status = slot_status(target)
        applies_to = slice_.applies_to_alias(direction)
        state = (
            f"exists, {status.lag_bytes} bytes behind, {'active' if status.active else 'inactive'}"
            if status.exists
            else (
                "MISSING: `migrate_data backfill` creates it"
                if direction == "forward"
                else "not created (a cutover creates it; the sync starts this stream when it appears)"
            )
        )
        stream = stream_name(slice_.name, direction)
        out.write(f"{stream}: slot {target.slot_name} on {target.database_alias}: {state}")
        out.write(f"  captures {', '.join(target.published_tables)}; applies to {applies_to}")
        out.write(f"  position at {applies_to}: {_position(applies_to, stream)}")
    progress = backfill_progress(slice_)
    out.write(
        f"backfill: {len(progress.done)}/{len(progress.total)} tables done"
        + ("" if progress.complete else " (the sync waits until every table is done)")
    )
    for shape in slice_tables(slice_):
        out.write(f"table {shape.name}: key {shape.key}, columns {', '.join(shape.columns)}")
    out.write("nothing applied (dry run)")
