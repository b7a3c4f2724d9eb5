"""Moving a slice's write ownership under a bounded write freeze: the cutover (canary -> live, legacy
hands its writes to the new service) and the rollback from live (the same steps the other way), as
docs/data-migration.md numbers them; and the rollback from the earlier phases, where writes never
left legacy.

Under the freeze every step runs against one deadline (--max-freeze-ms from the freeze's commit).
Past it, or on a difference, the run aborts: the freeze is released without a flip (held writes go to
the owner they would have gone to anyway), a reverse slot it created is dropped, and the run is
recorded with the step that ran over. Nothing was written to the side that did not get ownership,
so nothing is lost. Callable in-process (benchmark, demo) and from `migrate_data`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from django.conf import settings
from django.db import DatabaseError, OperationalError, connections

from cdc.replication import capture_teardown, slot_status
from migrations.models import CutoverRun, RunKind, RunOutcome
from migrations.raw_connections import raw_connect
from migrations.run_guard import SliceRunLock, run_record_finish, run_record_start, signals_deferred
from migrations.slices import Slice, slice_get, slice_tables
from migrations.state import MARKER_TABLE, POSITION_TABLE, state_tables_ensure, stream_name
from migrations.steps import StepRefused
from migrations.stray_writes import stray_writes_count
from migrations.stream_positions import StreamPosition, position_read
from migrations.streams import stream_slot_setup
from migrations.verify import RECHECK_SECONDS, verify_slice
from strangler import selectors, services
from strangler.models import PHASE_ORDER, Phase
from strangler.models import Slice as ControlSlice
from strangler.services import OperationRefused

logger = structlog.get_logger(__name__)

Report = Callable[[str], None]

DEFAULT_MAX_FREEZE_MS = 1000
DEFAULT_SEQUENCE_GAP = 1_000_000
# How often the waits under the freeze look again (acknowledgements, the marker's arrival).
_POLL_SECONDS = 0.005
# How long creating the reverse slot (before the freeze) may wait for running transactions.
REVERSE_SLOT_TIMEOUT_SECONDS = 60


@dataclass
class CutoverResult:
    """What a cutover, rollback or retire run did (or, for a dry run, would do)."""

    slice_name: str
    kind: str
    outcome: str
    from_phase: str
    to_phase: str
    run_id: int | None = None
    freeze_ms: float | None = None
    max_freeze_ms: int | None = None
    steps_ms: dict[str, float] = field(default_factory=dict)
    failed_step: str = ""
    message: str = ""
    actions: list[str] = field(default_factory=list)

    @property
    def completed(self) -> bool:
        return self.outcome == RunOutcome.COMPLETED

    def summary(self) -> str:
        freeze = "" if self.freeze_ms is None else f", writes frozen {self.freeze_ms:.1f} ms"
        bound = "" if self.max_freeze_ms is None else f" (bound {self.max_freeze_ms} ms)"
        steps = ", ".join(f"{step} {ms:.1f} ms" for step, ms in self.steps_ms.items())
        head = f"{self.kind} {self.slice_name}: {self.outcome}, {self.from_phase} -> {self.to_phase}"
        tail = f"\nsteps: {steps}" if steps else ""
        return f"{head}{freeze}{bound}{tail}" + (f"\n{self.message}" if self.message else "")


class FreezeAborted(Exception):
    """A step under the freeze ran past the bound or found a difference; everything is undone."""

    def __init__(self, step: str, reason: str) -> None:
        self.step = step
        self.reason = reason
        super().__init__(f"{step}: {reason}")


# ---------------------------------------------------------------------------------------------------
# Reads and writes on the two databases


def _one(alias: str, sql: str, params: list[Any] | None = None) -> tuple[Any, ...] | None:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchone() if cursor.description else None


def _table_exists(alias: str, table: str) -> bool:
    row = _one(alias, "SELECT to_regclass(%s) IS NOT NULL", [f'public."{table}"'])
    return bool(row and row[0])


def _marker_source_alias(slice_: Slice, direction: str) -> str:
    """The database a stream reads: the marker is written there."""
    return slice_.source_alias if direction == "forward" else slice_.target_alias


def marker_write(slice_: Slice, direction: str) -> str:
    token = uuid.uuid4().hex
    with connections[_marker_source_alias(slice_, direction)].cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {MARKER_TABLE} (slice_name, token) VALUES (%s, %s)", [slice_.name, token]
        )
    return token


def marker_arrived(slice_: Slice, direction: str, token: str) -> bool:
    row = _one(
        slice_.applies_to_alias(direction),
        f"SELECT 1 FROM {POSITION_TABLE} WHERE stream = %s AND last_marker = %s",
        [stream_name(slice_.name, direction), token],
    )
    return row is not None


def stray_write_count(slice_: Slice) -> int:
    with raw_connect(slice_.target_alias, application_name="migrate_data cutover", autocommit=True) as conn:
        return stray_writes_count(conn.cursor(), slice_)


def stream_position(slice_: Slice, direction: str) -> StreamPosition | None:
    alias = slice_.applies_to_alias(direction)
    with raw_connect(alias, application_name="migrate_data cutover", autocommit=True) as conn:
        return position_read(conn.cursor(), stream_name(slice_.name, direction))


@dataclass(frozen=True)
class SequenceMove:
    table: str
    sequence: str  # on the side that takes ownership
    other_max: int  # the highest key (or sequence value) on the side that gives it up
    value: int  # what the sequence is set to (the next key is value + 1)

    def statement(self) -> str:
        return (
            f"SELECT setval('{self.sequence}', {self.value})  -- {self.table}: the other max {self.other_max}"
        )


def _highest(alias: str, table: str, key: str, sequence: str | None) -> int:
    """The highest key of the table, or its sequence's last value if that is higher."""
    row = _one(alias, f'SELECT COALESCE(MAX("{key}"), 0) FROM "{table}"')
    highest = int(row[0]) if row and row[0] is not None else 0
    if sequence:
        seq = _one(alias, "SELECT pg_sequence_last_value(%s::regclass)", [sequence])
        if seq and seq[0] is not None:
            highest = max(highest, int(seq[0]))
    return highest


