"""The phase machine of a slice: operator actions (weight, shadow, pause, promote, rollback, write
freeze and flip) and the gate of each step forward. Each runs under the slice's lock and is audited
(changes.py); a refusal is an OperationRefused whose message says what to do.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from strangler import selectors
from strangler.models import PHASE_ORDER, Phase, ShadowRouteStats, ShadowSample, Slice
from strangler.services.changes import OperationRefused, PlanChange, locked_slice


def slice_set_weight(
    *,
    name: str,
    weight: Decimal,
    who: str,
    why: str = "",
    dry_run: bool = False,
    hold_lock_seconds: float = 0,
) -> PlanChange:
    """Sets the percent of customers whose reads go to the new backend (canary phase only)."""
    if not Decimal(0) <= weight <= Decimal(100):
        raise OperationRefused(f"Weight {weight} is outside 0-100 (percent of customers).")
    with locked_slice(name, hold_lock_seconds) as (alias, slice_, before, finish):
        if slice_.phase != Phase.CANARY:
            raise OperationRefused(
                f"Slice {name!r} is in phase {slice_.phase}; promote it to canary before setting a weight."
            )
        if slice_.paused and weight > slice_.canary_weight:
            raise OperationRefused(f"Slice {name!r} is paused; resume it before raising the weight.")
        slice_.canary_weight = weight.quantize(Decimal("0.01"))
        return finish(action="weight", who=who, why=why, gate={}, dry_run=dry_run)


def slice_set_shadow(
    *,
    name: str,
    enabled: bool,
    who: str,
    sample_rate: float | None = None,
    why: str = "",
    dry_run: bool = False,
    hold_lock_seconds: float = 0,
) -> PlanChange:
    """Turns mirroring of sampled reads to the new backend on or off."""
    if sample_rate is not None and not 0 <= sample_rate <= 1:
        raise OperationRefused(f"Sample rate {sample_rate} must be between 0 and 1.")
    with locked_slice(name, hold_lock_seconds) as (alias, slice_, before, finish):
        if enabled and PHASE_ORDER.index(Phase(slice_.phase)) < PHASE_ORDER.index(Phase.SHADOW):
            raise OperationRefused(
                f"Slice {name!r} is in phase {slice_.phase}: its new database is not in sync yet, "
                "so shadow answers would differ; promote it to shadow first."
            )
        slice_.shadow_enabled = enabled
        if sample_rate is not None:
            slice_.shadow_sample_rate = sample_rate
        return finish(action="shadow", who=who, why=why, gate={}, dry_run=dry_run)


def slice_set_paused(
    *, name: str, paused: bool, who: str, why: str = "", dry_run: bool = False, hold_lock_seconds: float = 0
) -> PlanChange:
    """A paused slice keeps its state: no promotion or weight increase until resumed (rollback stays)."""
    with locked_slice(name, hold_lock_seconds) as (alias, slice_, before, finish):
        slice_.paused = paused
        return finish(action="pause" if paused else "resume", who=who, why=why, gate={}, dry_run=dry_run)


def gate_check(slice_: Slice, target: Phase, *, alias: str, now: datetime) -> tuple[bool, dict[str, Any]]:
    """The gate of the step from the slice's phase to `target`: (passed, figures with the reason)."""
    phase = slice_.phase
    if phase == Phase.LEGACY:
        routes = selectors.route_count(slice_=slice_, alias=alias)
        return routes > 0, {"gate": "plan validated", "routes": routes}
    if phase == Phase.SYNCING:
        lag, verified = slice_.sync_lag_seconds, slice_.sync_verified_at
        ok = verified is not None and lag is not None and lag <= slice_.max_sync_lag_seconds
        return ok, {
            "gate": "verification clean, sync lag under bound",
            "sync_lag_seconds": lag,
            "max_sync_lag_seconds": slice_.max_sync_lag_seconds,
            "sync_verified_at": verified.isoformat() if verified else None,
        }
    if phase == Phase.SHADOW:
        figures = selectors.shadow_totals(slice_name=slice_.name, alias=alias)
        ok = (
            figures["compared"] >= slice_.min_shadow_requests
            and figures["diff_rate"] is not None
            and figures["diff_rate"] <= slice_.max_shadow_diff_rate
        )
        return ok, {
            "gate": "diff rate under bound over N requests",
            **figures,
            "min_shadow_requests": slice_.min_shadow_requests,
            "max_shadow_diff_rate": slice_.max_shadow_diff_rate,
        }
    if phase == Phase.CANARY:
        waiting = selectors.slices_not_live(names=slice_.requires, alias=alias)
        ok = slice_.canary_weight >= 100 and not waiting
        return ok, {
            "gate": "all cohorts on the new backend, required slices live",
            "canary_weight": str(slice_.canary_weight),
            "requires": list(slice_.requires),
            "requires_not_live": waiting,
        }
    if phase == Phase.LIVE:
        soaked = (now - slice_.phase_changed_at).total_seconds()
        return soaked >= slice_.soak_seconds, {
            "gate": "soak time passed",
            "soaked_seconds": round(soaked, 1),
            "soak_seconds": slice_.soak_seconds,
        }
    return False, {"gate": "retired is the last phase"}


