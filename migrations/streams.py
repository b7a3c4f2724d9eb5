"""A slice's sync streams: a Debezium engine per direction (cdc/engine.py) whose handler applies each
batch to the other database (migrations/apply.py). Forward (legacy -> new) runs once the backfill
is done; reverse (new -> legacy) runs while its slot exists (a cutover creates it, a rollback or
retire drops it). The forward lag feeds the proxy's syncing gate (`slice_report_sync`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from django.db import close_old_connections, connections
from pydbzengine import BasePythonChangeHandler

from cdc.engine import EngineConfig, EngineSupervisor, offsets_reset
from cdc.replication import capture_setup, slot_status
from cdc.row_changes import RowChange, row_change_from_envelope
from migrations import metrics
from migrations.apply import BatchOutcome, StreamApplier
from migrations.slices import Slice, TableShape
from migrations.state import CHECKPOINT_TABLE
from migrations.steps import StepRefused

logger = structlog.get_logger(__name__)

DIRECTIONS = ("forward", "reverse")
HEARTBEAT_INTERVAL_MS = 500  # keeps an idle stream's lag current and its slot advancing
SLOT_POLL_SECONDS = 0.5  # how often the sync looks for the reverse slot appearing or going


def stream_engine_config(slice_: Slice, direction: str) -> EngineConfig:
    """The engine of one stream: its own slot, offsets (in control, as the CDC engines') and topic
    prefix (two engines in one JVM need distinct ones). No snapshot: the backfill copied the rows
    and streaming starts where the slot starts."""
    target = slice_.stream_target(direction)
    slot = target.slot_name
    return EngineConfig(
        name=f"migrate-{slot}",
        target=target,
        offset_table=f"{slot}_offsets",
        topic_prefix=slot,
        extra_properties=(
            ("snapshot.mode", "no_data"),
            ("heartbeat.interval.ms", str(HEARTBEAT_INTERVAL_MS)),
        ),
    )


def stream_slot_setup(slice_: Slice, direction: str) -> list[str]:
    """Creates the stream's publication and slot if missing. A slot created here starts a new stream,
    so the engine's stored offsets (of a dropped slot, from an earlier run) are forgotten first:
    Debezium refuses to start from an offset the new slot does not hold. First, not after: a running
    sync starts the stream's engine as soon as it sees the slot, and that engine creates its offset
    table then; dropped under it, every flush of its offsets failed and it handed its changes over in
    lumps five seconds apart, so a rollback's marker missed its freeze bound (seen in a test run)."""
    target = slice_.stream_target(direction)
    forgotten = (
        []
        if slot_status(target).exists
        else offsets_reset(stream_engine_config(slice_, direction), dry_run=False)
    )
    return [*capture_setup(target), *forgotten]


def slot_exists(slice_: Slice, direction: str) -> bool:
    try:
        return slot_status(slice_.stream_target(direction)).exists
    finally:
        close_old_connections()


@dataclass(frozen=True)
class BackfillProgress:
    done: tuple[str, ...]
    total: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return set(self.total) <= set(self.done)


def backfill_progress(slice_: Slice) -> BackfillProgress:
    """Which of the slice's tables the backfill's checkpoint (in the target) marks done."""
    with connections[slice_.target_alias].cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [CHECKPOINT_TABLE])
        if not cursor.fetchone()[0]:
            return BackfillProgress(done=(), total=slice_.table_names)
        cursor.execute(
            f"SELECT table_name, done FROM {CHECKPOINT_TABLE} WHERE slice_name = %s", [slice_.name]
        )
        rows = cursor.fetchall()
    done = tuple(sorted(table for table, done in rows if done))
    return BackfillProgress(done=done, total=slice_.table_names)


def source_wal_lsn(slice_: Slice, direction: str) -> int:
    """The current WAL position of the database a stream reads (what `--once` catches up to)."""
    alias = slice_.stream_target(direction).database_alias
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
        return int(cursor.fetchone()[0])


@dataclass
class StreamProgress:
    """What the handler (on the engine's Java thread) tells the sync process."""

    lag_seconds: float | None = None  # of the last batch
    source_time: float | None = None  # epoch seconds of the newest source commit (or heartbeat) applied
    handled_lsn: int = 0
    applied: int = 0
    echoes: int = 0
    batches: int = 0
    last_marker: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, outcome: BatchOutcome) -> None:
        with self.lock:
            if outcome.lag_seconds is not None:
                self.lag_seconds = outcome.lag_seconds
            if outcome.committed_at is not None:
                self.source_time = outcome.committed_at.timestamp()
            self.handled_lsn = max(self.handled_lsn, outcome.last_lsn)
            self.applied += outcome.applied
            self.echoes += outcome.echoes
            self.batches += 1
            if outcome.marker:
                self.last_marker = outcome.marker

    def current_lag(self, now: float) -> float | None:
        """The last batch's lag, or more when nothing (not even a heartbeat) arrived for longer
        than the heartbeat interval: a stuck stream's lag grows instead of staying at its last value."""
        with self.lock:
            if self.lag_seconds is None or self.source_time is None:
                return None
            silent = now - self.source_time - HEARTBEAT_INTERVAL_MS / 1000
            return max(self.lag_seconds, silent, 0.0)