def sequence_moves(slice_: Slice, *, to_new: bool, gap: int) -> list[SequenceMove]:
    """For each table with a sequence on the side taking ownership: the value that puts it past the
    other side's highest key plus `gap` (never lower than where it is)."""
    moves = []
    for shape in slice_tables(slice_):
        mine, other = (
            (shape.sequence, shape.source_sequence) if to_new else (shape.source_sequence, shape.sequence)
        )
        if mine is None:
            continue
        here = slice_.target_alias if to_new else slice_.source_alias
        there = slice_.source_alias if to_new else slice_.target_alias
        other_max = _highest(there, shape.name, shape.key, other)
        current = _highest(here, shape.name, shape.key, mine)
        moves.append(SequenceMove(shape.name, mine, other_max, max(other_max + gap, current)))
    return moves


def sequences_apply(slice_: Slice, moves: list[SequenceMove], *, to_new: bool) -> None:
    alias = slice_.target_alias if to_new else slice_.source_alias
    with connections[alias].cursor() as cursor:
        for move in moves:
            cursor.execute("SELECT setval(%s::regclass, %s)", [move.sequence, move.value])


# What the recheck under the freeze leaves of the bound for the steps after it (sequences, flip).
RECHECK_MARGIN_SECONDS = 0.3


def verify_changed(slice_: Slice, *, recheck_seconds: float) -> tuple[bool, str, int]:
    """The re-verify set compared on both sides: (clean, what differs, rows checked). Keys found
    equal leave the set, so a pass before the freeze leaves the frozen one little to check."""
    report = verify_slice(slice_, changed_only=True, report_progress=False, recheck_seconds=recheck_seconds)
    found = [d.describe() for d in report.differences[:5]]
    if report.stray_writes:
        found.insert(0, f"{len(report.stray_writes)} stray write(s)")
    return report.clean, "; ".join(found), report.rows_checked


# ---------------------------------------------------------------------------------------------------
# Checks before a freeze


def _control_slice(name: str) -> ControlSlice:
    found = ControlSlice.objects.using(selectors.control_alias()).filter(name=name).first()
    if found is None:
        raise StepRefused(
            f"The proxy's control plane has no slice {name!r}: load the plan first "
            "(`manage.py strangler load-plan`)."
        )
    return found


