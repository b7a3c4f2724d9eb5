"""Control-plane reads: the routing snapshot proxies load, the figures gates read, and what
operators list and show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet, Sum
from django.db.models.functions import Now

from config.routers import model_database_alias
from strangler.models import (
    AuditEntry,
    Backend,
    ControlSettings,
    Exposure,
    Phase,
    ProxyInstance,
    Route,
    ShadowRouteStats,
    ShadowSample,
    Slice,
)
from strangler.routing_snapshot import (
    BackendSnapshot,
    RollbackBounds,
    RouteSnapshot,
    RoutingSnapshot,
    SliceSnapshot,
)


def control_alias() -> str:
    """The connection alias of the control database in this process."""
    return model_database_alias(Slice)


def routing_version() -> int:
    """The counter bumped by every change; proxies poll it (one indexed row, cheap)."""
    row = (
        ControlSettings.objects.using(control_alias()).filter(id=1).values_list("version", flat=True).first()
    )
    return int(row or 0)


def _backend(backend: Backend) -> BackendSnapshot:
    return BackendSnapshot(backend.name, tuple(backend.base_urls), backend.health_path)


def _slice_snapshot(s: Slice) -> SliceSnapshot:
    return SliceSnapshot(
        name=s.name,
        phase=Phase(s.phase),
        legacy=_backend(s.legacy_backend),
        new=_backend(s.new_backend),
        canary_weight=float(s.canary_weight),
        shadow_enabled=s.shadow_enabled,
        shadow_sample_rate=s.shadow_sample_rate,
        shadow_compare_headers=tuple(s.shadow_compare_headers),
        shadow_ignore={prefix: tuple(paths) for prefix, paths in s.shadow_ignore.items()},
        pin_after_write_seconds=s.pin_after_write_seconds,
        rollback=RollbackBounds(
            max_error_rate_delta=s.max_error_rate_delta,
            max_p99_ratio=s.max_p99_ratio,
            p99_slack_ms=s.p99_slack_ms,
            rollback_intervals=s.rollback_intervals,
            min_interval_requests=s.min_interval_requests,
        ),
        write_freeze_until=s.write_freeze_until.timestamp() if s.write_freeze_until else None,
        write_freeze_max_held=s.write_freeze_max_held,
        routes=tuple(
            RouteSnapshot(
                name=r.name,
                prefix=r.prefix,
                pattern=r.pattern,
                methods=tuple(r.methods),
                exposure=Exposure(r.exposure),
                position=r.position,
                read_only=r.read_only,
                sunset=r.sunset.timestamp() if r.sunset else None,
            )
            for r in s.routes.all()
        ),
    )


def routing_snapshot() -> RoutingSnapshot:
    """Everything a proxy (or the nginx export) needs to route, read in one pass."""
    alias = control_alias()
    control = ControlSettings.objects.using(alias).select_related("default_backend").filter(id=1).first()
    slices = (
        Slice.objects.using(alias).select_related("legacy_backend", "new_backend").prefetch_related("routes")
    )
    return RoutingSnapshot(
        version=control.version if control else 0,
        default_backend=_backend(control.default_backend) if control and control.default_backend else None,
        default_exposure=Exposure(control.default_exposure) if control else Exposure.PUBLIC,
        slices=tuple(_slice_snapshot(s) for s in slices),
    )


def slice_state(slice_: Slice) -> dict[str, Any]:
    """What an operator changes on a slice, as the audit log records it (from and to)."""
    return {
        "phase": slice_.phase,
        "canary_weight": str(Decimal(slice_.canary_weight).quantize(Decimal("0.01"))),
        "shadow_enabled": slice_.shadow_enabled,
        "shadow_sample_rate": slice_.shadow_sample_rate,
        "paused": slice_.paused,
        "write_freeze_until": slice_.write_freeze_until.isoformat() if slice_.write_freeze_until else None,
    }


def slice_names(*, alias: str) -> list[str]:
    return sorted(Slice.objects.using(alias).values_list("name", flat=True))


@dataclass(frozen=True)
class FreezeAcknowledgement:
    """Where the proxies stand on a slice's write freeze of routing version `version`."""

    version: int
    acknowledged: list[str]  # identities of the proxies seen recently that acknowledged it
    pending: dict[str, int]  # the others: identity -> routing version they route with

    @property
    def complete(self) -> bool:
        return not self.pending


