"""Grafana dashboards as code (grafanalib), one per concern: the migration, events, services.

No slice, service or queue is named here: they come from the metrics' labels through template
variables, so the dashboards fit any system the toolkit migrates. `manage.py observability dashboards`
writes the JSON; `dashboard_queries()` lists every panel's PromQL (for running it against a Prometheus).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from grafanalib._gen import DashboardEncoder
from grafanalib.core import Dashboard, GridPos, Stat, Target, Template, Templating, TimeSeries
from grafanalib.core import Panel as GrafanaPanel

DEFAULT_DIRECTORY = Path("observability/grafana")
DATASOURCE = "${datasource}"
# What the template variables stand for when a query runs outside Grafana (every value, 5 m rates).
_OUTSIDE_GRAFANA = {"$__rate_interval": "5m", "$slice": ".+", "$service": ".+", "$job": ".+", "$group": ".+"}
_VARIABLE = re.compile(r"\$__rate_interval|\$[a-z]+")

# The proxy's slice label of routes that belong to no slice.
NO_SLICE = "none"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class PanelSpec:
    title: str
    queries: tuple[Query, ...]
    unit: str = ""
    stat: bool = False  # a single figure per series rather than a time series
    description: str = ""


@dataclass(frozen=True)
class DashboardSpec:
    uid: str
    title: str
    description: str
    variables: tuple[tuple[str, str, str], ...]  # (name, label, label_values(...) query)
    panels: tuple[PanelSpec, ...]


def _q(expr: str, legend: str) -> Query:
    return Query(" ".join(expr.split()), legend)


_RATE = "[$__rate_interval]"


def _share(part: str, whole: str) -> str:
    """`part / whole` per series of `whole`, 0 (not "No data") where `part` has no series: a 5xx
    or differ series exists only once one such answer happened."""
    return f"({part} or {whole} * 0) / {whole}"


_SLICE = f'slice=~"$slice",slice!="{NO_SLICE}"'


def _migration() -> DashboardSpec:
    requests = "strangler_proxy_requests_total"
    latency = "strangler_proxy_upstream_seconds_bucket"
    return DashboardSpec(
        uid="strangler-migration",
        title="Migration: slices, canary versus legacy",
        description="Every slice's phase and canary weight; per backend of a slice its traffic, errors and "
        "p99; shadow diffs, write freezes and data-sync lag.",
        variables=(("slice", "Slice", f"label_values({requests}, slice)"),),
        panels=(
            PanelSpec(
                "Phase (1 = current)",
                (
                    _q(
                        'max by (slice, phase) (strangler_slice_phase{slice=~"$slice"}) == 1',
                        "{{slice}}: {{phase}}",
                    ),
                ),
                stat=True,
                description="Each slice's phase as the proxies' routing tables have it.",
            ),
            PanelSpec(
                "Canary weight",
                (_q('max by (slice) (strangler_slice_canary_weight_percent{slice=~"$slice"})', "{{slice}}"),),
                unit="percent",
            ),
            PanelSpec(
                "Requests per backend",
                (
                    _q(
                        f"sum by (slice, backend) (rate({requests}{{{_SLICE}}}{_RATE}))",
                        "{{slice}} -> {{backend}}",
                    ),
                ),
                unit="reqps",
            ),
            PanelSpec(
                "Error rate (5xx) per backend",
                (
                    _q(
                        _share(
                            f'sum by (slice, backend) (rate({requests}{{{_SLICE},status=~"5.."}}{_RATE}))',
                            f"sum by (slice, backend) (rate({requests}{{{_SLICE}}}{_RATE}))",
                        ),
                        "{{slice}} -> {{backend}}",
                    ),
                ),
                unit="percentunit",
            ),
            PanelSpec(
                "p99 per backend",
                (
                    _q(
                        "histogram_quantile(0.99, sum by (slice, backend, le) "
                        f"(rate({latency}{{{_SLICE}}}{_RATE})))",
                        "{{slice}} -> {{backend}}",
                    ),
                ),
                unit="s",
            ),
            PanelSpec(
                "Shadow diff rate",
                (
                    _q(
                        _share(
                            "sum by (slice) "
                            f'(rate(strangler_proxy_shadow_total{{{_SLICE},result="differ"}}{_RATE}))',
                            f"sum by (slice) (rate(strangler_proxy_shadow_total{{{_SLICE}}}{_RATE}))",
                        ),
                        "{{slice}}",
                    ),
                ),
                unit="percentunit",
            ),
            PanelSpec(
                "Write freezes: longest in the window, and writes held now",
                (
                    _q(
                        "histogram_quantile(1, sum by (slice, le) "
                        f'(increase(strangler_freeze_seconds_bucket{{slice=~"$slice"}}{_RATE})))',
                        "{{slice}} freeze",
                    ),
                    _q(
                        'max by (slice) (strangler_proxy_held_writes{slice=~"$slice"})',
                        "{{slice}} held writes",
                    ),
                ),
                unit="s",
            ),
            PanelSpec(
                "Data-sync lag",
                (
                    _q(
                        'max by (slice, direction) (migration_sync_lag_seconds{slice=~"$slice"})',
                        "{{slice}} {{direction}}",
                    ),
                ),
                unit="s",
            ),
            PanelSpec(
                "Automatic rollbacks and fallbacks to legacy",
                (
                    _q(
                        "sum by (slice) "
                        f'(increase(strangler_proxy_automatic_rollbacks_total{{slice=~"$slice"}}{_RATE}))',
                        "{{slice}} rollbacks",
                    ),
                    _q(
                        f"sum by (route) (rate(strangler_proxy_fallbacks_total{_RATE}))",
                        "{{route}} fallbacks/s",
                    ),
                ),
            ),
        ),
    )


def _events() -> DashboardSpec:
    return DashboardSpec(
        uid="strangler-events",
        title="Events: CDC, broker, consumers",
        description="The change stream (lag, retained WAL, publish rate and latency), the outbox relays, and "
        "each consumer group (rate, lag, retries, dead letters).",
        variables=(("group", "Consumer group", "label_values(consumer_events_consumed_total, group)"),),
        panels=(
            PanelSpec(
                "CDC lag (WAL not confirmed)",
                (_q("max by (slot) (cdc_slot_lag_bytes)", "{{slot}}"),),
                unit="bytes",
            ),
            PanelSpec(
                "Retained WAL", (_q("max by (slot) (cdc_slot_retained_wal_bytes)", "{{slot}}"),), unit="bytes"
            ),
            PanelSpec(
                "Events published",
                (_q(f"sum by (engine) (rate(cdc_events_published_total{_RATE}))", "{{engine}}"),),
                unit="ops",
            ),
            PanelSpec(
                "Commit to publish (p50, p99)",
                (
                    _q(
                        "histogram_quantile(0.5, sum by (engine, le) "
                        f"(rate(cdc_commit_to_publish_seconds_bucket{_RATE})))",
                        "{{engine}} p50",
                    ),
                    _q(
                        "histogram_quantile(0.99, sum by (engine, le) "
                        f"(rate(cdc_commit_to_publish_seconds_bucket{_RATE})))",
                        "{{engine}} p99",
                    ),
                ),
                unit="s",
            ),
            PanelSpec(
                "CDC engines streaming",
                (_q("max by (engine) (cdc_engine_running)", "{{engine}}"),),
                stat=True,
            ),
            PanelSpec("Outbox backlog", (_q("max by (table) (outbox_backlog_rows)", "{{table}}"),)),
            PanelSpec(
                "Events consumed",
                (
                    _q(
                        "sum by (group, outcome) "
                        f'(rate(consumer_events_consumed_total{{group=~"$group"}}{_RATE}))',
                        "{{group}} {{outcome}}",
                    ),
                ),
                unit="ops",
            ),
            PanelSpec(
                "Consumer lag (messages ready)",
                (_q('max by (group, queue) (consumer_queue_messages_ready{group=~"$group"})', "{{queue}}"),),
            ),
            PanelSpec(
                "Handler retries (failed attempts)",
                (
                    _q(
                        "sum by (group, event_type) "
                        f'(rate(consumer_handler_failures_total{{group=~"$group"}}{_RATE}))',
                        "{{group}} {{event_type}}",
                    ),
                ),
                unit="ops",
            ),
            PanelSpec(
                "Dead letters",
                (
                    _q(
                        "sum by (group, reason) "
                        f'(increase(consumer_events_dead_lettered_total{{group=~"$group"}}{_RATE}))',
                        "{{group}} {{reason}}",
                    ),
                    _q(
                        f"sum by (capture, reason) (increase(cdc_dead_letters_total{_RATE}))",
                        "cdc {{capture}} {{reason}}",
                    ),
                ),
            ),
            PanelSpec(
                "Handler duration p99",
                (
                    _q(
                        "histogram_quantile(0.99, sum by (group, le) "
                        f'(rate(consumer_handler_duration_seconds_bucket{{group=~"$group"}}{_RATE})))',
                        "{{group}}",
                    ),
                ),
                unit="s",
            ),
        ),
    )


def _services() -> DashboardSpec:
    requests, latency = "http_requests_total", "http_request_duration_seconds_bucket"
    service = 'service=~"$service"'
    return DashboardSpec(
        uid="strangler-services",
        title="Services: rate, errors, duration",
        description="Every web process per service and route (requests, 5xx share, p50 and p99), and every "
        "scrape target's health.",
        variables=(
            ("service", "Service", f"label_values({requests}, service)"),
            ("job", "Job", "label_values(up, job)"),
        ),
        panels=(
            PanelSpec("Targets up", (_q('up{job=~"$job"}', "{{job}} {{instance}}"),), stat=True),
            PanelSpec(
                "Requests per route",
                (
                    _q(
                        f"sum by (service, route) (rate({requests}{{{service}}}{_RATE}))",
                        "{{service}} {{route}}",
                    ),
                ),
                unit="reqps",
            ),
            PanelSpec(
                "Error rate (5xx) per route",
                (
                    _q(
                        _share(
                            f'sum by (service, route) (rate({requests}{{{service},status=~"5.."}}{_RATE}))',
                            f"sum by (service, route) (rate({requests}{{{service}}}{_RATE}))",
                        ),
                        "{{service}} {{route}}",
                    ),
                ),
                unit="percentunit",
            ),
            PanelSpec(
                "Duration p50 and p99 per route",
                (
                    _q(
                        "histogram_quantile(0.5, sum by (service, route, le) "
                        f"(rate({latency}{{{service}}}{_RATE})))",
                        "{{service}} {{route}} p50",
                    ),
                    _q(
                        "histogram_quantile(0.99, sum by (service, route, le) "
                        f"(rate({latency}{{{service}}}{_RATE})))",
                        "{{service}} {{route}} p99",
                    ),
                ),
                unit="s",
            ),
            PanelSpec(
                "Celery tasks",
                (_q(f"sum by (task, outcome) (rate(celery_tasks_total{_RATE}))", "{{task}} {{outcome}}"),),
                unit="ops",
            ),
        ),
    )


def dashboard_specs() -> list[DashboardSpec]:
    return [_migration(), _events(), _services()]


def _panel(spec: PanelSpec, index: int) -> GrafanaPanel:
    targets = [
        Target(expr=query.expr, legendFormat=query.legend, refId=chr(ord("A") + i), datasource=DATASOURCE)
        for i, query in enumerate(spec.queries)
    ]
    position = GridPos(h=8, w=12, x=(index % 2) * 12, y=(index // 2) * 8)
    common = {"title": spec.title, "dataSource": DATASOURCE, "targets": targets, "gridPos": position}
    if spec.description:
        common["description"] = spec.description
    if spec.stat:
        return Stat(**common, reduceCalc="lastNotNull", textMode="value_and_name")
    return TimeSeries(**common, unit=spec.unit)


def _variable(name: str, label: str, query: str) -> Template:
    return Template(
        name=name, label=label, query=query, dataSource=DATASOURCE, includeAll=True, multi=True, allValue=".+"
    )


def dashboard_build(spec: DashboardSpec) -> Dashboard:
    datasource = Template(name="datasource", label="Data source", query="prometheus", type="datasource")
    return Dashboard(
        title=spec.title,
        uid=spec.uid,
        description=spec.description,
        tags=["strangler"],
        timezone="browser",
        refresh="30s",
        templating=Templating(list=[datasource, *(_variable(*v) for v in spec.variables)]),
        panels=[_panel(panel, i) for i, panel in enumerate(spec.panels)],
    ).auto_panel_ids()


def dashboard_json(spec: DashboardSpec) -> str:
    data = dashboard_build(spec).to_json_data()
    return json.dumps(data, cls=DashboardEncoder, sort_keys=True, indent=2) + "\n"


def dashboards_render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"{spec.uid}.json": dashboard_json(spec) for spec in dashboard_specs()}


@dataclass(frozen=True)
class DashboardQuery:
    dashboard: str
    panel: str
    expr: str  # with Grafana's variables replaced: runs as is against Prometheus


def dashboard_queries() -> list[DashboardQuery]:
    """Every panel query of every dashboard (and each template variable's label source), ready to
    send to Prometheus' /api/v1/query: variables stand for every value, rate windows are 5 m."""
    found = []
    for spec in dashboard_specs():
        for panel in spec.panels:
            for query in panel.queries:
                expr = _VARIABLE.sub(lambda m: _OUTSIDE_GRAFANA[m.group(0)], query.expr)
                found.append(DashboardQuery(spec.uid, panel.title, expr))
    return found
