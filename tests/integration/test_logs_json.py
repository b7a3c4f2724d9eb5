"""Every line every long-running process writes is a JSON object with timestamp, level and event
(docs/observability-logs.md), and one order's trace id is in the lines of every process it passed
through. Each process is started the way the README starts it, its stdout and stderr captured."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests

from harness.waiting import wait_http_ok, wait_port, wait_until
from ops.process_group import (
    ManagedProcess,
    ProcessGroup,
    free_port,
    manage_command,
    service_process_commands,
)
from ops.trace_store import read_spans
from tests.cdc_fixtures import cdc_child_env, engine_process, legacy_capture_config
from tests.conftest import LOG_DIR, start_legacy_stack
from tests.factories import CustomerFactory, PricingRuleFactory, ProductFactory, staff_token
from tests.integration.proxy_stack import proxy_start, shipped_plan_load

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(databases=["default", "control"], transaction=True),
]

REQUIRED_FIELDS = ("timestamp", "level", "event")
EXTRACTED_WEBS = ("shop", "crm", "mes_pricing", "mes_production")


def non_json_lines(path: Path) -> list[str]:
    """The lines of a process's output that are not a JSON object with the required fields."""
    bad = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        if not isinstance(record, dict) or any(not record.get(f) for f in REQUIRED_FIELDS):
            bad.append(line)
    return bad


def json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def log_says(process: ManagedProcess, event: str) -> bool:
    assert process.log_path is not None
    return process.log_path.exists() and f'"event": "{event}"' in process.log_path.read_text(errors="replace")


def staff_confirmation_through(proxy_url: str, *, traceparent: str) -> str:
    """Places an order and confirms it as staff through the proxy, the confirmation carrying
    `traceparent`; returns the confirmation's request id."""
    PricingRuleFactory()
    product = ProductFactory()
    customer = CustomerFactory()
    token = staff_token()
    placed = requests.post(
        f"{proxy_url}/shop/api/orders/",
        json={"lines": [{"sku": product.sku, "quantity": 2, "options": []}]},
        headers={"Authorization": f"Bearer {customer.api_token}"},
        timeout=15,
    )
    assert placed.status_code == 201, placed.text
    staff = {"Authorization": f"Token {token}"}
    listed = requests.get(f"{proxy_url}/crm/api/orders/?status=placed", headers=staff, timeout=15).json()
    order_pk = next(o["id"] for o in listed["results"] if o["public_id"] == placed.json()["id"])
    confirmed = requests.post(
        f"{proxy_url}/crm/api/orders/{order_pk}/confirm/",
        headers={**staff, "traceparent": traceparent},
        timeout=15,
    )
    assert confirmed.status_code == 200, confirmed.text
    return confirmed.headers["X-Request-ID"]


@pytest.fixture
def env(live_env: dict[str, str], consumer_vhost: str) -> dict[str, str]:
    """The session's environment with INFO lines: what an operator runs with, and more lines to check.
    Celery on a vhost of the test's own: the session's monolith worker holds the node name's control
    queue in the session's vhost (a second worker there stops) and would take this test's tasks."""
    return {**live_env, "LOG_LEVEL": "INFO", "AMQP_URL": consumer_vhost}