def _enter_phase(slice_: Slice, target: Phase, now: datetime, *, alias: str | None = None) -> None:
    if target == Phase.SHADOW and alias is not None:
        # The shadow gate counts the comparisons of THIS shadow period: what an earlier period (or an
        # earlier run) compared says nothing about the new backend as it is now.
        ShadowRouteStats.objects.using(alias).filter(slice_name=slice_.name).delete()
        ShadowSample.objects.using(alias).filter(slice_name=slice_.name).delete()
    slice_.phase = target
    slice_.phase_changed_at = now
    index = PHASE_ORDER.index(target)
    if index <= PHASE_ORDER.index(Phase.CANARY):
        slice_.canary_weight = Decimal(0)
    else:
        slice_.canary_weight = Decimal(100)
    if target == Phase.SHADOW:
        slice_.shadow_enabled = True
    elif index < PHASE_ORDER.index(Phase.SHADOW) or index >= PHASE_ORDER.index(Phase.LIVE):
        slice_.shadow_enabled = False


def slice_promote(
    *,
    name: str,
    who: str,
    why: str = "",
    force: bool = False,
    dry_run: bool = False,
    hold_lock_seconds: float = 0,
    now: datetime | None = None,
) -> PlanChange:
    """Moves the slice one phase forward if its gate passes (or `force` with a reason, audited)."""
    now = now or timezone.now()
    with locked_slice(name, hold_lock_seconds) as (alias, slice_, before, finish):
        if slice_.paused:
            raise OperationRefused(f"Slice {name!r} is paused; resume it before promoting.")
        index = PHASE_ORDER.index(Phase(slice_.phase))
        if index == len(PHASE_ORDER) - 1:
            raise OperationRefused(f"Slice {name!r} is already retired; there is no next phase.")
        target = PHASE_ORDER[index + 1]
        passed, figures = gate_check(slice_, target, alias=alias, now=now)
        gate = {**figures, "passed": passed, "forced": force and not passed}
        if not passed and not force:
            raise OperationRefused(
                f"The gate from {slice_.phase} to {target} did not pass ({_describe(figures)}); "
                "fix that, or use --force with --why to override (audited)."
            )
        if not passed and not why:
            raise OperationRefused("Forcing past a gate needs a reason: add --why.")
        _enter_phase(slice_, target, now, alias=alias)
        return finish(action="promote", who=who, why=why, gate=gate, dry_run=dry_run)


def _describe(figures: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in figures.items())


def slice_rollback(
    *,
    name: str,
    who: str,
    why: str = "",
    to_phase: Phase | None = None,
    gate: dict[str, Any] | None = None,
    dry_run: bool = False,
    hold_lock_seconds: float = 0,
    only_from: Phase | None = None,
    now: datetime | None = None,
) -> PlanChange:
    """Moves the slice back one phase (or to `to_phase`); reads and writes go back to legacy with it.

    `only_from` makes an automatic rollback a no-op when another proxy (or an operator) already moved
    the slice, so several proxies reacting to the same failure roll back once.
    """
    now = now or timezone.now()
    with locked_slice(name, hold_lock_seconds) as (alias, slice_, before, finish):
        if only_from is not None and (slice_.phase != only_from or slice_.canary_weight == 0):
            transaction.set_rollback(True, using=alias)
            return PlanChange("rollback", name, before, before, gate or {}, dry_run=True)
        index = PHASE_ORDER.index(Phase(slice_.phase))
        if to_phase is None:
            if index == 0:
                raise OperationRefused(f"Slice {name!r} is in phase legacy; there is nothing to roll back.")
            target = PHASE_ORDER[index - 1]
        elif to_phase not in PHASE_ORDER or PHASE_ORDER.index(to_phase) >= index:
            raise OperationRefused(
                f"Cannot roll {name!r} back from {slice_.phase} to {str(to_phase)!r}; pick an earlier phase."
            )
        else:
            target = Phase(to_phase)
        _enter_phase(slice_, target, now, alias=alias)
        slice_.write_freeze_until = None
        return finish(action="rollback", who=who, why=why, gate=gate or {}, dry_run=dry_run)


def write_freeze_start(
    *,
    name: str,
    seconds: float,
    who: str,
    why: str = "",
    max_held: int | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PlanChange:
    """Holds writes to the slice's routes in the proxies for at most `seconds` (then they get 503)."""
    if not 0 < seconds <= 300:
        raise OperationRefused(
            f"A write freeze of {seconds} s is outside (0, 300]; keep it short and bounded."
        )
    now = now or timezone.now()
    with locked_slice(name, 0) as (alias, slice_, before, finish):
        if slice_.write_freeze_until and slice_.write_freeze_until > now:
            raise OperationRefused(
                f"Writes to {name!r} are already frozen until {slice_.write_freeze_until}."
            )
        slice_.write_freeze_until = now + timedelta(seconds=seconds)
        if max_held is not None:
            slice_.write_freeze_max_held = max_held
        return finish(
            action="freeze",
            who=who,
            why=why,
            gate={"seconds": seconds, "max_held": slice_.write_freeze_max_held},
            dry_run=dry_run,
        )


def write_freeze_release(
    *,
    name: str,
    who: str,
    why: str = "",
    promote: bool = False,
    gate: dict[str, Any] | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PlanChange:
    """Releases held writes; with `promote` the slice flips one phase forward in the same transaction,
    so held writes are released straight to the new owner (the canary -> live cutover)."""
    now = now or timezone.now()
    with locked_slice(name, 0) as (alias, slice_, before, finish):
        slice_.write_freeze_until = None
        if promote:
            index = PHASE_ORDER.index(Phase(slice_.phase))
            if index == len(PHASE_ORDER) - 1:
                raise OperationRefused(f"Slice {name!r} is retired; there is nothing to flip to.")
            _enter_phase(slice_, PHASE_ORDER[index + 1], now)
        return finish(
            action="flip" if promote else "unfreeze", who=who, why=why, gate=gate or {}, dry_run=dry_run
        )
