"""The stage runner's loop: advance the due production orders, then sleep until the next one is
due (or a bounded poll interval, for orders started meanwhile), until asked to stop.

Its state is the database alone (an order is due when its last stage's `at` plus the stage time
has passed), so a runner killed with SIGKILL and started again carries on where it was, and
several runners can share the work (their locks skip each other's orders).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from datetime import datetime

import structlog
from django.db import DatabaseError, InterfaceError, close_old_connections
from django.utils import timezone
from prometheus_client import Counter

from mes_production.selectors import production_next_due
from mes_production.services import production_stages_advance_due

logger = structlog.get_logger(__name__)

# A failed round (the database went away) is tried again after this long.
ERROR_PAUSE_SECONDS = 1.0


STAGES_ADVANCED = Counter("production_stages_advanced_total", "Production order stages advanced")


def stage_runner_run(
    *,
    stage_seconds: float,
    poll_seconds: float,
    batch_size: int,
    stop: threading.Event | None = None,
    clock: Callable[[], datetime] = timezone.now,
) -> int:
    """Runs until `stop` is set (SIGTERM and SIGINT set it); returns how many stages it advanced."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    logger.info("production.stage_runner_started", stage_seconds=stage_seconds, poll_seconds=poll_seconds)
    advanced = 0
    while not stop.is_set():
        try:
            close_old_connections()
            while True:
                done = production_stages_advance_due(
                    now=clock(), stage_seconds=stage_seconds, limit=batch_size
                )
                advanced += len(done)
                STAGES_ADVANCED.inc(len(done))
                if len(done) < batch_size or stop.is_set():
                    break
            next_due = production_next_due(stage_seconds=stage_seconds)
        except (DatabaseError, InterfaceError) as exc:
            logger.warning("production.stage_runner_round_failed", error=repr(exc))
            stop.wait(ERROR_PAUSE_SECONDS)
            continue
        pause = poll_seconds
        if next_due is not None:
            pause = min(poll_seconds, max(0.0, (next_due - clock()).total_seconds()))
        stop.wait(max(pause, 0.01))
    logger.info("production.stage_runner_stopped", advanced=advanced)
    return advanced
