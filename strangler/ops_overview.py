"""What the staff ops page shows (/_strangler/ops/), assembled in one read: every slice with its
phase, weight and the gate of its next step (figures against thresholds), this proxy's traffic per
slice and backend, shadow diff rates, sync and CDC lag, the last audit entries, and chart series
from the readings this process kept.

Each figure names its source (docs/observability-ops-page.md):
- the control database: slices, gates, shadow totals of every proxy, the sync lag `migrate_data sync`
  last reported, the CDC engines' last published event (`cdc_engine_state`), the audit log;
- this proxy process's Prometheus registry: requests, errors and latency per slice and backend;
- a Prometheus server when STRANGLER_PROMETHEUS_URL is set: sync lag per stream and CDC slot lag
  and commit-to-publish p99, as the processes that own them export them.
What no source has is None ("n/a" on the page), never a made-up number.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from django.conf import settings
from django.db import DatabaseError, connections

from strangler import selectors
from strangler.models import PHASE_ORDER, Phase, Slice
from strangler.prometheus_source import PrometheusUnavailable, prometheus_query
from strangler.proxy_figures import NO_SLICE, BackendTraffic, Traffic, traffic_between, traffic_read
from strangler.services import gate_check

logger = structlog.get_logger(__name__)

WINDOW_SECONDS = 60.0  # the "last minute" figures and the canary bounds are over this window
MIN_READING_SPACING = 1.0  # polls closer than this share one reading
READINGS_KEPT = 150  # about 5 minutes at the page's 2 s poll
AUDIT_ENTRIES = 15

SOURCE_CONTROL = "control database"
SOURCE_PROXY = "this proxy's metrics"
SOURCE_PROMETHEUS = "Prometheus"


@dataclass(frozen=True)
class Reading:
    """One poll's figures, kept for the charts."""

    at: float
    traffic: Traffic
    diff_rates: dict[str, float | None]
    lags: dict[str, float | None]  # chart key ("sync lag · catalogue") -> seconds


@dataclass
class ReadingHistory:
    """The readings of this process, oldest first (shared by every staff member's page)."""

    readings: deque[Reading] = field(default_factory=lambda: deque(maxlen=READINGS_KEPT))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, reading: Reading) -> list[Reading]:
        with self.lock:
            if not self.readings or reading.at - self.readings[-1].at >= MIN_READING_SPACING:
                self.readings.append(reading)
            else:
                self.readings[-1] = reading
            return list(self.readings)

    def clear(self) -> None:
        with self.lock:
            self.readings.clear()


HISTORY = ReadingHistory()


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _traffic_figures(item: BackendTraffic | None) -> dict[str, Any]:
    item = item or BackendTraffic()
    return {
        "requests": int(item.attempts),
        "errors": int(item.errors),
        "error_rate": _round(item.error_rate),
        "p99_ms": _round(item.p99_ms, 2),
    }


def _window(readings: list[Reading], now: float) -> tuple[Traffic | None, float | None]:
    """Traffic over the last WINDOW_SECONDS (from the oldest reading inside it), and its length."""
    if len(readings) < 2:
        return None, None
    latest = readings[-1]
    start = next((r for r in readings if latest.at - r.at <= WINDOW_SECONDS), readings[0])
    if start is latest:
        start = readings[-2]
    return traffic_between(start.traffic, latest.traffic), latest.at - start.at


def _row(figure: str, value: Any, bound: str, ok: bool | None, source: str) -> dict[str, Any]:
    return {"figure": figure, "value": value, "bound": bound, "ok": ok, "source": source}