def _check_stream(
    slice_: Slice, direction: str, bound_seconds: float, probe: bool, report: Report
) -> float | None:
    """The stream is running and keeps up: (unless a dry run) a probe marker written at its source
    arrives within the slice's sync lag bound. Returns the probe's lag in ms."""
    stream = stream_name(slice_.name, direction)
    position = stream_position(slice_, direction)
    if position is None:
        # A stream writes its position row with the first change it applies: a quiet slice has none
        # until the probe's marker passes through.
        report(f"{direction} stream: no change applied yet ({stream} has no position row)")
    else:
        report(
            f"{direction} stream: {position.changes_applied} changes applied, the last at "
            f"{position.applied_at.isoformat(timespec='seconds')} ({position.lag_seconds:.2f} s lag)"
        )
    if not probe:
        return None
    started = time.perf_counter()
    token = marker_write(slice_, direction)
    deadline = started + bound_seconds
    while not marker_arrived(slice_, direction, token):
        if time.perf_counter() > deadline:
            raise StepRefused(
                f"A probe marker written at the {direction} stream's source did not arrive within the "
                f"slice's sync lag bound ({bound_seconds} s): start `manage.py migrate_data sync --slice "
                f"{slice_.name}` if it is not running, or let it catch up (`migrate_data status --slice "
                f"{slice_.name}` shows its lag)."
            )
        time.sleep(_POLL_SECONDS)
    lag_ms = (time.perf_counter() - started) * 1000
    report(
        f"{direction} stream keeps up: a probe marker arrived in {lag_ms:.0f} ms (bound {bound_seconds} s)"
    )
    return lag_ms


def _check_proxies(report: Report) -> None:
    count = len(selectors.proxies_seen(seen_seconds=settings.STRANGLER_PROXY_SEEN_SECONDS))
    if count == 0:
        raise StepRefused(
            f"No proxy has reported in the last {settings.STRANGLER_PROXY_SEEN_SECONDS:.0f} s, so nobody "
            "would hold the slice's writes: start the proxy (`manage.py strangler serve`) in front of it."
        )
    report(f"{count} proxy process(es) will hold the slice's writes")


def _state_tables_ready(slice_: Slice) -> None:
    for alias in (slice_.source_alias, slice_.target_alias):
        with connections[alias].cursor() as cursor:
            state_tables_ensure(cursor, MARKER_TABLE, POSITION_TABLE)


# ---------------------------------------------------------------------------------------------------
# The frozen part, shared by the cutover and the rollback from live


