"""Control-plane reads: the routing snapshot proxies load, and what operators list and show."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from strangler.models import (
    AuditEntry,
    Backend,
    ControlSettings,
    Route,
    ShadowRouteStats,
    ShadowSample,
    Slice,
)
from strangler.services import control_alias


def routing_version() -> int:
    """The counter bumped by every change; proxies poll it (one indexed row, cheap)."""
    row = (
        ControlSettings.objects.using(control_alias()).filter(id=1).values_list("version", flat=True).first()
    )
    return int(row or 0)


def routing_snapshot() -> dict[str, Any]:
    """Everything a proxy needs to route, as plain data (read in one transaction-consistent pass)."""
    alias = control_alias()
    control = ControlSettings.objects.using(alias).select_related("default_backend").filter(id=1).first()
    slices = list(
        Slice.objects.using(alias).select_related("legacy_backend", "new_backend").prefetch_related("routes")
    )
    return {
        "version": control.version if control else 0,
        "default_backend": (
            {
                "name": control.default_backend.name,
                "urls": control.default_backend.base_urls,
                "health_path": control.default_backend.health_path,
            }
            if control and control.default_backend
            else None
        ),
        "default_exposure": control.default_exposure if control else "public",
        "slices": [
            {
                "name": s.name,
                "phase": s.phase,
                "legacy": {
                    "name": s.legacy_backend.name,
                    "urls": s.legacy_backend.base_urls,
                    "health_path": s.legacy_backend.health_path,
                },
                "new": {
                    "name": s.new_backend.name,
                    "urls": s.new_backend.base_urls,
                    "health_path": s.new_backend.health_path,
                },
                "canary_weight": float(s.canary_weight),
                "shadow_enabled": s.shadow_enabled,
                "shadow_sample_rate": s.shadow_sample_rate,
                "shadow_compare_headers": s.shadow_compare_headers,
                "shadow_ignore": s.shadow_ignore,
                "pin_after_write_seconds": s.pin_after_write_seconds,
                "max_error_rate_delta": s.max_error_rate_delta,
                "max_p99_ratio": s.max_p99_ratio,
                "p99_slack_ms": s.p99_slack_ms,
                "rollback_intervals": s.rollback_intervals,
                "min_interval_requests": s.min_interval_requests,
                "write_freeze_until": s.write_freeze_until.timestamp() if s.write_freeze_until else None,
                "write_freeze_max_held": s.write_freeze_max_held,
                "routes": [
                    {
                        "name": r.name,
                        "prefix": r.prefix,
                        "pattern": r.pattern,
                        "methods": r.methods,
                        "exposure": r.exposure,
                        "position": r.position,
                    }
                    for r in s.routes.all()
                ],
            }
            for s in slices
        ],
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