def _gate(
    slice_: Slice, *, alias: str, now: datetime, window: Traffic | None, window_seconds: float | None
) -> dict[str, Any]:
    """The gate of the slice's next step with each figure against its threshold."""
    phase = Phase(slice_.phase)
    index = PHASE_ORDER.index(phase)
    if index == len(PHASE_ORDER) - 1:
        return {"step": None, "name": "retired is the last phase", "passed": None, "rows": []}
    target = PHASE_ORDER[index + 1]
    passed, figures = gate_check(slice_, target, alias=alias, now=now)
    rows: list[dict[str, Any]] = []
    if phase == Phase.LEGACY:
        rows.append(_row("routes", figures["routes"], "> 0", figures["routes"] > 0, SOURCE_CONTROL))
    elif phase == Phase.SYNCING:
        lag, bound = figures["sync_lag_seconds"], figures["max_sync_lag_seconds"]
        rows.append(
            _row(
                "sync lag (s, as last reported)",
                _round(lag, 3),
                f"<= {bound}",
                None if lag is None else lag <= bound,
                SOURCE_CONTROL,
            )
        )
        verified = figures["sync_verified_at"]
        rows.append(
            _row("last clean verification", verified, "required", verified is not None, SOURCE_CONTROL)
        )
    elif phase == Phase.SHADOW:
        compared, rate = figures["compared"], figures["diff_rate"]
        minimum, maximum = figures["min_shadow_requests"], figures["max_shadow_diff_rate"]
        rows.append(_row("shadow compared", compared, f">= {minimum}", compared >= minimum, SOURCE_CONTROL))
        rows.append(
            _row(
                "shadow diff rate",
                _round(rate),
                f"<= {maximum}",
                None if rate is None else rate <= maximum,
                SOURCE_CONTROL,
            )
        )
    elif phase == Phase.CANARY:
        weight = float(slice_.canary_weight)
        rows.append(_row("canary weight (%)", weight, "= 100 to promote", weight >= 100, SOURCE_CONTROL))
        waiting = figures["requires_not_live"]
        if figures["requires"]:
            rows.append(
                _row("required slices live", waiting or "all", "all live", not waiting, SOURCE_CONTROL)
            )
        rows.extend(_canary_rows(slice_, window, window_seconds))
    elif phase == Phase.LIVE:
        soaked, soak = figures["soaked_seconds"], figures["soak_seconds"]
        rows.append(_row("soaked (s)", soaked, f">= {soak}", soaked >= soak, SOURCE_CONTROL))
    return {"step": f"{phase} -> {target}", "name": figures.get("gate", ""), "passed": passed, "rows": rows}


def _canary_rows(slice_: Slice, window: Traffic | None, window_seconds: float | None) -> list[dict[str, Any]]:
    """The automatic rollback bounds of a canary (new against legacy), over this proxy's last window."""
    source = f"{SOURCE_PROXY}, last {round(window_seconds)} s" if window_seconds else SOURCE_PROXY
    legacy = (window or {}).get((slice_.name, slice_.legacy_backend.name))
    new = (window or {}).get((slice_.name, slice_.new_backend.name))
    new_rate = new.error_rate if new else None
    legacy_rate = (legacy.error_rate if legacy else None) or 0.0
    rate_bound = legacy_rate + slice_.max_error_rate_delta
    new_p99 = new.p99_ms if new else None
    legacy_p99 = legacy.p99_ms if legacy else None
    p99_bound = None if legacy_p99 is None else legacy_p99 * slice_.max_p99_ratio + slice_.p99_slack_ms
    return [
        _row(
            "new error rate",
            _round(new_rate),
            f"<= legacy {legacy_rate:.4f} + {slice_.max_error_rate_delta} = {rate_bound:.4f}",
            None if new_rate is None else new_rate <= rate_bound,
            source,
        ),
        _row(
            "new p99 (ms)",
            _round(new_p99, 2),
            "n/a (no legacy traffic)"
            if p99_bound is None
            else f"<= legacy {legacy_p99:.2f} x {slice_.max_p99_ratio} + {slice_.p99_slack_ms} "
            f"= {p99_bound:.2f}",
            None if new_p99 is None or p99_bound is None else new_p99 <= p99_bound,
            source,
        ),
    ]