@dataclass
class FrozenHandover:
    """Writes of `slice_` move from one database to the other under a freeze bounded by max_freeze_ms."""

    slice_: Slice
    direction: str  # the stream that drains: forward (cutover) or reverse (rollback from live)
    who: str
    max_freeze_ms: int
    gap: int
    run_id: int | None
    report: Report
    steps_ms: dict[str, float] = field(default_factory=dict)
    frozen_at: float = 0.0
    reverse_slot_created: bool = False

    @property
    def to_new(self) -> bool:
        return self.direction == "forward"

    def _elapsed_ms(self) -> float:
        return (time.perf_counter() - self.frozen_at) * 1000

    def _step(self, name: str, started: float) -> None:
        self.steps_ms[name] = round((time.perf_counter() - started) * 1000, 2)
        if self._elapsed_ms() > self.max_freeze_ms:
            raise FreezeAborted(
                name,
                f"the freeze reached {self._elapsed_ms():.0f} ms, past the bound of {self.max_freeze_ms} ms",
            )

    def _wait(self, name: str, done: Callable[[], bool], waiting_for: Callable[[], str]) -> None:
        started = time.perf_counter()
        deadline = self.frozen_at + self.max_freeze_ms / 1000
        while not done():
            if time.perf_counter() > deadline:
                self.steps_ms[name] = round((time.perf_counter() - started) * 1000, 2)
                raise FreezeAborted(
                    name,
                    f"still waiting for {waiting_for()} at the freeze's bound of {self.max_freeze_ms} ms",
                )
            time.sleep(_POLL_SECONDS)
        self._step(name, started)

    def reverse_slot_prepare(self) -> None:
        """The reverse slot, before the freeze (not under it, as the design first had it): creating a
        logical slot waits until every transaction running on the server has ended, which took 57 s
        behind another process's bulk copy here, more than any freeze bound allows. Created now, it
        sees only the forward sync's writes until the flip, and the reverse stream drops those as
        echoes; the first write of the new service after the flip is in it either way."""
        target = self.slice_.stream_target("reverse")
        if slot_status(target).exists:
            return
        started = time.perf_counter()
        alias = target.database_alias
        with connections[alias].cursor() as cursor:
            cursor.execute("SET statement_timeout = %s", [f"{REVERSE_SLOT_TIMEOUT_SECONDS}s"])
        try:
            stream_slot_setup(self.slice_, "reverse")
        except OperationalError as exc:
            raise StepRefused(
                f"Creating the reverse slot {target.slot_name} waited over {REVERSE_SLOT_TIMEOUT_SECONDS} s "
                "for transactions running on the database server to end (pg_stat_activity lists them); "
                f"nothing was frozen. Run the cutover again once they are done. ({exc})"
            ) from exc
        finally:
            try:
                with connections[alias].cursor() as cursor:
                    cursor.execute("RESET statement_timeout")
            except DatabaseError:  # the connection is gone (a server restart): the next use reconnects
                connections[alias].close()
        self.reverse_slot_created = True
        self.steps_ms["reverse_slot_before_freeze"] = round((time.perf_counter() - started) * 1000, 2)
        self.report(
            f"created the reverse slot {target.slot_name}: it holds every new-side change from here on"
        )

    def reverse_slot_drop(self) -> list[str]:
        if not self.reverse_slot_created:
            return []
        self.reverse_slot_created = False
        return capture_teardown(self.slice_.stream_target("reverse"), dry_run=False)

    def freeze(self) -> int:
        # The proxies' own timer releases held writes to the current owner if this process dies; it
        # runs a little past the bound so a flip committed at the last moment reaches every proxy
        # before that timer fires.
        margin = 2 * settings.STRANGLER_POLL_INTERVAL + 0.1
        started = time.perf_counter()
        change = services.write_freeze_start(
            name=self.slice_.name,
            seconds=self.max_freeze_ms / 1000 + margin,
            who=self.who,
            why=f"{'cutover' if self.to_new else 'rollback'} run {self.run_id}: drain before the flip",
        )
        self.frozen_at = time.perf_counter()
        self.steps_ms["freeze"] = round((self.frozen_at - started) * 1000, 2)
        assert change.version is not None
        self.report(f"froze writes to {self.slice_.name} (routing version {change.version})")
        return change.version

    def run(self, version: int) -> dict[str, Any]:
        """Steps 3-7 under the freeze; returns the gate figures for the flip. Raises FreezeAborted."""
        slice_name = self.slice_.name
        seen = settings.STRANGLER_PROXY_SEEN_SECONDS
        acks: list[selectors.FreezeAcknowledgement] = []

        def acknowledged() -> bool:
            acks[:] = [
                selectors.freeze_acknowledgement(slice_name=slice_name, version=version, seen_seconds=seen)
            ]
            return acks[0].complete

        self._wait(
            "acknowledged",
            acknowledged,
            lambda: (
                "the acknowledgement of proxies "
                + ", ".join(f"{p} (routing version {v})" for p, v in acks[0].pending.items())
            ),
        )
        self.report(f"every proxy holds the writes ({', '.join(acks[0].acknowledged)})")

        token = marker_write(self.slice_, self.direction)
        self._wait(
            "drained",
            lambda: marker_arrived(self.slice_, self.direction, token),
            lambda: f"the marker {token} to come through the {self.direction} stream",
        )
        self.report(f"the {self.direction} stream applied everything up to the marker")

        started = time.perf_counter()
        # The proxies hold the slice's writes, but processes behind them (the monolith's workers: its
        # poller and the MES's status replies write orders) may still change a row after the marker;
        # the stream brings such a change over within its lag, so a difference may take until the
        # freeze's bound to go away before it counts.
        remaining = self.frozen_at + self.max_freeze_ms / 1000 - time.perf_counter()
        clean, differences, rows_checked = verify_changed(
            self.slice_, recheck_seconds=max(0.0, remaining - RECHECK_MARGIN_SECONDS)
        )
        if not clean:
            self.steps_ms["verified"] = round((time.perf_counter() - started) * 1000, 2)
            raise FreezeAborted("verified", f"the changed rows differ: {differences}")
        self._step("verified", started)
        self.report(f"verified the changed rows: {rows_checked} equal on both sides")

        if self.to_new:
            started = time.perf_counter()
            if not slot_status(self.slice_.stream_target("reverse")).exists:
                raise FreezeAborted("reverse_slot", "the reverse slot created before the freeze is gone")
            self._step("reverse_slot", started)

        started = time.perf_counter()
        moves = sequence_moves(self.slice_, to_new=self.to_new, gap=self.gap)
        sequences_apply(self.slice_, moves, to_new=self.to_new)
        self._step("sequences", started)
        for move in moves:
            self.report(f"sequence {move.sequence} -> {move.value} (other side's max {move.other_max})")
        return {
            "run_id": self.run_id,
            "freeze_ms_before_flip": round(self._elapsed_ms(), 2),
            "max_freeze_ms": self.max_freeze_ms,
            "steps_ms": dict(self.steps_ms),
            "proxies": acks[0].acknowledged,
            "marker": token,
            "rows_verified": rows_checked,
            "sequences": {m.sequence: m.value for m in moves},
        }

    def undo(self, why: str) -> list[str]:
        """After an abort: release the held writes to the owner they had (the freeze's point), then
        drop a reverse slot this run created. Returns what it did, and what failed."""
        done = []
        try:
            services.write_freeze_release(
                name=self.slice_.name, who=self.who, why=why, gate={"run_id": self.run_id, **self.steps_ms}
            )
            done.append("released the held writes without a flip")
        except Exception as exc:  # the proxies' own timer releases them at the freeze's end
            logger.exception("cutover.release_failed", slice=self.slice_.name)
            done.append(f"could not release the freeze ({exc}); the proxies release it when it expires")
        done.extend(self.reverse_slot_drop())
        return done


