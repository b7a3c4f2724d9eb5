"""Control-plane writes: loading a plan and every operator action on a slice, each audited.

Operators acting at once are serialised by `SELECT ... FOR UPDATE` on the slice row (and on the
single control-settings row for plan loads), so the second action sees the first one's result as its
"from" state. Every change bumps the routing version that proxies poll.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import structlog
from django.db import router, transaction
from django.db.models import F, Sum, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from strangler.models import (
    PHASE_ORDER,
    AuditEntry,
    Backend,
    ControlSettings,
    Phase,
    Route,
    ShadowRouteStats,
    ShadowSample,
    Slice,
)
from strangler.plan import Plan

logger = structlog.get_logger(__name__)
SHADOW_SAMPLES_KEPT_PER_ROUTE = 20


class OperationRefused(Exception):
    """The action is not allowed in the slice's current state; the message says what to do."""


@dataclass
class Change:
    action: str
    slice_name: str
    from_state: dict[str, Any]
    to_state: dict[str, Any]
    gate: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    audit_id: int | None = None

    @property
    def changed(self) -> bool:
        return self.from_state != self.to_state


def control_alias() -> str:
    return router.db_for_write(Slice) or "default"


def slice_state(slice_: Slice) -> dict[str, Any]:
    return {
        "phase": slice_.phase,
        "canary_weight": str(Decimal(slice_.canary_weight).quantize(Decimal("0.01"))),
        "shadow_enabled": slice_.shadow_enabled,
        "shadow_sample_rate": slice_.shadow_sample_rate,
        "paused": slice_.paused,
        "write_freeze_until": slice_.write_freeze_until.isoformat() if slice_.write_freeze_until else None,
    }


def _bump_version(alias: str) -> int:
    """Versions only grow, also across a wiped table (a restored backup, a test flush): the next one is
    at least the current epoch milliseconds, so a proxy never mistakes a new table for the one it has."""
    settings_row, _ = ControlSettings.objects.using(alias).select_for_update().get_or_create(id=1)
    settings_row.version = Greatest(F("version") + 1, Value(int(time.time() * 1000)))
    settings_row.save(update_fields=["version", "updated_at"])
    settings_row.refresh_from_db(fields=["version"])
    return int(settings_row.version)


def _lock_slice(alias: str, name: str, hold_lock_seconds: float) -> Slice:
    try:
        slice_ = Slice.objects.using(alias).select_for_update().get(name=name)
    except Slice.DoesNotExist:
        known = ", ".join(Slice.objects.using(alias).values_list("name", flat=True)) or "none"
        raise OperationRefused(f"There is no slice {name!r} (known: {known}); load the plan first.") from None
    if hold_lock_seconds:
        # Lets a test (or an operator rehearsal) prove that a second action waits for the first.
        time.sleep(hold_lock_seconds)
    return slice_


@contextmanager
def _locked_slice(
    name: str, hold_lock_seconds: float
) -> Iterator[tuple[str, Slice, dict[str, Any], Callable[..., Change]]]:
    """A transaction on the control database holding the slice's row lock, which serialises
    operators (and proxies) acting on one slice. Yields the alias, the slice, its state before,
    and `finish(action=, who=, why=, gate=, dry_run=)` that audits and saves the change."""
    alias = control_alias()
    with transaction.atomic(using=alias):
        slice_ = _lock_slice(alias, name, hold_lock_seconds)
        before = slice_state(slice_)
        yield alias, slice_, before, partial(_finish, alias=alias, slice_=slice_, before=before)


def _finish(
    *,
    alias: str,
    action: str,
    slice_: Slice | None,
    before: dict[str, Any],
    who: str,
    why: str,
    gate: dict[str, Any],
    dry_run: bool,
    after: dict[str, Any] | None = None,
) -> Change:
    """Audits and saves the change (or rolls it back for a dry run); `after` defaults to the slice's state."""
    if after is None:
        assert slice_ is not None, "a change without a slice names its own after-state"
        after = slice_state(slice_)
    name = slice_.name if slice_ else ""
    change = Change(action, name, before, after, gate, dry_run)
    if dry_run:
        transaction.set_rollback(True, using=alias)
        return change
    if slice_ is not None:
        slice_.save(using=alias)
    entry = AuditEntry.objects.using(alias).create(
        who=who, action=action, slice_name=name, from_state=before, to_state=after, why=why, gate=gate
    )
    _bump_version(alias)
    change.audit_id = entry.id
    logger.info("strangler.changed", action=action, slice=name, who=who, to_state=after, gate=gate)
    return change