class SyncHandler(BasePythonChangeHandler):
    """Applies each batch in one transaction of the target; raising refuses the batch (Debezium does
    not commit it and the supervisor restarts the engine, which reads it again)."""

    def __init__(self, *, stream: Stream) -> None:
        self.stream = stream
        self.applier = StreamApplier(slice_=stream.slice, direction=stream.direction, shapes=stream.shapes)
        self.last_success = 0.0

    def handleJsonBatch(self, records: Sequence[Any]) -> None:
        labels = (self.stream.slice.name, self.stream.direction)
        started = time.monotonic()
        try:
            outcome = self.applier.apply(_row_changes(records))
        except Exception:
            metrics.SYNC_BATCHES.labels(*labels, "failed").inc()
            logger.exception("sync.batch_failed", stream=self.stream.name, records=len(records))
            raise
        self.last_success = time.monotonic()
        metrics.SYNC_BATCHES.labels(*labels, "applied").inc()
        metrics.SYNC_BATCH_SECONDS.labels(*labels).observe(self.last_success - started)
        if outcome.applied:
            metrics.SYNC_CHANGES.labels(*labels).inc(outcome.applied)
        if outcome.echoes:
            metrics.SYNC_ECHOES.labels(*labels).inc(outcome.echoes)
        if outcome.lag_seconds is not None:
            metrics.SYNC_LAG_SECONDS.labels(*labels).set(outcome.lag_seconds)
            if outcome.applied:
                metrics.SYNC_BATCH_LAG_SECONDS.labels(*labels).observe(outcome.lag_seconds)
        if outcome.marker:
            logger.info("sync.marker_arrived", stream=self.stream.name, token=outcome.marker)
        self.stream.progress.record(outcome)

    def state_flush(self) -> None:
        """The position lives in the target, written with each batch: nothing to flush."""

    def close(self) -> None:
        self.applier.close()


def _row_changes(records: Sequence[Any]) -> list[RowChange]:
    changes = []
    for record in records:
        value = record.value()
        if value is None:
            continue
        change = row_change_from_envelope(str(value))
        if change is not None:  # Debezium's own heartbeat messages are not row changes
            changes.append(change)
    return changes


class Stream:
    """One direction's engine, supervised on a thread of its own."""

    def __init__(self, slice_: Slice, direction: str, shapes: Sequence[TableShape]) -> None:
        self.slice = slice_
        self.direction = direction
        self.name = f"{slice_.name}:{direction}"
        self.shapes = list(shapes)
        self.config = stream_engine_config(slice_, direction)
        self.progress = StreamProgress()
        self._supervisor: EngineSupervisor | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self.progress = StreamProgress()
        self._supervisor = EngineSupervisor(
            config=self.config,
            handler_factory=lambda: SyncHandler(stream=self),
            start_allowed=self._slot_not_gone,
        )
        self._thread = threading.Thread(
            target=self._supervisor.run_forever, name=f"sync-{self.config.target.slot_name}", daemon=True
        )
        self._thread.start()
        metrics.SYNC_STREAM_RUNNING.labels(self.slice.name, self.direction).set(1)
        logger.info(
            "sync.stream_started",
            stream=self.name,
            slot=self.config.target.slot_name,
            reads=self.config.target.database_alias,
            applies_to=self.slice.applies_to_alias(self.direction),
        )

    def _slot_not_gone(self) -> bool:
        """False only when the slot is known to be dropped (a database that does not answer is the
        engine's failure to retry, not a reason to stop the stream)."""
        try:
            return slot_exists(self.slice, self.direction)
        except Exception:
            logger.exception("sync.slot_check_failed", stream=self.name)
            return True

    def stop(self) -> None:
        """Closes the engine (offsets of applied batches are flushed) and waits for it."""
        if self._supervisor is not None:
            self._supervisor.stop()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self._supervisor, self._thread = None, None
        metrics.SYNC_STREAM_RUNNING.labels(self.slice.name, self.direction).set(0)
        logger.info("sync.stream_stopped", stream=self.name, applied=self.progress.applied)

    def offsets_forget(self) -> None:
        """After its slot was dropped: offsets into a dropped slot would stop the next engine."""
        offsets_reset(self.config, dry_run=False)
        close_old_connections()


def forward_slot_check(slice_: Slice) -> None:
    """Refuses a slice whose forward slot does not exist: nothing was backfilled, or the slot was
    dropped (the changes made since are lost to the stream)."""
    if not slot_exists(slice_, "forward"):
        slot = slice_.stream_target("forward").slot_name
        raise StepRefused(
            f"Slice {slice_.name!r} has no forward stream slot {slot} on the {slice_.source_database} "
            f"database: run `manage.py migrate_data backfill --slice {slice_.name}` first (it creates "
            "the slot before copying, so the sync replays every change made since)."
        )