# ---------------------------------------------------------------------------------------------------
# Runs


def _finish(run: CutoverRun | None, result: CutoverResult) -> CutoverResult:
    if run is not None:
        run_record_finish(
            run,
            outcome=result.outcome,
            to_phase=result.to_phase,
            failed_step=result.failed_step,
            message=result.message,
            freeze_ms=result.freeze_ms,
            steps_ms=[[step, ms] for step, ms in result.steps_ms.items()],
            details={"actions": result.actions},
        )
        result.run_id = run.id
    logger.info(
        "migrations.run_finished",
        kind=result.kind,
        slice=result.slice_name,
        outcome=result.outcome,
        freeze_ms=result.freeze_ms,
        failed_step=result.failed_step,
    )
    return result


def _frozen_handover(
    handover: FrozenHandover, result: CutoverResult, commit: Callable[[dict[str, Any]], None]
) -> CutoverResult:
    """Freeze, steps, commit (the flip) or undo; the freeze is measured from its commit to the flip's."""
    if handover.to_new:
        handover.reverse_slot_prepare()
    try:
        version = handover.freeze()
    except BaseException:
        result.actions.extend(handover.reverse_slot_drop())
        raise
    try:
        gate = handover.run(version)
        if handover._elapsed_ms() > handover.max_freeze_ms:
            raise FreezeAborted("flip", f"the freeze reached {handover._elapsed_ms():.0f} ms before the flip")
        started = time.perf_counter()
        commit(gate)
        flipped = time.perf_counter()
        handover.steps_ms["flip"] = round((flipped - started) * 1000, 2)
        result.freeze_ms = round((flipped - handover.frozen_at) * 1000, 2)
        result.outcome = RunOutcome.COMPLETED
    except FreezeAborted as exc:
        owner = "legacy" if handover.to_new else f"the {handover.slice_.service} service"
        result.actions.extend(handover.undo(f"{result.kind} aborted at {exc.step}: {exc.reason}"))
        result.freeze_ms = round(handover._elapsed_ms(), 2)
        result.outcome, result.failed_step = RunOutcome.ABORTED, exc.step
        result.to_phase = result.from_phase
        result.message = (
            f"Aborted at step {exc.step!r}: {exc.reason}. The held writes went to {owner}, which owns them "
            "still; nothing was written to the other side, nothing is lost."
        )
    except BaseException as exc:
        if _phase_now(handover.slice_.name) not in (None, result.from_phase):
            # The flip committed before the error (a connection lost on its way back): keep it, and
            # keep the reverse slot it needs.
            result.outcome, result.failed_step = RunOutcome.FAILED, "flip"
            result.message = (
                f"The flip committed, then {type(exc).__name__}: {exc}. Check `strangler slices`."
            )
            raise
        result.actions.extend(handover.undo(f"{result.kind} failed: {exc}"))
        result.freeze_ms = round(handover._elapsed_ms(), 2)
        result.outcome, result.failed_step = RunOutcome.FAILED, next(reversed(handover.steps_ms), "freeze")
        result.to_phase = result.from_phase
        result.message = f"Failed ({type(exc).__name__}: {exc}); the freeze was released without a flip."
        raise
    finally:
        result.steps_ms = dict(handover.steps_ms)
    return result


def _phase_now(slice_name: str) -> str | None:
    """The slice's phase in the control database, None when it cannot be read."""
    try:
        return str(_control_slice(slice_name).phase)
    except (DatabaseError, StepRefused):
        return None