def slice_set_weight(
    *,
    name: str,
    weight: Decimal,
    who: str,
    why: str = "",
    dry_run: bool = False,
    hold_lock_seconds: float = 0,
) -> Change:
    """Sets the percent of customers whose reads go to the new backend (canary phase only)."""
    if not Decimal(0) <= weight <= Decimal(100):
        raise OperationRefused(f"Weight {weight} is outside 0-100 (percent of customers).")
    with _locked_slice(name, hold_lock_seconds) as (alias, slice_, before, finish):
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
) -> Change:
    """Turns mirroring of sampled reads to the new backend on or off."""
    if sample_rate is not None and not 0 <= sample_rate <= 1:
        raise OperationRefused(f"Sample rate {sample_rate} must be between 0 and 1.")
    with _locked_slice(name, hold_lock_seconds) as (alias, slice_, before, finish):
        if enabled and PHASE_ORDER.index(slice_.phase) < PHASE_ORDER.index(Phase.SHADOW):
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
) -> Change:
    """A paused slice keeps its state: no promotion or weight increase until resumed (rollback stays)."""
    with _locked_slice(name, hold_lock_seconds) as (alias, slice_, before, finish):
        slice_.paused = paused
        return finish(action="pause" if paused else "resume", who=who, why=why, gate={}, dry_run=dry_run)


def _shadow_figures(slice_: Slice, alias: str) -> dict[str, Any]:
    totals = (
        ShadowRouteStats.objects.using(alias)
        .filter(slice_name=slice_.name)
        .aggregate(compared=Sum("compared"), differing=Sum("differing"))
    )
    compared, differing = totals["compared"] or 0, totals["differing"] or 0
    return {
        "compared": compared,
        "differing": differing,
        "diff_rate": differing / compared if compared else None,
    }


def gate_check(slice_: Slice, target: str, *, alias: str, now: datetime) -> tuple[bool, dict[str, Any]]:
    """The gate of the step from the slice's phase to `target`: (passed, figures with the reason)."""
    phase = slice_.phase
    if phase == Phase.LEGACY:
        routes = Route.objects.using(alias).filter(slice=slice_).count()
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
        figures = _shadow_figures(slice_, alias)
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
        ok = slice_.canary_weight >= 100
        return ok, {"gate": "all cohorts on the new backend", "canary_weight": str(slice_.canary_weight)}
    if phase == Phase.LIVE:
        soaked = (now - slice_.phase_changed_at).total_seconds()
        return soaked >= slice_.soak_seconds, {
            "gate": "soak time passed",
            "soaked_seconds": round(soaked, 1),
            "soak_seconds": slice_.soak_seconds,
        }
    return False, {"gate": "retired is the last phase"}


def _enter_phase(slice_: Slice, target: str, now: datetime) -> None:
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
) -> Change:
    """Moves the slice one phase forward if its gate passes (or `force` with a reason, audited)."""
    now = now or timezone.now()
    with _locked_slice(name, hold_lock_seconds) as (alias, slice_, before, finish):
        if slice_.paused:
            raise OperationRefused(f"Slice {name!r} is paused; resume it before promoting.")
        index = PHASE_ORDER.index(slice_.phase)
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
        _enter_phase(slice_, target, now)
        return finish(action="promote", who=who, why=why, gate=gate, dry_run=dry_run)


def _describe(figures: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in figures.items())


