"""Prometheus alert rules for what pages an operator, rendered from the bounds the toolkit already
enforces (the plan's gates and rollback bounds per slice, the cutover's freeze bound, CDC's retained-WAL
bound) so that an alert fires where the toolkit itself would stop or roll back.

Per-slice bounds become constant recording rules (`strangler_slice_bound:*{slice=...}`), so each alert
is ONE rule that compares a slice's figures with its own bound by joining on the `slice` label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

# Where an alert's runbook lives: `<runbook base>#<anchor>`, one anchor per alert in the doc.
RUNBOOK_ANCHOR_PREFIX = "runbook-"


@dataclass(frozen=True)
class SliceBounds:
    """What the canary analysis and the sync gate allow one slice (plan value, else the model's default)."""

    name: str
    max_error_rate_delta: float
    max_p99_ratio: float
    p99_slack_seconds: float
    max_sync_lag_seconds: float


@dataclass(frozen=True)
class AlertBounds:
    slices: list[SliceBounds]
    legacy_backends: list[str]  # backend names that are some slice's legacy side
    max_freeze_seconds: float  # must be a bucket bound of strangler_freeze_seconds
    slice_max_p99_seconds: float  # a slice's new backend when legacy serves none of it (live)
    cdc_max_lag_bytes: int
    cdc_max_retained_wal_bytes: int
    cdc_max_commit_to_publish_seconds: float
    consumer_max_ready: int
    consumer_lag_minutes: int
    outbox_max_rows: int
    runbook_base_url: str


def _le(bound: float) -> str:
    """A histogram bucket's `le` label as prometheus_client writes it (1 -> "1.0")."""
    return repr(float(bound))


# A labelled counter's child appears at its first increment, which increase() never sees: a series
# born in the last NEW_SERIES_WINDOW counts too, when Prometheus already scraped its target before
# (else every old non-zero counter would page after Prometheus itself restarts).
NEW_SERIES_WINDOW = "2m"


def _born(expr: str, metric: str) -> str:
    window = NEW_SERIES_WINDOW
    return f"(({expr} unless {metric} offset {window}) and on (job, instance) (up offset {window}))"


def _appeared_or_increased(metric: str, window: str) -> str:
    """Series of counter `metric` that grew within `window`, including series born just now."""
    return f"increase({metric}[{window}]) > 0\nor {_born(metric, metric)} + 0 > 0"


def _alert(
    bounds: AlertBounds,
    name: str,
    expr: str,
    *,
    duration: str,
    severity: str,
    keep_firing_for: str = "",
    summary: str,
    description: str,
) -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if duration != "0m":
        rule["for"] = duration
    if keep_firing_for:
        rule["keep_firing_for"] = keep_firing_for  # a one-off event pages for this long, then resolves
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {
        "summary": summary,
        "description": description,
        "runbook_url": f"{bounds.runbook_base_url}#{RUNBOOK_ANCHOR_PREFIX}{name.lower()}",
    }
    return rule


def _slice_bound_rules(bounds: AlertBounds) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for slice_ in sorted(bounds.slices, key=lambda s: s.name):
        for field, value in (
            ("max_error_rate_delta", slice_.max_error_rate_delta),
            ("max_p99_ratio", slice_.max_p99_ratio),
            ("p99_slack_seconds", slice_.p99_slack_seconds),
            ("max_p99_seconds", bounds.slice_max_p99_seconds),
            ("max_sync_lag_seconds", slice_.max_sync_lag_seconds),
        ):
            rules.append(
                {
                    "record": f"strangler_slice_bound:{field}",
                    "expr": f"vector({value:g})",
                    "labels": {"slice": slice_.name},
                }
            )
    return rules


def _slice_figure_rules(bounds: AlertBounds) -> list[dict[str, Any]]:
    legacy = "|".join(sorted(bounds.legacy_backends))
    new, old = f'backend!~"{legacy}"', f'backend=~"{legacy}"'
    requests, latency = "strangler_proxy_requests_total", "strangler_proxy_upstream_seconds_bucket"

    def error_ratio(side: str) -> str:
        # A side with traffic but no 5xx series has ratio 0, not no ratio; 0/0 (no traffic) is dropped.
        total = f"sum by (slice) (rate({requests}{{{side}}}[5m]))"
        errors = f'sum by (slice) (rate({requests}{{{side},status=~"5.."}}[5m]))'
        return f"(({errors} or 0 * {total}) / {total}) >= 0"

    def p99(side: str) -> str:
        return f"histogram_quantile(0.99, sum by (slice, le) (rate({latency}{{{side}}}[5m]))) >= 0"

    return [
        {"record": "strangler_slice:new_error_ratio:rate5m", "expr": error_ratio(new)},
        {"record": "strangler_slice:legacy_error_ratio:rate5m", "expr": error_ratio(old)},
        {"record": "strangler_slice:new_p99_seconds:rate5m", "expr": p99(new)},
        {"record": "strangler_slice:legacy_p99_seconds:rate5m", "expr": p99(old)},
    ]


def _slice_alerts(bounds: AlertBounds) -> list[dict[str, Any]]:
    freeze_bound = _le(bounds.max_freeze_seconds)
    over_bound_now = (
        "strangler_freeze_seconds_count - ignoring (le) "
        f'strangler_freeze_seconds_bucket{{le="{freeze_bound}"}}'
    )
    over_bound_before = (
        "strangler_freeze_seconds_count offset 5m - ignoring (le) "
        f'strangler_freeze_seconds_bucket{{le="{freeze_bound}"}} offset 5m'
    )
    return [
        _alert(
            bounds,
            "StranglerSliceErrorRateOverSLO",
            "strangler_slice:new_error_ratio:rate5m\n"
            "- on (slice) (strangler_slice:legacy_error_ratio:rate5m"
            " or on (slice) 0 * strangler_slice_bound:max_error_rate_delta)\n"
            "> on (slice) strangler_slice_bound:max_error_rate_delta",
            duration="5m",
            severity="page",
            summary="Slice {{ $labels.slice }}: the new backend's error rate is over its SLO",
            description=(
                "The share of 5xx answers from slice {{ $labels.slice }}'s new backend exceeds legacy's by "
                "{{ $value | humanizePercentage }} over 5 minutes, more than the slice's "
                "max_error_rate_delta "
                "(the canary analysis' rollback bound; against 0 when legacy serves none of the slice)."
            ),
        ),
        _alert(
            bounds,
            "StranglerSliceLatencyOverSLO",
            "strangler_slice:new_p99_seconds:rate5m\n"
            "> on (slice) (\n"
            "  strangler_slice:legacy_p99_seconds:rate5m * on (slice) strangler_slice_bound:max_p99_ratio\n"
            "  + on (slice) strangler_slice_bound:p99_slack_seconds\n"
            "  or on (slice) strangler_slice_bound:max_p99_seconds\n"
            ")",
            duration="5m",
            severity="page",
            summary="Slice {{ $labels.slice }}: the new backend's p99 is over its SLO",
            description=(
                "The p99 of slice {{ $labels.slice }}'s new backend is {{ $value | humanizeDuration }} over "
                "5 "
                "minutes: above legacy's p99 x max_p99_ratio + p99_slack_ms (the canary rollback bound), or "
                f"above {bounds.slice_max_p99_seconds:g} s when legacy serves none of the slice."
            ),
        ),
        _alert(
            bounds,
            "StranglerWriteFreezeOverBound",
            f"({over_bound_now}) - ({over_bound_before}) > 0\n"
            f"or {_born(over_bound_now, 'strangler_freeze_seconds_count')} > 0",
            duration="0m",
            keep_firing_for="15m",
            severity="page",
            summary="Slice {{ $labels.slice }}: a write freeze lasted longer than its bound",
            description=(
                "A cutover write freeze of slice {{ $labels.slice }} (outcome {{ $labels.outcome }}) as "
                "proxy "
                f"{{{{ $labels.instance }}}} saw it lasted more than {bounds.max_freeze_seconds:g} s (the "
                "cutover's "
                "default --max-freeze-ms) within the last 15 minutes: customers' writes waited."
            ),
        ),
        _alert(
            bounds,
            "StranglerWritesHeldTooLong",
            "max by (slice) (strangler_proxy_held_writes) > 0",
            duration="1m",
            severity="page",
            summary="Slice {{ $labels.slice }}: the proxy has held writes for over a minute",
            description=(
                "{{ $value }} writes to slice {{ $labels.slice }} are held by a write freeze that has lasted "
                "over a minute, longer than any cutover may freeze (60 s at most): release or roll back."
            ),
        ),
    ]


def _event_alerts(bounds: AlertBounds) -> list[dict[str, Any]]:
    lag_minutes = f"{bounds.consumer_lag_minutes}m"
    return [
        _alert(
            bounds,
            "CdcSlotLagHigh",
            f"cdc_slot_lag_bytes > {bounds.cdc_max_lag_bytes}",
            duration="5m",
            severity="page",
            summary="CDC slot {{ $labels.slot }} is behind",
            description=(
                "Replication slot {{ $labels.slot }} has {{ $value | humanize1024 }}B of WAL its engine has "
                "not "
                f"confirmed (bound {bounds.cdc_max_lag_bytes} bytes) for 5 minutes: events are late."
            ),
        ),
        _alert(
            bounds,
            "CdcRetainedWalHigh",
            f"cdc_slot_retained_wal_bytes > {bounds.cdc_max_retained_wal_bytes}",
            duration="1m",
            severity="page",
            summary="CDC slot {{ $labels.slot }} retains too much WAL",
            description=(
                "The server keeps {{ $value | humanize1024 }}B of WAL for slot {{ $labels.slot }}, over "
                f"CDC_MAX_RETAINED_WAL_BYTES ({bounds.cdc_max_retained_wal_bytes} bytes): the disk fills "
                "unless the slot's engine catches up or the slot is dropped."
            ),
        ),
        _alert(
            bounds,
            "CdcCommitToPublishSlow",
            "histogram_quantile(0.99, sum by (engine, le) (rate(cdc_commit_to_publish_seconds_bucket[5m])))"
            f" > {bounds.cdc_max_commit_to_publish_seconds:g}",
            duration="5m",
            severity="page",
            summary="CDC engine {{ $labels.engine }}: events reach the broker late",
            description=(
                "The p99 from a source commit to the broker's confirm is {{ $value | humanizeDuration }} for "
                f"engine {{{{ $labels.engine }}}} (bound {bounds.cdc_max_commit_to_publish_seconds:g} s)."
            ),
        ),
        _alert(
            bounds,
            "CdcEngineNotStreaming",
            "cdc_engine_running == 0",
            duration="2m",
            severity="page",
            summary="CDC engine {{ $labels.engine }} is not streaming",
            description=(
                "Engine {{ $labels.engine }} ({{ $labels.job }} on {{ $labels.instance }}) has not streamed "
                "for "
                "2 minutes: it keeps restarting or cannot reach the database or the broker."
            ),
        ),
        _alert(
            bounds,
            "CdcChangesDeadLettered",
            _appeared_or_increased("cdc_dead_letters_total", "10m"),
            duration="0m",
            keep_firing_for="10m",
            severity="page",
            summary="CDC capture {{ $labels.capture }} stored changes as dead letters",
            description=(
                "Capture {{ $labels.capture }} could not translate changes ({{ $labels.reason }}) and stored "
                "them as dead letters in the last 10 minutes: their events were not published."
            ),
        ),
        _alert(
            bounds,
            "ConsumerLagHigh",
            f'consumer_queue_messages_ready{{queue!~".*dead-letter.*"}} > {bounds.consumer_max_ready}',
            duration=lag_minutes,
            severity="page",
            summary="Consumer group {{ $labels.group }} is falling behind",
            description=(
                "{{ $value }} messages wait in queue {{ $labels.queue }} of group {{ $labels.group }}, over "
                f"{bounds.consumer_max_ready} for {bounds.consumer_lag_minutes} minutes."
            ),
        ),
        _alert(
            bounds,
            "ConsumerEventsDeadLettered",
            _appeared_or_increased("consumer_events_dead_lettered_total", "10m"),
            duration="0m",
            keep_firing_for="10m",
            severity="page",
            summary="Consumer group {{ $labels.group }} dead-lettered events",
            description=(
                "Group {{ $labels.group }} sent events to its dead-letter queue ({{ $labels.reason }}) in "
                "the "
                "last 10 minutes: their effects did not happen."
            ),
        ),
        _alert(
            bounds,
            "ConsumerDeadLetterQueueNotEmpty",
            'consumer_queue_messages_ready{queue=~".*dead-letter.*"} > 0',
            duration="30m",
            severity="ticket",
            summary="Dead letters of group {{ $labels.group }} are waiting to be dealt with",
            description=(
                "{{ $value }} messages have sat in {{ $labels.queue }} for 30 minutes: replay or discard "
                "them."
            ),
        ),
        _alert(
            bounds,
            "OutboxBacklogHigh",
            f"outbox_backlog_rows > {bounds.outbox_max_rows}",
            duration="5m",
            severity="page",
            summary="Outbox {{ $labels.table }} is not being relayed",
            description=(
                "{{ $value }} rows of outbox {{ $labels.table }} wait for the relay "
                f"(bound {bounds.outbox_max_rows}) for 5 minutes."
            ),
        ),
    ]


def _sync_alerts(bounds: AlertBounds) -> list[dict[str, Any]]:
    return [
        _alert(
            bounds,
            "MigrationSyncLagOverBound",
            "migration_sync_lag_seconds > on (slice) group_left strangler_slice_bound:max_sync_lag_seconds",
            duration="2m",
            severity="page",
            summary="Slice {{ $labels.slice }}: data sync ({{ $labels.direction }}) lags",
            description=(
                "The {{ $labels.direction }} sync of slice {{ $labels.slice }} applies changes "
                "{{ $value | humanizeDuration }} after their commit, over the slice's max_sync_lag_seconds "
                "gate, for 2 minutes: a cutover would be refused and rollback data is late."
            ),
        ),
        _alert(
            bounds,
            "MigrationSyncStreamStopped",
            "migration_sync_stream_running == 0",
            duration="2m",
            severity="page",
            summary="Slice {{ $labels.slice }}: the {{ $labels.direction }} sync stream is not running",
            description=(
                "The {{ $labels.direction }} sync of slice {{ $labels.slice }} has not streamed for 2 "
                "minutes: "
                "its lag figure is stale and the other database falls behind."
            ),
        ),
    ]


def _target_alerts(bounds: AlertBounds) -> list[dict[str, Any]]:
    return [
        _alert(
            bounds,
            "ScrapeTargetDown",
            "up == 0",
            duration="1m",
            severity="page",
            summary="{{ $labels.job }} on {{ $labels.instance }} is down",
            description=(
                "Prometheus has not scraped {{ $labels.job }} on {{ $labels.instance }} for a minute: the "
                "process is down or its metrics endpoint refuses the scraper."
            ),
        ),
    ]


def rule_groups(bounds: AlertBounds) -> dict[str, Any]:
    return {
        "groups": [
            {"name": "strangler-slice-bounds", "rules": _slice_bound_rules(bounds)},
            {"name": "strangler-slice-figures", "rules": _slice_figure_rules(bounds)},
            {"name": "strangler-slices", "rules": _slice_alerts(bounds)},
            {"name": "events", "rules": _event_alerts(bounds)},
            {"name": "data-sync", "rules": _sync_alerts(bounds)},
            {"name": "targets", "rules": _target_alerts(bounds)},
        ]
    }


class _Dumper(yaml.SafeDumper):
    pass


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)

HEADER = (
    "# Generated by `manage.py observability alerts` from the migration plan and settings: do not edit,\n"
    "# regenerate (docs/observability-alerts-dashboards.md). Prometheus 2.42 rule file.\n"
)


def rules_render(bounds: AlertBounds) -> str:
    """The rule file's text (stable: the same bounds give the same bytes)."""
    body = yaml.dump(rule_groups(bounds), Dumper=_Dumper, sort_keys=False, width=110, allow_unicode=True)
    return HEADER + body


def alert_names(bounds: AlertBounds) -> list[str]:
    return [
        rule["alert"] for group in rule_groups(bounds)["groups"] for rule in group["rules"] if "alert" in rule
    ]