def guarded_run(
    *,
    slice_name: str,
    kind: str,
    who: str,
    dry_run: bool,
    max_freeze_ms: int | None,
    report: Report,
    body: Callable[[Slice, ControlSlice, CutoverResult, CutoverRun | None], CutoverResult],
    hold_lock_seconds: float = 0,
) -> CutoverResult:
    """The lock, the run record and the deferred signals around a run's body. `hold_lock_seconds`
    keeps the lock that long before the body starts (a rehearsal of two operators at once)."""
    slice_ = slice_get(slice_name)
    lock = SliceRunLock(slice_name)
    if dry_run:
        holder = lock.held_by_other()
        if holder:
            report(f"note: {holder}")
    else:
        lock.acquire(kind=kind)
    run: CutoverRun | None = None
    try:
        control = _control_slice(slice_name)
        if control.phase != Phase.RETIRED:  # a retired slice's legacy tables are archived
            slice_tables(slice_)  # refuses a slice whose two sides do not match
        result = CutoverResult(
            slice_name, kind, RunOutcome.RUNNING, control.phase, control.phase, max_freeze_ms=max_freeze_ms
        )
        if not dry_run:
            run = run_record_start(
                slice_name=slice_name,
                kind=kind,
                who=who,
                from_phase=control.phase,
                max_freeze_ms=max_freeze_ms,
            )
            result.run_id = run.id
            if hold_lock_seconds:
                report(f"holding the lock of {slice_name} for {hold_lock_seconds} s before starting")
                time.sleep(hold_lock_seconds)
        with signals_deferred(report):
            try:
                result = body(slice_, control, result, run)
            except (StepRefused, OperationRefused) as exc:
                if result.outcome == RunOutcome.RUNNING:
                    result.outcome, result.message = RunOutcome.REFUSED, str(exc)
                _finish(run, result)
                raise StepRefused(str(exc)) from exc
            except BaseException as exc:
                if result.outcome == RunOutcome.RUNNING:
                    result.outcome = RunOutcome.FAILED
                    result.message = f"{type(exc).__name__}: {exc}"
                _finish(run, result)
                raise
            return _finish(run, result)
    finally:
        lock.release()


def cutover_run(
    slice_name: str,
    *,
    who: str,
    max_freeze_ms: int = DEFAULT_MAX_FREEZE_MS,
    sequence_gap: int = DEFAULT_SEQUENCE_GAP,
    dry_run: bool = False,
    report: Report = print,
    hold_lock_seconds: float = 0,
) -> CutoverResult:
    """canary (weight 100) -> live: writes move from legacy to the new service under a freeze of at
    most `max_freeze_ms`. Raises StepRefused when a precondition fails (nothing changed); returns an
    aborted result when the freeze's bound was broken (everything undone)."""
    _bounds_check(max_freeze_ms, sequence_gap)

    def body(
        slice_: Slice, control: ControlSlice, result: CutoverResult, run: CutoverRun | None
    ) -> CutoverResult:
        _cutover_preconditions(slice_, control, dry_run=dry_run, report=report)
        moves = sequence_moves(slice_, to_new=True, gap=sequence_gap)
        result.to_phase = Phase.LIVE
        if dry_run:
            result.outcome = RunOutcome.DRY_RUN
            result.actions = _plan_lines(slice_, moves, direction="forward", max_freeze_ms=max_freeze_ms)
            return result
        handover = FrozenHandover(slice_, "forward", who, max_freeze_ms, sequence_gap, result.run_id, report)

        def flip(gate: dict[str, Any]) -> None:
            services.write_freeze_release(
                name=slice_.name, who=who, why=f"cutover run {result.run_id}", promote=True, gate=gate
            )

        return _frozen_handover(handover, result, flip)

    return guarded_run(
        slice_name=slice_name,
        kind=RunKind.CUTOVER,
        who=who,
        dry_run=dry_run,
        max_freeze_ms=max_freeze_ms,
        report=report,
        body=body,
        hold_lock_seconds=hold_lock_seconds,
    )


def _bounds_check(max_freeze_ms: int, sequence_gap: int) -> None:
    if not 1 <= max_freeze_ms <= 60_000:
        raise StepRefused(
            f"--max-freeze-ms {max_freeze_ms} is outside 1-60000: a write freeze is short and bounded."
        )
    if sequence_gap < 0:
        raise StepRefused(f"--sequence-gap {sequence_gap} is negative; use 0 or more keys of headroom.")