def slice_rollback(
    *,
    name: str,
    who: str,
    why: str = "",
    to_phase: str | None = None,
    gate: dict[str, Any] | None = None,
    dry_run: bool = False,
    hold_lock_seconds: float = 0,
    only_from: str | None = None,
    now: datetime | None = None,
) -> Change:
    """Moves the slice back one phase (or to `to_phase`); reads and writes go back to legacy with it.

    `only_from` makes an automatic rollback a no-op when another proxy (or an operator) already moved
    the slice, so several proxies reacting to the same failure roll back once.
    """
    now = now or timezone.now()
    with _locked_slice(name, hold_lock_seconds) as (alias, slice_, before, finish):
        if only_from is not None and (slice_.phase != only_from or slice_.canary_weight == 0):
            transaction.set_rollback(True, using=alias)
            return Change("rollback", name, before, before, gate or {}, dry_run=True)
        index = PHASE_ORDER.index(slice_.phase)
        if to_phase is None:
            if index == 0:
                raise OperationRefused(f"Slice {name!r} is in phase legacy; there is nothing to roll back.")
            target = PHASE_ORDER[index - 1]
        elif to_phase not in PHASE_ORDER or PHASE_ORDER.index(to_phase) >= index:
            raise OperationRefused(
                f"Cannot roll {name!r} back from {slice_.phase} to {to_phase!r}; pick an earlier phase."
            )
        else:
            target = to_phase
        _enter_phase(slice_, target, now)
        slice_.write_freeze_until = None
        return finish(action="rollback", who=who, why=why, gate=gate or {}, dry_run=dry_run)


def slice_report_sync(*, name: str, lag_seconds: float, verified_at: datetime | None) -> None:
    """The data-migration toolkit reports sync lag and the last clean verification (a gate input)."""
    alias = control_alias()
    Slice.objects.using(alias).filter(name=name).update(
        sync_lag_seconds=lag_seconds, sync_verified_at=verified_at
    )


def backend_health_record(*, name: str, healthy: bool) -> None:
    """A proxy saw the backend's health change (last observation wins; proxies route on their own)."""
    Backend.objects.using(control_alias()).filter(name=name).update(
        healthy=healthy, checked_at=timezone.now()
    )


def write_freeze_start(
    *,
    name: str,
    seconds: float,
    who: str,
    why: str = "",
    max_held: int | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> Change:
    """Holds writes to the slice's routes in the proxies for at most `seconds` (then they get 503)."""
    if not 0 < seconds <= 300:
        raise OperationRefused(
            f"A write freeze of {seconds} s is outside (0, 300]; keep it short and bounded."
        )
    now = now or timezone.now()
    with _locked_slice(name, 0) as (alias, slice_, before, finish):
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
) -> Change:
    """Releases held writes; with `promote` the slice flips one phase forward in the same transaction,
    so held writes are released straight to the new owner (the canary -> live cutover)."""
    now = now or timezone.now()
    with _locked_slice(name, 0) as (alias, slice_, before, finish):
        slice_.write_freeze_until = None
        if promote:
            index = PHASE_ORDER.index(slice_.phase)
            if index == len(PHASE_ORDER) - 1:
                raise OperationRefused(f"Slice {name!r} is retired; there is nothing to flip to.")
            _enter_phase(slice_, PHASE_ORDER[index + 1], now)
        return finish(
            action="flip" if promote else "unfreeze", who=who, why=why, gate=gate or {}, dry_run=dry_run
        )


