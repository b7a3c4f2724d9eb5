"""A real Prometheus scrapes every kind of process the README lists, each started as the README says
(the proxy; the web processes of the monolith, shop, crm, mes_pricing and mes_production; the
monolith's Celery worker; the legacy CDC engine; consumers of every service; mes_production's stage
runner and outbox relay; a `migrate_data sync` stream), from the configuration
`manage.py observability prometheus-config` renders, while `manage.py traffic` goes through the
proxy and an operator takes the catalogue slice legacy -> syncing -> shadow -> canary -> live with
the operator commands. Every target must be up, and every query of every dashboard
(ops.dashboards.dashboard_queries()) must return a number."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
import requests
import yaml
from django.conf import settings
from django.core.management import call_command
from django.db import connections

import tests.consumer_probe  # noqa: F401 (registers the probe group this test declares the queues of)
from harness.consumer_topology import group_topology_declare
from harness.prometheus import PROMTOOL, Prometheus, prometheus_start
from harness.waiting import wait_http_ok
from legacy.migration_demo import DEMO_GATES
from ops.dashboards import dashboard_queries
from ops.process_group import (
    PROJECT_ROOT,
    ManagedProcess,
    ProcessGroup,
    free_port,
    manage_command,
    service_process_commands,
)
from tests.cdc_fixtures import (
    CdcProcess,
    mes_production_outbox_relay,
)
from tests.conftest import LOG_DIR, start_legacy_stack
from tests.consumer_fixtures import PARTITIONS, StartConsumer
from tests.event_transport import amqp_publish, cloud_event
from tests.integration.orders_in_flight import orders_in_flight_wait
from tests.integration.proxy_stack import as_the_readme_says, proxy_caught_up, proxy_start

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(databases="__all__", transaction=True),
]

# The series dashboards and alerts are built on (docs/observability-metrics.md).
KEY_QUERIES = [
    'sum by (slice) (rate(strangler_proxy_requests_total{slice!="none"}[10s])) > 0',
    "histogram_quantile(0.99, sum by (le, slice) (rate(strangler_proxy_upstream_seconds_bucket[10s])))",
    "histogram_quantile(0.99, sum by (le) "
    "(rate(http_request_duration_seconds_bucket{service='legacy'}[10s])))",
    'sum by (service) (rate(http_requests_total{service="legacy"}[10s])) > 0',
    "cdc_slot_lag_bytes",
    "cdc_slot_retained_wal_bytes",
    "cdc_engine_running == 1",
    'consumer_queue_messages_ready{group="legacy-orchestration"}',
    'celery_tasks_total{outcome="success"}',
]
SLICE = "catalogue"
CATALOGUE_TABLES = ("shop_material", "shop_product", "shop_product_material", "shop_product_option")
CHECKPOINT_TABLE = "migration_backfill_checkpoint"  # the toolkit's (migrations/state.py)
STRAY_TABLE = "migration_stray_write"  # the same module's log of untagged writes
# The web processes of the extracted services and their Prometheus job names
# (PROMETHEUS_SCRAPE_TARGETS); with each, the workers serving METRICS_PORT and their job names.
SERVICES = {
    "shop": ("shop-web", {}),
    "crm": ("crm-web", {"consumer": "consumer-crm"}),
    "mes_pricing": (
        "pricing-web",
        {
            "catalogue-consumer": "consumer-pricing-catalogue",
            "production-orders-consumer": "consumer-pricing-production-orders",
        },
    ),
    "mes_production": (
        "production-web",
        {"consumer": "consumer-production", "stages": "production-stages"},
    ),
}
# What the test provokes, as the dashboards' rate and increase windows see it: more than zero (each
# series exists from its process's start, so the first event counts).
PROVOKED = [
    'sum(increase(strangler_freeze_seconds_count{slice="catalogue",outcome="flipped"}[5m])) > 0',
    'sum(rate(strangler_proxy_fallbacks_total{route="products"}[5m])) > 0',
    'sum(rate(strangler_proxy_shadow_total{slice="catalogue"}[5m])) > 0',
    'sum(increase(consumer_events_dead_lettered_total{group="test-probe",reason="handler_failed"}[5m])) > 0',
    'sum(rate(consumer_handler_failures_total{group="test-probe"}[5m])) > 0',
    'sum by (backend) (rate(strangler_proxy_requests_total{slice="catalogue",backend="shop"}[5m])) > 0',
]
# Dashboard queries that may stay without data in this test, each with the reason. Keep it short:
# a query that is wrong is fixed in ops/dashboards.py, not listed here.
NO_DATA_EXPECTED: dict[str, str] = {}


def _render(env: dict[str, str], targets: dict[str, str], path: Path) -> None:
    """The configuration as an operator renders it, with the test's addresses as --target overrides."""
    args = ["observability", "prometheus-config", "--scrape-interval", "1s", "--output", str(path)]
    for job, target in targets.items():
        args += ["--target", f"{job}={target}", "--job", job]
    rendered = subprocess.run(manage_command(*args), env=env, capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    checked = subprocess.run([PROMTOOL, "check", "config", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _operator(env: dict[str, str], *args: str, retry_on: str = "", seconds: float = 0) -> str:
    """`manage.py ARGS` as the README has an operator run it (no SERVICE: manage.py picks the
    command's owner), again while it is refused with `retry_on` (it changed nothing then)."""
    child = {**os.environ, **{k: v for k, v in env.items() if k != "SERVICE"}}
    child.pop("SERVICE", None)
    deadline = time.monotonic() + seconds
    while True:
        done = subprocess.run(
            manage_command(*args), env=child, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=180
        )
        if done.returncode == 0:
            return done.stdout
        if not retry_on or retry_on not in done.stderr + done.stdout or time.monotonic() > deadline:
            raise AssertionError(f"manage.py {' '.join(args)}: {done.stderr[-2000:]}{done.stdout[-1000:]}")
        time.sleep(1)


def _plan_with_lowered_gates(path: Path) -> Path:
    """The repository's plan with the demo's lowered gates on the slice the test moves (as
    `manage.py demo` does), every read of it shadowed."""
    plan = yaml.safe_load(Path(settings.STRANGLER_PLAN_FILE).read_text())
    spec = plan["slices"][SLICE]
    spec["gates"] = {**spec.get("gates", {}), **DEMO_GATES}
    spec.setdefault("shadow", {})["sample_rate"] = 1.0
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


def _new_side_empty() -> None:
    """The shop's catalogue tables start empty, as on a fresh machine (other modules leave rows, and
    the stray-write log of an earlier backfill's triggers holds the rows their tests wrote)."""
    with connections["shop"].cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(CATALOGUE_TABLES)} CASCADE")
        cursor.execute(f"DROP TABLE IF EXISTS {CHECKPOINT_TABLE}")
        cursor.execute("SELECT to_regclass(%s)", [STRAY_TABLE])
        if cursor.fetchone()[0] is not None:  # its triggers stay: empty the log, keep the table
            cursor.execute(f"DELETE FROM {STRAY_TABLE}")


@pytest.fixture
def outbox_relay(live_env: dict[str, str], amqp_url: str, worker_id: str) -> Iterator[tuple[CdcProcess, int]]:
    """mes_production's outbox relay as its processes module runs it (`manage.py cdc run --outbox
    --database production --table production_outbox`), on a slot of this test's own, on METRICS_PORT."""
    port = free_port()
    with mes_production_outbox_relay(
        live_env, amqp_url=amqp_url, worker_id=worker_id, tag="promobx", METRICS_PORT=str(port)
    ) as relay:
        yield relay, port


def _failures_provoke(consumer_vhost: str) -> None:
    """A handler that raises on every attempt: retried, then dead-lettered (the events dashboard's
    retries and dead letters panels)."""
    group_topology_declare(consumer_vhost, "test-probe", partitions=PARTITIONS)
    amqp_publish(consumer_vhost, [cloud_event("test.probe.failing.v1", "probe:p", {"seq": 1})])


def _fallback_provoke(group: ProcessGroup, shop_web: ManagedProcess, proxy_url: str) -> ManagedProcess:
    """The shop's web process stopped while the catalogue is canary at 100 %: the proxy answers the
    customers' reads from legacy (a fallback); then the shop's web starts again on its port."""
    shop_web.stop()
    for _ in range(3):
        answer = requests.get(f"{proxy_url}/shop/api/products/", timeout=10)
        assert answer.status_code == 200, answer.text
    restarted = group.start(ManagedProcess(shop_web.name, shop_web.command, shop_web.env, shop_web.log_path))
    port = shop_web.command[shop_web.command.index("--port") + 1]
    wait_http_ok(f"http://127.0.0.1:{port}/healthz", seconds=60, process=restarted.popen)
    return restarted


def _queries_checked(prometheus: Prometheus) -> list[str]:
    """Waits until every dashboard query returns a number (not only NaN), except those of
    NO_DATA_EXPECTED; prints what was checked."""
    queries = dashboard_queries()
    wanted = [q.expr for q in queries if q.expr not in NO_DATA_EXPECTED]
    prometheus.wait_queries_have_data(wanted, seconds=90, numbers=True)
    print(f"\n{len(wanted)} of {len(queries)} dashboard queries return data:")
    for query in queries:
        mark = "no data expected" if query.expr in NO_DATA_EXPECTED else "data"
        print(f"  [{mark}] {query.dashboard} / {query.panel}: {query.expr}")
    return wanted


def test_prometheus_scrapes_every_process_and_every_dashboard_query_has_data(
    live_env: dict[str, str],
    amqp_url: str,
    consumer_vhost: str,
    cdc_engine: object,
    start_consumer: StartConsumer,
    outbox_relay: tuple[CdcProcess, int],
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    _new_side_empty()
    call_command("seed", products=8, customers=30, orders=30, random_seed=5, stdout=StringIO())
    events = {"ORCHESTRATION_MODE": "events", "CDC_AMQP_URL": amqp_url}
    ports = {name: free_port() for name in ("celery", "sync", *SERVICES)}
    targets: dict[str, str] = {}
    with ProcessGroup() as group:
        # Celery on the test's own vhost: the session's monolith worker holds the node name's control
        # queue in the session's vhost (a second worker there stops) and would take these tasks.
        celery = {"AMQP_URL": consumer_vhost}
        legacy = start_legacy_stack(
            group, {**live_env, **events, **celery, "METRICS_PORT": str(ports["celery"])}, "prometheus"
        )
        targets["legacy-web"] = legacy.base_url.removeprefix("http://")
        targets["legacy-celery"] = f"127.0.0.1:{ports['celery']}"
        # The scraper reads the proxy's /_strangler/metrics directly, from an internal address.
        _, proxy_url = proxy_start(
            group, live_env, "prometheus", {"STRANGLER_INTERNAL_NETWORKS": "127.0.0.1/32"}
        )
        targets["proxy"] = proxy_url.removeprefix("http://")
        service_env = {
            **live_env,
            **events,
            "SHOP_INTERNAL_URL": f"http://127.0.0.1:{ports['shop']}",
            "MES_API_URL": legacy.base_url,
        }
        webs: dict[str, ManagedProcess] = {}
        for service, (web_job, workers) in SERVICES.items():
            commands = service_process_commands(service, port=ports[service])
            env = {**service_env, "SERVICE": service}
            log = LOG_DIR / f"prometheus-{service}-web-{ports[service]}.log"
            webs[service] = group.start(ManagedProcess(f"{service}-web", commands["web"], env, log))
            targets[web_job] = f"127.0.0.1:{ports[service]}"
            for name, job in workers.items():
                port = free_port()
                log = LOG_DIR / f"prometheus-{service}-{name}-{port}.log"
                group.start(ManagedProcess(job, commands[name], {**env, "METRICS_PORT": str(port)}, log))
                targets[job] = f"127.0.0.1:{port}"
        targets["cdc-legacy"] = f"127.0.0.1:{cdc_engine.metrics_port}"  # type: ignore[attr-defined]
        targets["outbox-production"] = f"127.0.0.1:{outbox_relay[1]}"
        targets["migration-sync"] = f"127.0.0.1:{ports['sync']}"
        for group_name, env in (
            ("legacy-orchestration", {**events, **celery}),
            ("test-probe", {}),  # the consumer framework's probe group: its handler can be told to fail
        ):
            consumer = start_consumer(group_name, env=env)
            targets[f"consumer-{group_name}"] = consumer.metrics_url.removeprefix("http://").removesuffix(
                "/metrics"
            )
        backends = {
            "LEGACY_URL": legacy.base_url,
            **{
                variable: f"http://127.0.0.1:{ports[service]}"
                for variable, service in (
                    ("SHOP_URL", "shop"),
                    ("CRM_URL", "crm"),
                    ("MES_PRICING_URL", "mes_pricing"),
                    ("MES_PRODUCTION_URL", "mes_production"),
                )
            },
        }
        operator = {**as_the_readme_says(live_env), **backends}
        plan = _plan_with_lowered_gates(tmp_path / "plan.yaml")
        _operator(operator, "strangler", "load-plan", str(plan), "--why", "prometheus scrape test")
        proxy_caught_up(proxy_url)
        for service in SERVICES:
            wait_http_ok(
                f"http://127.0.0.1:{ports[service]}/healthz", seconds=60, process=webs[service].popen
            )

        config = tmp_path / "prometheus.yml"
        _render(live_env, targets, config)
        prometheus = prometheus_start(group, config, tmp_path / "data", log_dir=LOG_DIR)
        traffic = subprocess.Popen(
            manage_command(
                "traffic", "--base-url", proxy_url, "--rate", "20", "--duration", "600", "--random-seed", "4"
            ),
            env=live_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # The operator takes the catalogue slice through its phases, as the README says.
            _operator(operator, "strangler", "promote", SLICE, "--who", "test")  # syncing
            _operator(operator, "migrate_data", "backfill", "--slice", SLICE)
            group.start(
                ManagedProcess(
                    "migration-sync",
                    manage_command("migrate_data", "sync", "--slice", SLICE),
                    {**operator, "SERVICE": "migrations", "METRICS_PORT": str(ports["sync"])},
                    LOG_DIR / f"prometheus-sync-{ports['sync']}.log",
                )
            )
            _operator(operator, "migrate_data", "verify", "--slice", SLICE)
            # shadow: verified, and the sync's lag under its bound once its stream runs
            _operator(
                operator, "strangler", "promote", SLICE, "--who", "test", retry_on="did not pass", seconds=90
            )
            # canary: enough shadowed reads answered the same
            _operator(
                operator, "strangler", "promote", SLICE, "--who", "test", retry_on="did not pass", seconds=90
            )
            _operator(operator, "strangler", "weight", SLICE, "50", "--who", "test")
            proxy_caught_up(proxy_url)
            time.sleep(3)  # reads at 50 % for a few scrapes: the canary panels show both backends
            _operator(operator, "strangler", "weight", SLICE, "100", "--who", "test")
            proxy_caught_up(proxy_url)
            webs["shop"] = _fallback_provoke(group, webs["shop"], proxy_url)
            cut = _operator(
                operator,
                "migrate_data",
                "cutover",
                "--slice",
                SLICE,
                "--who",
                "test",
                retry_on="aborted",
                seconds=60,
            )
            assert "completed" in cut, cut

            prometheus.wait_targets_up(seconds=90)
            # After the consumer's first scrapes, so that its counters' step from zero is seen.
            _failures_provoke(consumer_vhost)
            assert {t["labels"]["job"] for t in prometheus.targets()} == set(targets)
            prometheus.wait_queries_have_data(KEY_QUERIES + PROVOKED, seconds=60)
            _queries_checked(prometheus)
        finally:
            traffic.terminate()  # the series are checked while the traffic runs
            traffic.wait(timeout=30)
        print(f"whole test {time.monotonic() - began:.1f} s")
        orders_in_flight_wait()
