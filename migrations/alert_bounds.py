"""The bounds the alert rules compare with, read from where the toolkit enforces them: each slice's
gates and rollback bounds (migration plan, else the Slice model's defaults), the cutover's freeze
bound, CDC's retained-WAL bound and the ALERT_* settings. Registered as OBSERVABILITY_ALERT_BOUNDS."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from migrations.cutover import DEFAULT_MAX_FREEZE_MS
from ops.alert_rules import AlertBounds, SliceBounds
from strangler.models import Slice
from strangler.plan import plan_load_file


def _default(name: str) -> float:
    field = Slice._meta.get_field(name)
    assert isinstance(field, models.Field)
    return float(field.get_default())


def alert_bounds() -> AlertBounds:
    """Raises strangler.plan.PlanError when the plan file (STRANGLER_PLAN_FILE) is invalid."""
    plan = plan_load_file(settings.STRANGLER_PLAN_FILE)
    slices = []
    for spec in plan.slices:
        bound = {**{f: _default(f) for f in _SLICE_FIELDS}, **spec.settings}
        slices.append(
            SliceBounds(
                name=spec.name,
                max_error_rate_delta=float(bound["max_error_rate_delta"]),
                max_p99_ratio=float(bound["max_p99_ratio"]),
                p99_slack_seconds=float(bound["p99_slack_ms"]) / 1000,
                max_sync_lag_seconds=float(bound["max_sync_lag_seconds"]),
            )
        )
    return AlertBounds(
        slices=slices,
        legacy_backends=sorted({spec.legacy for spec in plan.slices} or {plan.default_backend}),
        max_freeze_seconds=DEFAULT_MAX_FREEZE_MS / 1000,
        slice_max_p99_seconds=settings.ALERT_SLICE_MAX_P99_SECONDS,
        cdc_max_lag_bytes=settings.ALERT_CDC_MAX_LAG_BYTES,
        cdc_max_retained_wal_bytes=settings.CDC_MAX_RETAINED_WAL_BYTES,
        cdc_max_commit_to_publish_seconds=settings.ALERT_CDC_MAX_COMMIT_TO_PUBLISH_SECONDS,
        consumer_max_ready=settings.ALERT_CONSUMER_MAX_READY,
        consumer_lag_minutes=settings.ALERT_CONSUMER_LAG_MINUTES,
        outbox_max_rows=settings.ALERT_OUTBOX_MAX_ROWS,
        runbook_base_url=settings.ALERT_RUNBOOK_BASE_URL,
    )


_SLICE_FIELDS = ("max_error_rate_delta", "max_p99_ratio", "p99_slack_ms", "max_sync_lag_seconds")