def backfill_wait(slice_: Slice, *, stopping: threading.Event, poll_seconds: float = 1.0) -> bool:
    """Returns once the backfill marks every table done (True) or when stopping (False)."""
    forward_slot_check(slice_)
    logged_at = 0.0
    while not stopping.is_set():
        progress = backfill_progress(slice_)
        close_old_connections()
        if progress.complete:
            return True
        if time.monotonic() - logged_at > 10:
            logged_at = time.monotonic()
            missing = [t for t in progress.total if t not in progress.done]
            logger.info(
                "sync.waiting_for_backfill",
                slice=slice_.name,
                tables_done=len(progress.done),
                tables=len(progress.total),
                waiting_for=missing,
            )
        stopping.wait(poll_seconds)
    return False


class SyncRunner:
    """The sync process: the forward stream always, the reverse one while its slot exists, the
    forward lag reported to the control plane about once a second."""

    REPORT_SECONDS = 1.0
    LOG_SECONDS = 5.0

    def __init__(
        self,
        slice_: Slice,
        shapes: Sequence[TableShape],
        *,
        report_lag: Callable[[float], None] | None = None,
    ) -> None:
        self.slice = slice_
        self.streams = {direction: Stream(slice_, direction, shapes) for direction in DIRECTIONS}
        self.report_lag = report_lag
        self.stopping = threading.Event()

    def stop(self) -> None:
        self.stopping.set()

    def run(self, *, once: bool = False, once_timeout: float = 120.0) -> None:
        """Until stop(); with `once`, until every running stream has applied what its source had
        written when the stream started (heartbeats carry it past that point when it is quiet)."""
        if not backfill_wait(self.slice, stopping=self.stopping):
            return
        forward, reverse = self.streams["forward"], self.streams["reverse"]
        caught_up_to: dict[str, int] = {}
        reverse_present = slot_exists(self.slice, "reverse")
        if not reverse_present:
            reverse.offsets_forget()
        if once:
            caught_up_to["forward"] = source_wal_lsn(self.slice, "forward")
            if reverse_present:
                caught_up_to["reverse"] = source_wal_lsn(self.slice, "reverse")
            close_old_connections()
        forward.start()
        started = time.monotonic()
        reported = logged = 0.0
        logged_applied = {direction: 0 for direction in DIRECTIONS}
        try:
            while not self.stopping.wait(SLOT_POLL_SECONDS):
                if not forward.running:  # its supervisor ended: the forward slot was dropped (retire)
                    logger.warning("sync.forward_slot_dropped", slot=forward.config.target.slot_name)
                    break
                self._reverse_follow(reverse, allowed=not once or "reverse" in caught_up_to)
                now = time.monotonic()
                if now - reported >= self.REPORT_SECONDS:
                    reported = now
                    self._lag_report(forward)
                if now - logged >= self.LOG_SECONDS:
                    logged = now
                    self._progress_log(logged_applied)
                if once:
                    if all(self.streams[d].progress.handled_lsn >= lsn for d, lsn in caught_up_to.items()):
                        break
                    if now - started > once_timeout:
                        raise StepRefused(
                            f"The sync of slice {self.slice.name!r} did not catch up within "
                            f"{once_timeout:.0f} s (see the log for the engine's errors)."
                        )
        finally:
            for stream in (reverse, forward):
                if stream.running:
                    stream.stop()
            self._progress_log(logged_applied)

    def _reverse_follow(self, reverse: Stream, *, allowed: bool) -> None:
        try:
            present = slot_exists(self.slice, "reverse")
        except Exception:  # the new database does not answer: look again at the next poll
            logger.exception("sync.slot_check_failed", stream=reverse.name)
            return
        if present and allowed and not reverse.running:
            reverse.start()
        elif not present and reverse.running:
            logger.info("sync.reverse_slot_dropped", slot=reverse.config.target.slot_name)
            reverse.stop()
            reverse.offsets_forget()

    def _lag_report(self, forward: Stream) -> None:
        now = time.time()
        for direction, stream in self.streams.items():
            current = stream.progress.current_lag(now)
            if stream.running and current is not None:
                metrics.SYNC_LAG_SECONDS.labels(self.slice.name, direction).set(current)
        lag = forward.progress.current_lag(now)
        if lag is None or self.report_lag is None:
            return
        try:
            self.report_lag(lag)
        except Exception:
            logger.exception("sync.lag_report_failed", slice=self.slice.name)
        finally:
            close_old_connections()

    def _progress_log(self, logged_applied: dict[str, int]) -> None:
        for direction, stream in self.streams.items():
            progress = stream.progress
            if progress.applied != logged_applied[direction]:
                logger.info(
                    "sync.applied",
                    stream=stream.name,
                    changes=progress.applied - logged_applied[direction],
                    changes_since_start=progress.applied,
                    batches=progress.batches,
                    echoes_dropped=progress.echoes,
                    lag_seconds=None if progress.lag_seconds is None else round(progress.lag_seconds, 3),
                )
                logged_applied[direction] = progress.applied
