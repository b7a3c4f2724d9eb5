"""One run per slice (the advisory lock names its holder), the run's record, and stop signals held
until a run is done."""

from __future__ import annotations

import os
import signal

import pytest

from migrations.models import CutoverRun, RunOutcome
from migrations.run_guard import SliceRunLock, run_record_start, signals_deferred
from migrations.steps import StepRefused


@pytest.mark.django_db(databases=["default", "control"], transaction=True)
def test_a_second_run_on_a_slice_is_told_who_holds_it_since_when() -> None:
    first, second = SliceRunLock("orders"), SliceRunLock("orders")
    first.acquire(kind="cutover")
    try:
        run = run_record_start(
            slice_name="orders", kind="cutover", who="alice", from_phase="canary", max_freeze_ms=900
        )
        with pytest.raises(StepRefused) as refused:
            second.acquire(kind="rollback")
        message = str(refused.value)
        assert f"held by a cutover run of alice (pid {os.getpid()} on " in message
        assert (
            run.started_at.isoformat(timespec="seconds") in message
            and "the rollback did not start" in message
        )
        assert first.held_by_other() is not None  # what a dry run reports
        SliceRunLock("customers").acquire(kind="cutover")  # another slice is not held
    finally:
        first.release()
    # Released: the next run gets the lock, and marks the run that never recorded its end.
    second.acquire(kind="rollback")
    second.release()
    stale = CutoverRun.objects.using("control").get(id=run.id)
    assert stale.outcome == RunOutcome.FAILED and "without recording an outcome" in stale.message


def test_a_stop_signal_inside_a_run_takes_effect_when_it_ends() -> None:
    notices: list[str] = []
    finished = []
    with pytest.raises(KeyboardInterrupt):
        with signals_deferred(notices.append) as received:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            finished.append("the run ended normally")
        assert received == [signal.SIGINT, signal.SIGINT]
    assert finished == ["the run ended normally"]
    assert len(notices) == 1 and notices[0].startswith("SIGINT received: it takes effect once")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