def _cutover_preconditions(slice_: Slice, control: ControlSlice, *, dry_run: bool, report: Report) -> None:
    name = slice_.name
    if control.phase != Phase.CANARY:
        hint = {
            Phase.LIVE: "it is live already",
            Phase.RETIRED: "it is retired",
        }.get(Phase(control.phase), f"promote it to canary first (`manage.py strangler promote {name}`)")
        raise StepRefused(
            f"Slice {name!r} is in phase {control.phase}; a cutover starts from canary: {hint}."
        )
    if control.canary_weight < 100:
        raise StepRefused(
            f"Slice {name!r} is in canary at weight {control.canary_weight}%: every customer's reads must be "
            f"on the new service first. Run `manage.py strangler weight {name} 100`."
        )
    if control.paused:
        raise StepRefused(f"Slice {name!r} is paused; resume it first (`manage.py strangler resume {name}`).")
    waiting = selectors.slices_not_live(names=list(control.requires), alias=selectors.control_alias())
    if waiting:
        listed = ", ".join(f"{n} ({phase})" for n, phase in waiting.items())
        raise StepRefused(
            f"Slice {name!r} requires slices that are not live yet: {listed}. Cut them over first."
        )
    strays = stray_write_count(slice_)
    if strays:
        raise StepRefused(
            f"The new database has {strays} stray write(s) to {name!r}'s tables (from neither the "
            f"{slice_.service} service nor the sync): `migrate_data verify --slice {name}` names them; "
            "find and stop their writer before the cutover."
        )
    report("slice in canary at weight 100, required slices live, no stray writes")
    _check_proxies(report)
    if not dry_run:
        _state_tables_ready(slice_)
    _check_stream(slice_, "forward", control.max_sync_lag_seconds, probe=not dry_run, report=report)
    _pre_verify(slice_, dry_run=dry_run, report=report)
    reverse = slice_.stream_target("reverse")
    if slot_status(reverse).exists:
        # Left by a run that died mid-freeze: in canary no write has reached the new side since.
        if not dry_run:
            capture_teardown(reverse, dry_run=False)
        report(
            f"{'would drop' if dry_run else 'dropped'} the reverse slot {reverse.slot_name} that a dead run "
            "left (in canary it holds no write)"
        )


def _pre_verify(slice_: Slice, *, dry_run: bool, report: Report) -> None:
    """The re-verify set checked before the freeze: a real difference refuses the run with nothing
    changed, and the keys found equal leave the set, so the frozen pass checks only the latest."""
    if dry_run:
        report("(a real run first verifies the re-verify set before freezing)")
        return
    started = time.perf_counter()
    clean, differences, rows = verify_changed(slice_, recheck_seconds=RECHECK_SECONDS)
    if not clean:
        raise StepRefused(
            f"The rows of {slice_.name!r} changed since the last clean pass differ: {differences}. "
            f"`migrate_data verify --slice {slice_.name}` reports them all; repair before moving writes."
        )
    report(
        f"verified {rows} changed rows before the freeze in {(time.perf_counter() - started) * 1000:.0f} ms"
    )


def _plan_lines(slice_: Slice, moves: list[SequenceMove], *, direction: str, max_freeze_ms: int) -> list[str]:
    forward = direction == "forward"
    source, target = (
        (slice_.source_database, slice_.target_database)
        if forward
        else (slice_.target_database, slice_.source_database)
    )
    reverse_slot = slice_.stream_target("reverse").slot_name
    lines = [f"create the reverse slot {reverse_slot} in {target}, before the freeze"] if forward else []
    lines += [
        f"freeze writes to {slice_.name} in the proxies (bound {max_freeze_ms} ms); wait until all ack it",
        f"write a marker in {source}; wait until the {direction} stream applied it in {target}",
        "verify the re-verify set (the rows changed since the last clean pass)",
    ]
    lines += [f"in {target}: {move.statement()}" for move in moves]
    lines.append(
        "flip: the slice goes live and the held writes go to the new service"
        if forward
        else "flip back: the slice goes to canary and the held writes go to legacy; drop the reverse slot"
    )
    return lines


ROLLBACK_TARGETS = [p.value for p in PHASE_ORDER if p not in (Phase.LIVE, Phase.RETIRED)]