def test_every_line_of_every_long_running_process_is_json(env: dict[str, str], worker_id: str) -> None:
    with ProcessGroup() as group, ExitStack() as stack:
        legacy = start_legacy_stack(group, env, f"logs-{worker_id}", polling=True)
        shipped_plan_load(env, {"LEGACY_URL": legacy.base_url}, why="every line is JSON")
        proxy, proxy_url = proxy_start(group, env, "logs", {"STRANGLER_ACCESS_LOG": "true"})
        processes = {f"legacy {name}": process for name, process in legacy.processes.items()}
        processes["proxy"] = proxy
        for service in EXTRACTED_WEBS:
            port = free_port()
            command = service_process_commands(service, port=port)["web"]
            web_env = {**env, "SERVICE": service}
            log = LOG_DIR / f"logs-{service}-web-{port}.log"
            processes[f"{service} web"] = group.start(ManagedProcess(f"{service}-web", command, web_env, log))
            wait_http_ok(
                f"http://127.0.0.1:{port}/healthz", seconds=60, process=processes[f"{service} web"].popen
            )
            requests.get(f"http://127.0.0.1:{port}/no-such-page/", timeout=10)  # a line: django.request's 404
        production_env = {**env, "SERVICE": "mes_production"}
        production = service_process_commands("mes_production", port=0)
        for name in ("consumer", "stages"):
            log = LOG_DIR / f"logs-production-{name}-{free_port()}.log"
            processes[f"production {name}"] = group.start(
                ManagedProcess(f"production-{name}", production[name], production_env, log)
            )
        config = legacy_capture_config(worker_id, "logs")
        engine = stack.enter_context(engine_process(config, cdc_child_env(env, config), tag="logs"))
        assert engine.process is not None
        processes["cdc run"] = engine.process

        # Traffic: through the proxy to the monolith (an order and its confirmation), a 404, and a
        # request the proxy cannot route anywhere.
        staff_confirmation_through(
            proxy_url, traceparent=f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
        )
        assert requests.get(f"{legacy.base_url}/no-such-page/", timeout=10).status_code == 404
        requests.get(f"{proxy_url}/no-such-route/", timeout=10)
        wait_until(
            lambda: (
                log_says(processes["production consumer"], "consumer.ready")
                and log_says(processes["cdc run"], "cdc.engine_started")
                and log_says(processes["legacy worker"], "celery.worker.started")
                and log_says(processes["legacy beat"], "celery.beat.started")
            ),
            seconds=90,
            interval=0.5,
            what="the consumer, the CDC engine, the worker and beat up",
        )
        wait_until(
            lambda: log_says(processes["legacy worker"], "crm.orders_sent_to_mes"),
            seconds=60,
            interval=0.5,
            what="the worker sending the confirmed order to the MES",
        )
        engine.stop()
        group.stop()  # every process writes its shutdown lines too

    bad = {name: non_json_lines(p.log_path) for name, p in processes.items() if p.log_path}
    assert {name: lines[:5] for name, lines in bad.items() if lines} == {}
    silent = [name for name, p in processes.items() if p.log_path and not json_lines(p.log_path)]
    assert silent == [], "these processes wrote nothing"


@pytest.fixture
def trace_receiver(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`manage.py observability traces receive` as a process: the OTLP/HTTP endpoint and its span file."""
    port = free_port()
    spans = tmp_path / "spans.jsonl"
    command = manage_command("observability", "traces", "receive", "--port", str(port), "--file", str(spans))
    with ProcessGroup() as group:
        receiver = group.start(ManagedProcess("receiver", command, {}, LOG_DIR / f"logs-receiver-{port}.log"))
        wait_port(port, seconds=30, process=receiver)
        yield f"http://127.0.0.1:{port}", spans


def test_one_orders_trace_id_is_in_the_lines_of_every_process_it_passed_through(
    env: dict[str, str], worker_id: str, trace_receiver: tuple[str, Path]
) -> None:
    endpoint, span_file = trace_receiver
    traced = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_TRACES_SAMPLER": "always_on"}
    trace_id = secrets.token_hex(16)
    with ProcessGroup() as group:
        legacy = start_legacy_stack(group, traced, f"logs-traced-{worker_id}", polling=True)
        shipped_plan_load(traced, {"LEGACY_URL": legacy.base_url}, why="one order's trace in the logs")
        proxy, proxy_url = proxy_start(group, traced, "logs-traced", {"STRANGLER_ACCESS_LOG": "true"})
        request_id = staff_confirmation_through(
            proxy_url, traceparent=f"00-{trace_id}-{secrets.token_hex(8)}-01"
        )
        wait_until(
            lambda: any(s["trace_id"] == trace_id for s in read_spans(span_file)),
            seconds=30,
            interval=0.5,
            what=f"spans of trace {trace_id} at the receiver",
        )
        # The processes the confirmation passed through. When the trace goes on through the change
        # stream and the broker, the CDC engine and the consumer join this list, one line each.
        passed_through = {"proxy": proxy, "legacy web": legacy.processes["web"]}
        group.stop()

    for name, process in passed_through.items():
        assert process.log_path is not None
        assert non_json_lines(process.log_path) == [], name
        lines = [line for line in json_lines(process.log_path) if line.get("trace_id") == trace_id]
        assert lines, f"no line of the {name} carries trace {trace_id}"
        assert any(line.get("request_id") == request_id for line in lines), (
            f"{name}: no request id {request_id}"
        )
    web_lines = [
        line for line in json_lines(legacy.processes["web"].log_path) if line["event"] == "order.confirmed"
    ]
    assert [line["trace_id"] for line in web_lines] == [trace_id]
    assert all(len(line["span_id"]) == 16 for line in web_lines)
