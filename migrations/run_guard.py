"""What keeps a run that moves a slice's write ownership (cutover, rollback, retire) safe from its
surroundings: one run per slice at a time, each recorded, and stop signals held until it is done.

The lock is a PostgreSQL session advisory lock in the control database, on a connection of its own:
it is released when the run ends or its process dies (kill -9 included), so it never goes stale.
The run's row (data_migrations_cutoverrun) says who holds it since when.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import psycopg
from django.db import transaction
from django.utils import timezone

from migrations.models import CutoverRun, RunOutcome
from migrations.steps import StepRefused
from ops.database_setup import database_dsn
from strangler import selectors

# Prefix of the advisory lock keys: hashtextextended('migrate_data:<slice>', 0).
_LOCK_PREFIX = "migrate_data:"


def control_alias() -> str:
    return selectors.control_alias()


class SliceRunLock:
    """The slice's run lock, held on a dedicated connection until `release` (or process death)."""

    def __init__(self, slice_name: str) -> None:
        self.slice_name = slice_name
        self.conn: psycopg.Connection[Any] | None = None

    def acquire(self, *, kind: str) -> None:
        """Takes the lock, or raises StepRefused naming the run that holds it and since when."""
        conn = psycopg.connect(
            database_dsn(control_alias(), application_name=f"migrate_data {kind} {self.slice_name}"),
            autocommit=True,
            connect_timeout=10,
        )
        row = conn.execute(
            "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [_LOCK_PREFIX + self.slice_name]
        ).fetchone()
        if not (row and row[0]):
            conn.close()
            raise StepRefused(holder_describe(self.slice_name, wanted=kind))
        self.conn = conn
        # A run that held the lock before and never recorded its end died (the lock went with it).
        CutoverRun.objects.using(control_alias()).filter(
            slice_name=self.slice_name, outcome=RunOutcome.RUNNING
        ).update(
            outcome=RunOutcome.FAILED,
            finished_at=timezone.now(),
            message="The process ended without recording an outcome (killed?); its lock was released.",
        )

    def held_by_other(self) -> str | None:
        """For a dry run, which takes no lock: the sentence naming the holder, if any."""
        with psycopg.connect(database_dsn(control_alias()), autocommit=True, connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [_LOCK_PREFIX + self.slice_name]
            ).fetchone()
            if row and row[0]:
                conn.execute(
                    "SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [_LOCK_PREFIX + self.slice_name]
                )
                return None
        return holder_describe(self.slice_name, wanted="dry run")

    def release(self) -> None:
        if self.conn is not None:
            self.conn.close()  # ends the session, and with it the lock
            self.conn = None


def holder_describe(slice_name: str, *, wanted: str) -> str:
    run = (
        CutoverRun.objects.using(control_alias())
        .filter(slice_name=slice_name, outcome=RunOutcome.RUNNING)
        .order_by("-started_at")
        .first()
    )
    if run is None:
        return (
            f"Another migrate_data run holds slice {slice_name!r} (it has just started and not recorded "
            f"itself yet); the {wanted} did not start. Try again in a moment."
        )
    where = f"pid {run.pid} on {run.host}" if run.pid else run.host or "unknown host"
    return (
        f"Slice {slice_name!r} is held by a {run.kind} run of {run.who} ({where}) since "
        f"{run.started_at.isoformat(timespec='seconds')}; the {wanted} did not start. Wait for it to finish "
        f"(`migrate_data status --slice {slice_name}` shows it) and run again."
    )


def run_record_start(
    *, slice_name: str, kind: str, who: str, from_phase: str, max_freeze_ms: int | None
) -> CutoverRun:
    return CutoverRun.objects.using(control_alias()).create(
        slice_name=slice_name,
        kind=kind,
        who=who,
        host=socket.gethostname(),
        pid=os.getpid(),
        from_phase=from_phase,
        max_freeze_ms=max_freeze_ms,
    )


def run_record_finish(run: CutoverRun, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(run, name, value)
    run.finished_at = timezone.now()
    with transaction.atomic(using=control_alias()):
        run.save(using=control_alias())


@contextmanager
def signals_deferred(notice: Callable[[str], None]) -> Iterator[list[int]]:
    """SIGTERM and SIGINT received inside are held, then honoured on the way out (the previous
    handler runs, or the default action). Outside the main thread signals cannot be caught, and
    there is nothing to defer: the context is a no-op there."""
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    received: list[int] = []
    previous: dict[int, Any] = {}

    def hold(signum: int, frame: FrameType | None) -> None:
        if not received:
            notice(
                f"{signal.Signals(signum).name} received: it takes effect once this run has finished or "
                "aborted (within its freeze bound)."
            )
        received.append(signum)

    for caught in (signal.SIGTERM, signal.SIGINT):
        previous[caught] = signal.signal(caught, hold)
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received:
            sys.stdout.flush()
            sys.stderr.flush()
            os.kill(os.getpid(), received[0])