def rollback_run(
    slice_name: str,
    *,
    who: str,
    to_phase: str | None = None,
    max_freeze_ms: int = DEFAULT_MAX_FREEZE_MS,
    sequence_gap: int = DEFAULT_SEQUENCE_GAP,
    dry_run: bool = False,
    report: Report = print,
    hold_lock_seconds: float = 0,
) -> CutoverResult:
    """One phase back (or to `to_phase`). From live: the reverse cutover under a freeze (marker in the
    new database, the reverse stream drains it into legacy, legacy sequences moved past the new side's
    maximum, back to canary), then the reverse slot is dropped: the forward stream follows legacy
    again. To legacy: the forward slot is dropped too (it would retain WAL for nobody)."""
    _bounds_check(max_freeze_ms, sequence_gap)
    if to_phase is not None and to_phase not in ROLLBACK_TARGETS:
        raise StepRefused(
            f"--to {to_phase!r} is not a phase to roll back to; use one of {', '.join(ROLLBACK_TARGETS)}."
        )

    def body(
        slice_: Slice, control: ControlSlice, result: CutoverResult, run: CutoverRun | None
    ) -> CutoverResult:
        phase = Phase(control.phase)
        if phase == Phase.RETIRED:
            raise StepRefused(
                f"Slice {slice_.name!r} is retired: its legacy tables are archived and no reverse sync kept "
                "them current, so there is no phase to roll back to."
            )
        if phase == Phase.LEGACY:
            raise StepRefused(f"Slice {slice_.name!r} is in phase legacy; there is nothing to roll back.")
        index = PHASE_ORDER.index(phase)
        target = Phase(to_phase) if to_phase else PHASE_ORDER[index - 1]
        if PHASE_ORDER.index(target) >= index:
            raise StepRefused(
                f"Cannot roll {slice_.name!r} back from {phase} to {target}; pick an earlier phase."
            )
        verb = "would move" if dry_run else "moved"
        if phase == Phase.LIVE:
            _rollback_from_live(slice_, control, result, who, max_freeze_ms, sequence_gap, dry_run, report)
            if result.outcome not in (RunOutcome.COMPLETED, RunOutcome.DRY_RUN):
                return result
            phase = Phase.CANARY
        if target != phase:  # writes are on legacy already: only reads move back
            if not dry_run:
                services.slice_rollback(
                    name=slice_.name, who=who, why=f"rollback run {result.run_id}", to_phase=target
                )
            result.actions.append(
                f"{verb} {slice_.name} back from {phase} to {target}; writes stay on legacy"
            )
        if target == Phase.LEGACY:
            result.actions += _slots_drop(slice_, dry_run=dry_run)
            result.actions.append(
                "with the forward slot gone, syncing again starts with "
                f"`migrate_data backfill --slice {slice_.name} --restart`"
            )
        result.outcome = RunOutcome.DRY_RUN if dry_run else RunOutcome.COMPLETED
        result.to_phase = target
        return result

    return guarded_run(
        slice_name=slice_name,
        kind=RunKind.ROLLBACK,
        who=who,
        dry_run=dry_run,
        max_freeze_ms=max_freeze_ms,
        report=report,
        body=body,
        hold_lock_seconds=hold_lock_seconds,
    )


def _slots_drop(slice_: Slice, *, dry_run: bool) -> list[str]:
    actions = []
    for direction in ("reverse", "forward"):
        actions += capture_teardown(slice_.stream_target(direction), dry_run=dry_run)
    return actions


def _rollback_from_live(
    slice_: Slice,
    control: ControlSlice,
    result: CutoverResult,
    who: str,
    max_freeze_ms: int,
    sequence_gap: int,
    dry_run: bool,
    report: Report,
) -> CutoverResult:
    """The reverse cutover, live -> canary; fills in `result`."""
    dependants = [
        s.name
        for s in ControlSlice.objects.using(selectors.control_alias()).filter(
            phase__in=[Phase.LIVE, Phase.RETIRED]
        )
        if slice_.name in s.requires
    ]
    if dependants:
        raise StepRefused(
            f"Slices {', '.join(dependants)} require {slice_.name!r} and are live: roll them back first."
        )
    _check_proxies(report)
    if not dry_run:
        _state_tables_ready(slice_)
    _check_stream(slice_, "reverse", control.max_sync_lag_seconds, probe=not dry_run, report=report)
    _pre_verify(slice_, dry_run=dry_run, report=report)
    strays = stray_write_count(slice_)
    if strays:
        report(f"note: {strays} stray write(s) in the new database; the rollback keeps them in legacy too")
    moves = sequence_moves(slice_, to_new=False, gap=sequence_gap)
    if dry_run:
        result.actions = _plan_lines(slice_, moves, direction="reverse", max_freeze_ms=max_freeze_ms)
        result.outcome = RunOutcome.DRY_RUN
        return result
    handover = FrozenHandover(slice_, "reverse", who, max_freeze_ms, sequence_gap, result.run_id, report)

    def flip_back(gate: dict[str, Any]) -> None:
        # The rollback clears the freeze in the same transaction: held writes go straight to legacy.
        services.slice_rollback(
            name=slice_.name, who=who, why=f"rollback run {result.run_id}", to_phase=Phase.CANARY, gate=gate
        )

    result.to_phase = Phase.CANARY
    _frozen_handover(handover, result, flip_back)
    if result.outcome == RunOutcome.COMPLETED:
        # Legacy owns the writes again and the reverse stream drained up to the marker; the forward
        # stream follows legacy as before, and nothing but the sync writes the new side's tables.
        result.actions += capture_teardown(slice_.stream_target("reverse"), dry_run=False)
    return result