def plan_apply(*, plan: Plan, who: str, why: str = "", dry_run: bool = False) -> Change:
    """Creates or updates backends, slices and routes from a validated plan.

    Phases, weights and shadow switches of existing slices are kept: the plan says what exists, the
    operator commands say where it stands. A slice past legacy cannot be dropped from the plan.
    """
    alias = control_alias()
    with transaction.atomic(using=alias):
        control, _ = ControlSettings.objects.using(alias).select_for_update().get_or_create(id=1)
        before = {
            "plan_digest": control.plan_digest,
            "slices": sorted(Slice.objects.using(alias).values_list("name", flat=True)),
        }
        backends: dict[str, Backend] = {}
        for backend_spec in plan.backends:
            backend, _ = Backend.objects.using(alias).update_or_create(
                name=backend_spec.name,
                defaults={"base_urls": backend_spec.urls, "health_path": backend_spec.health_path},
            )
            backends[backend_spec.name] = backend
        planned = {s.name for s in plan.slices}
        for stale in Slice.objects.using(alias).exclude(name__in=planned):
            if stale.phase != Phase.LEGACY:
                raise OperationRefused(
                    f"Slice {stale.name!r} is in phase {stale.phase} but missing from the plan; "
                    "roll it back to legacy before removing it."
                )
            stale.delete()
        for spec in plan.slices:
            slice_, created = Slice.objects.using(alias).get_or_create(
                name=spec.name,
                defaults={"legacy_backend": backends[spec.legacy], "new_backend": backends[spec.service]},
            )
            if not created and slice_.phase != Phase.LEGACY and slice_.new_backend.name != spec.service:
                raise OperationRefused(
                    f"Slice {spec.name!r} is in phase {slice_.phase}; its service cannot change from "
                    f"{slice_.new_backend.name!r} to {spec.service!r} before it is rolled back to legacy."
                )
            slice_.legacy_backend = backends[spec.legacy]
            slice_.new_backend = backends[spec.service]
            slice_.tables = spec.tables
            for model_field, value in spec.settings.items():
                setattr(slice_, model_field, value)
            slice_.save(using=alias)
            Route.objects.using(alias).filter(slice=slice_).delete()
            Route.objects.using(alias).bulk_create(
                Route(
                    slice=slice_,
                    name=r.name,
                    prefix=r.prefix,
                    pattern=r.pattern,
                    methods=r.methods,
                    exposure=r.exposure,
                    position=i,
                )
                for i, r in enumerate(spec.routes)
            )
        Backend.objects.using(alias).exclude(name__in=backends).filter(
            legacy_slices=None, new_slices=None
        ).delete()
        control.default_backend = backends[plan.default_backend]
        control.default_exposure = plan.default_exposure
        control.plan_digest = plan.digest
        control.save(using=alias)
        after = {"plan_digest": plan.digest, "slices": sorted(planned)}
        return _finish(
            alias=alias,
            action="plan.load",
            slice_=None,
            before=before,
            after=after,
            who=who,
            why=why,
            gate={
                "backends": len(plan.backends),
                "slices": len(plan.slices),
                "routes": sum(len(s.routes) for s in plan.slices),
            },
            dry_run=dry_run,
        )


@dataclass
class ShadowResult:
    slice_name: str
    route_name: str
    method: str
    path: str
    differences: list[str]
    failed: bool = False


def shadow_results_record(*, results: list[ShadowResult]) -> None:
    """Adds a proxy's batch of shadow comparisons to the per-route totals and keeps the newest samples."""
    if not results:
        return
    alias = control_alias()
    totals: dict[tuple[str, str], list[int]] = {}
    for r in results:
        counts = totals.setdefault((r.slice_name, r.route_name), [0, 0, 0])
        counts[0] += 0 if r.failed else 1
        counts[1] += 1 if r.differences and not r.failed else 0
        counts[2] += 1 if r.failed else 0
    with transaction.atomic(using=alias):
        for (slice_name, route_name), (compared, differing, failed) in sorted(totals.items()):
            stats, _ = (
                ShadowRouteStats.objects.using(alias)
                .select_for_update()
                .get_or_create(slice_name=slice_name, route_name=route_name)
            )
            stats.compared = F("compared") + compared
            stats.differing = F("differing") + differing
            stats.failed = F("failed") + failed
            stats.save(using=alias)
        samples = [r for r in results if r.differences and not r.failed][-SHADOW_SAMPLES_KEPT_PER_ROUTE:]
        ShadowSample.objects.using(alias).bulk_create(
            ShadowSample(
                slice_name=r.slice_name,
                route_name=r.route_name,
                method=r.method,
                path=r.path,
                differences=r.differences[:20],
            )
            for r in samples
        )
        for slice_name, route_name in {(r.slice_name, r.route_name) for r in samples}:
            keep = ShadowSample.objects.using(alias).filter(slice_name=slice_name, route_name=route_name)
            old = keep.values_list("id", flat=True)[SHADOW_SAMPLES_KEPT_PER_ROUTE:]
            ShadowSample.objects.using(alias).filter(id__in=list(old)).delete()


def shadow_stats_reset(*, name: str, who: str, why: str = "") -> None:
    """Starts a fresh comparison window (for instance after a fix in the new service)."""
    alias = control_alias()
    with transaction.atomic(using=alias):
        _lock_slice(alias, name, 0)
        ShadowRouteStats.objects.using(alias).filter(slice_name=name).delete()
        ShadowSample.objects.using(alias).filter(slice_name=name).delete()
        AuditEntry.objects.using(alias).create(who=who, action="shadow.reset", slice_name=name, why=why)