def proxies_seen(*, seen_seconds: float) -> list[str]:
    """The proxies heard from in the last `seen_seconds` (by the database's clock)."""
    recent = ProxyInstance.objects.using(control_alias()).filter(
        heartbeat_at__gte=Now() - timedelta(seconds=seen_seconds)
    )
    return sorted(recent.values_list("identity", flat=True))


def freeze_acknowledgement(*, slice_name: str, version: int, seen_seconds: float) -> FreezeAcknowledgement:
    """Which proxies seen in the last `seen_seconds` (by the database's clock) acknowledged the
    slice's freeze in a routing version >= `version`: they loaded it and have no write to the slice
    in flight. A proxy that stopped cleanly has left the set; one killed leaves it after seen_seconds."""
    acknowledged: list[str] = []
    pending: dict[str, int] = {}
    recent = ProxyInstance.objects.using(control_alias()).filter(
        heartbeat_at__gte=Now() - timedelta(seconds=seen_seconds)
    )
    for identity, loaded, acks in recent.values_list("identity", "routing_version", "freeze_acks"):
        if int(acks.get(slice_name, 0)) >= version:
            acknowledged.append(identity)
        else:
            pending[identity] = loaded
    return FreezeAcknowledgement(version, sorted(acknowledged), pending)


def slices_not_live(*, names: list[str], alias: str) -> dict[str, str]:
    """Of the named slices, those not live or retired yet, with their phase ("missing" when unknown)."""
    phases = dict(Slice.objects.using(alias).filter(name__in=names).values_list("name", "phase"))
    return {
        name: phases.get(name, "missing")
        for name in names
        if phases.get(name) not in (Phase.LIVE, Phase.RETIRED)
    }


def route_count(*, slice_: Slice, alias: str) -> int:
    return Route.objects.using(alias).filter(slice=slice_).count()


def shadow_totals(*, slice_name: str, alias: str) -> dict[str, Any]:
    """Shadow comparisons of a slice summed over its routes and every proxy (a gate input)."""
    totals = (
        ShadowRouteStats.objects.using(alias)
        .filter(slice_name=slice_name)
        .aggregate(compared=Sum("compared"), differing=Sum("differing"))
    )
    compared, differing = totals["compared"] or 0, totals["differing"] or 0
    return {
        "compared": compared,
        "differing": differing,
        "diff_rate": differing / compared if compared else None,
    }


def backend_list() -> QuerySet[Backend]:
    return Backend.objects.using(control_alias()).order_by("name")


def slice_list() -> QuerySet[Slice]:
    return (
        Slice.objects.using(control_alias()).select_related("legacy_backend", "new_backend").order_by("name")
    )


def route_list(*, slice_name: str | None = None) -> QuerySet[Route]:
    routes = Route.objects.using(control_alias()).select_related("slice").order_by("slice__name", "position")
    return routes.filter(slice__name=slice_name) if slice_name else routes


def audit_list(*, slice_name: str | None = None, limit: int = 50) -> list[AuditEntry]:
    entries = AuditEntry.objects.using(control_alias()).order_by("-at", "-id")
    if slice_name:
        entries = entries.filter(slice_name=slice_name)
    return list(entries[:limit])


def shadow_report(*, slice_name: str | None = None, samples: int = 3) -> list[dict[str, Any]]:
    alias = control_alias()
    stats = ShadowRouteStats.objects.using(alias).order_by("slice_name", "route_name")
    if slice_name:
        stats = stats.filter(slice_name=slice_name)
    report = []
    for row in stats:
        kept = ShadowSample.objects.using(alias).filter(slice_name=row.slice_name, route_name=row.route_name)
        report.append(
            {
                "slice": row.slice_name,
                "route": row.route_name,
                "compared": row.compared,
                "differing": row.differing,
                "failed": row.failed,
                "diff_rate": row.differing / row.compared if row.compared else None,
                "samples": [
                    {"at": s.at.isoformat(), "method": s.method, "path": s.path, "differences": s.differences}
                    for s in kept[:samples]
                ],
            }
        )
    return report