def _cdc_engines(alias: str) -> list[dict[str, Any]]:
    """The CDC engines' last published event, as they store it in the control database. Read by SQL:
    the table is the cdc app's, which the proxy process does not load (nor may strangler import it)."""
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT to_regclass('cdc_engine_state') IS NOT NULL")
            if not cursor.fetchone()[0]:
                return []
            cursor.execute(
                "SELECT name, slot_name, last_committed_at, last_published_at, events_published, now() "
                "FROM cdc_engine_state ORDER BY name"
            )
            rows = cursor.fetchall()
    except DatabaseError:
        logger.exception("ops_page.cdc_state_unreadable")
        return []
    engines = []
    for name, slot, committed, published, count, db_now in rows:
        engines.append(
            {
                "engine": name,
                "slot": slot,
                "commit_to_publish_seconds": _round((published - committed).total_seconds(), 3)
                if committed and published
                else None,
                "last_published_at": published.isoformat() if published else None,
                "seconds_since_last_event": _round((db_now - published).total_seconds(), 1)
                if published
                else None,
                "events_published": count,
            }
        )
    return engines


def _lags(slices: list[Slice], engines: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Lag rows (what, name, value, unit, source, note) and the Prometheus source's status."""
    rows: list[dict[str, Any]] = []
    for s in slices:
        if s.sync_lag_seconds is not None:
            rows.append(
                {
                    "what": "sync lag",
                    "name": s.name,
                    "value": _round(s.sync_lag_seconds, 3),
                    "unit": "s",
                    "source": SOURCE_CONTROL,
                    "note": "forward stream, as `migrate_data sync` last reported it (about once a second "
                    "while it runs; not updated once it stops)",
                }
            )
    for engine in engines:
        rows.append(
            {
                "what": "CDC lag",
                "name": engine["engine"],
                "value": engine["commit_to_publish_seconds"],
                "unit": "s",
                "source": SOURCE_CONTROL,
                "note": f"commit to broker confirm of the engine's last event "
                f"({engine['seconds_since_last_event']} s ago, slot {engine['slot']})",
            }
        )
    base_url = settings.STRANGLER_PROMETHEUS_URL
    if not base_url:
        return rows, {"configured": False, "error": None}
    queries = [
        ("sync lag", "max by (slice, direction) (migration_sync_lag_seconds)", "s", ("slice", "direction")),
        ("CDC slot lag", "max by (slot) (cdc_slot_lag_bytes)", "bytes", ("slot",)),
        (
            "CDC lag p99",
            "histogram_quantile(0.99, sum by (le, engine) (rate(cdc_commit_to_publish_seconds_bucket[5m])))",
            "s",
            ("engine",),
        ),
    ]
    try:
        for what, promql, unit, keys in queries:
            for series in prometheus_query(base_url=base_url, promql=promql):
                value = None if series.value != series.value else _round(series.value, 3)  # NaN: no data
                rows.append(
                    {
                        "what": what,
                        "name": " ".join(series.labels.get(k, "?") for k in keys),
                        "value": value,
                        "unit": unit,
                        "source": SOURCE_PROMETHEUS,
                        "note": promql,
                    }
                )
    except PrometheusUnavailable as exc:
        return rows, {"configured": True, "error": str(exc)}
    return rows, {"configured": True, "error": None}


def _charts(readings: list[Reading], slices: list[Slice]) -> list[dict[str, Any]]:
    """Series of the kept readings: error rate and p99 per slice and backend (per interval between
    readings), shadow diff rate per slice, and the lags."""
    error_series: dict[str, dict[str, list[list[float]]]] = {}
    p99_series: dict[str, dict[str, list[list[float]]]] = {}
    for earlier, later in zip(readings, readings[1:], strict=False):
        for (slice_name, backend), item in traffic_between(earlier.traffic, later.traffic).items():
            if item.attempts <= 0:
                continue
            label = slice_name or "default route"
            t = round(later.at, 3)
            if item.error_rate is not None:
                error_series.setdefault(label, {}).setdefault(backend, []).append(
                    [t, round(item.error_rate, 4)]
                )
            if item.p99_ms is not None:
                p99_series.setdefault(label, {}).setdefault(backend, []).append([t, round(item.p99_ms, 2)])

    def chart(chart_id: str, title: str, unit: str, series: dict[str, list[list[float]]]) -> dict[str, Any]:
        return {
            "id": chart_id,
            "title": title,
            "unit": unit,
            "series": [{"name": name, "points": points} for name, points in sorted(series.items())],
        }

    charts = []
    for s in slices:
        charts.append(chart(f"errors-{s.name}", f"error rate · {s.name}", "", error_series.get(s.name, {})))
        charts.append(chart(f"p99-{s.name}", f"p99 · {s.name}", "ms", p99_series.get(s.name, {})))
    diff: dict[str, list[list[float]]] = {}
    lags: dict[str, list[list[float]]] = {}
    for r in readings:
        for name, rate in r.diff_rates.items():
            if rate is not None:
                diff.setdefault(name, []).append([round(r.at, 3), round(rate, 4)])
        for name, value in r.lags.items():
            if value is not None:
                lags.setdefault(name, []).append([round(r.at, 3), value])
    charts.append(chart("shadow-diff-rate", "shadow diff rate", "", diff))
    charts.append(chart("lags", "sync and CDC lag", "s", lags))
    return charts


def ops_overview(*, now: datetime | None = None) -> dict[str, Any]:
    """Everything the ops page shows, as plain data (the JSON endpoint returns it as is)."""
    now = now or datetime.now(UTC)
    alias = selectors.control_alias()
    slices = list(selectors.slice_list())
    route_slices = {r.name: r.slice.name for r in selectors.route_list()}
    traffic = traffic_read(route_slices=route_slices)
    shadow = {s.name: selectors.shadow_totals(slice_name=s.name, alias=alias) for s in slices}
    engines = _cdc_engines(alias)
    lag_rows, prometheus = _lags(slices, engines)
    reading = Reading(
        at=time.time(),
        traffic=traffic,
        diff_rates={name: totals["diff_rate"] for name, totals in shadow.items()},
        lags={f"{row['what']} · {row['name']}": row["value"] for row in lag_rows if row["unit"] == "s"},
    )
    readings = HISTORY.add(reading)
    window, window_seconds = _window(readings, reading.at)

    slice_rows = []
    for s in slices:
        backends = [(s.legacy_backend.name, "legacy"), (s.new_backend.name, "new")]
        seen = {b for (name, b) in traffic if name == s.name} - {b for b, _ in backends}
        backends += [(b, "?") for b in sorted(seen)]
        slice_rows.append(
            {
                "name": s.name,
                "phase": s.phase,
                "weight": float(s.canary_weight),
                "paused": s.paused,
                "shadow_enabled": s.shadow_enabled,
                "shadow_sample_rate": s.shadow_sample_rate,
                "write_freeze_until": s.write_freeze_until.isoformat() if s.write_freeze_until else None,
                "phase_changed_at": s.phase_changed_at.isoformat(),
                "gate": _gate(s, alias=alias, now=now, window=window, window_seconds=window_seconds),
                "shadow": {
                    **shadow[s.name],
                    "diff_rate": _round(shadow[s.name]["diff_rate"]),
                    "max_diff_rate": s.max_shadow_diff_rate,
                },
                "traffic": [
                    {
                        "backend": backend,
                        "generation": generation,
                        "total": _traffic_figures(traffic.get((s.name, backend))),
                        "window": _traffic_figures(window.get((s.name, backend))) if window else None,
                    }
                    for backend, generation in backends
                ],
            }
        )
    unrouted = sorted(b for (name, b) in traffic if name == NO_SLICE)
    audit = [
        {
            "at": e.at.isoformat(),
            "who": e.who,
            "action": e.action,
            "slice": e.slice_name,
            "from": e.from_state.get("phase") if isinstance(e.from_state, dict) else None,
            "to": e.to_state.get("phase") if isinstance(e.to_state, dict) else None,
            "why": e.why,
        }
        for e in selectors.audit_list(limit=AUDIT_ENTRIES)
    ]
    return {
        "generated_at": now.isoformat(),
        "proxy": {"host": socket.gethostname(), "pid": os.getpid()},
        "window_seconds": _round(window_seconds, 1),
        "slices": slice_rows,
        "default_route": [
            {"backend": b, "total": _traffic_figures(traffic.get((NO_SLICE, b)))} for b in unrouted
        ],
        "lags": lag_rows,
        "prometheus": prometheus,
        "audit": audit,
        "charts": _charts(readings, slices),
    }
