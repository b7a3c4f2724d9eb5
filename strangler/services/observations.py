"""What the data plane and the data-migration toolkit report to the control plane: sync lag and
clean verifications, backend health seen by proxies, shadow comparison results, and each proxy's
heartbeat with its write-freeze acknowledgements. These are gate inputs, not operator changes: they
are not audited (a reset of the shadow window is).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connections, transaction
from django.db.models import F
from django.utils import timezone

from strangler import selectors
from strangler.models import AuditEntry, Backend, ProxyInstance, ShadowRouteStats, ShadowSample, Slice
from strangler.services.changes import slice_lock

SHADOW_SAMPLES_KEPT_PER_ROUTE = 20


def slice_report_sync(*, name: str, lag_seconds: float, verified_at: datetime | None) -> None:
    """The data-migration toolkit reports sync lag and the last clean verification (a gate input)."""
    alias = selectors.control_alias()
    Slice.objects.using(alias).filter(name=name).update(
        sync_lag_seconds=lag_seconds, sync_verified_at=verified_at
    )


def backend_health_record(*, name: str, healthy: bool) -> None:
    """A proxy saw the backend's health change (last observation wins; proxies route on their own)."""
    Backend.objects.using(selectors.control_alias()).filter(name=name).update(
        healthy=healthy, checked_at=timezone.now()
    )


# A proxy silent this long is taken for gone and its row removed (it reports about once a second).
PROXY_FORGOTTEN_AFTER = timedelta(hours=1)


def proxy_heartbeat_record(
    *, identity: str, routing_version: int, started_at: datetime, freeze_acks: dict[str, int]
) -> None:
    """A proxy's heartbeat: the routing version it routes with and, per frozen slice, the version in
    which it acknowledged the freeze. One statement; the time is the database's, so that the readers'
    "seen in the last seconds" does not depend on the proxies' clocks."""
    with connections[selectors.control_alias()].cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {ProxyInstance._meta.db_table} "
            "(identity, routing_version, started_at, heartbeat_at, freeze_acks) "
            "VALUES (%s, %s, %s, now(), %s::jsonb) ON CONFLICT (identity) DO UPDATE SET "
            "routing_version = excluded.routing_version, heartbeat_at = excluded.heartbeat_at, "
            "freeze_acks = excluded.freeze_acks",
            [identity, routing_version, started_at, json.dumps(freeze_acks)],
        )


def proxy_gone_record(*, identity: str) -> None:
    """A proxy stopping cleanly leaves the set a cutover waits for; long-silent ones are dropped too."""
    instances = ProxyInstance.objects.using(selectors.control_alias())
    instances.filter(identity=identity).delete()
    instances.filter(heartbeat_at__lt=timezone.now() - PROXY_FORGOTTEN_AFTER).delete()


@dataclass(frozen=True)
class ShadowResult:
    """One comparison a proxy made of a mirrored read (reported in batches)."""

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
    alias = selectors.control_alias()
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
    alias = selectors.control_alias()
    with transaction.atomic(using=alias):
        slice_lock(alias, name, 0)
        ShadowRouteStats.objects.using(alias).filter(slice_name=name).delete()
        ShadowSample.objects.using(alias).filter(slice_name=name).delete()
        AuditEntry.objects.using(alias).create(who=who, action="shadow.reset", slice_name=name, why=why)
