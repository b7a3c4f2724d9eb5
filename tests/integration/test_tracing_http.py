"""Traces over HTTP between the real processes, received over the wire by the real OTLP/HTTP receiver
(`manage.py observability traces receive`): proxy -> legacy web -> PostgreSQL, Celery beat -> worker,
failures marked on the span where they happen, and a proxy that samples nothing exports nothing.

The proxies decide (always_on / always_off); the legacy processes run the parent-based sampler they
would run in production, so they follow the proxy's flag.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from harness.proxy_plan import plan_route, plan_slice, plan_text
from harness.rabbitmq_vhost import rabbitmq_vhost, vhost_name
from harness.trace_receiver import Span, TraceReceiver, trace_receiver_start
from ops.process_group import ProcessGroup, free_port
from strangler import services
from strangler.plan import plan_parse
from tests.conftest import LegacyStack, start_legacy_stack
from tests.integration.proxy_stack import backend_start, proxy_caught_up, proxy_start

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(databases=["default", "control"], transaction=True),
]

PSYCOPG = "opentelemetry.instrumentation.psycopg"


@dataclass
class TracedStack:
    receiver: TraceReceiver
    legacy: LegacyStack
    echo_url: str
    down_url: str  # nothing listens there
    proxy_url: str  # samples every request
    quiet_proxy_url: str  # samples none (OTEL_TRACES_SAMPLER=always_off)

    def load_plan(self) -> None:
        """The plan again (each test starts on emptied tables): the catalogue in its legacy phase,
        /echo/ live on the echoing backend, POST /down/ live on the backend that is down."""
        plan = plan_text(
            backends={"legacy": self.legacy.base_url, "echo": self.echo_url, "down": self.down_url},
            slices={
                "catalogue": plan_slice(
                    service="echo", routes=[plan_route("products", "/shop/api/products/")]
                ),
                "mirror": plan_slice(service="echo", routes=[plan_route("echo", "/echo/")]),
                "orders": plan_slice(
                    service="down", routes=[plan_route("orders-down", "/down/", methods=["POST"])]
                ),
            },
        )
        services.plan_apply(plan=plan_parse(plan), who="test")
        for name in ("mirror", "orders"):
            for _ in range(3):
                services.slice_promote(name=name, who="test", force=True, why="test setup")
            services.slice_set_shadow(name=name, enabled=False, who="test")
            services.slice_promote(name=name, who="test", force=True, why="test setup")
        proxy_caught_up(self.proxy_url, self.quiet_proxy_url)


@pytest.fixture(scope="module")
def traced_running(
    live_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TracedStack]:
    spans_file: Path = tmp_path_factory.mktemp("traces") / "spans.jsonl"
    # Celery on a vhost of its own: the session's monolith worker holds the node name's control queue
    # in the session's vhost (a second worker there stops) and would take this module's tasks.
    with rabbitmq_vhost(vhost_name("test-tracing")) as celery_url, ProcessGroup() as group:
        receiver = trace_receiver_start(group, spans_file, env=live_env)
        legacy_env = {
            **live_env,
            **receiver.env,
            "AMQP_URL": celery_url,
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",
            # The legacy URLconf plus a view that fails on purpose (ops/tests/failing_urls.py).
            "DJANGO_SETTINGS_MODULE": "tests.integration.failing_settings",
        }
        legacy = start_legacy_stack(group, legacy_env, "tracing", polling=True)
        _, echo_url = backend_start(group, "echo")
        _, proxy_url = proxy_start(group, {**live_env, **receiver.env}, "tracing-on")
        _, quiet_url = proxy_start(
            group, {**live_env, **receiver.env, "OTEL_TRACES_SAMPLER": "always_off"}, "tracing-off"
        )
        down_url = f"http://127.0.0.1:{free_port()}"
        yield TracedStack(receiver, legacy, echo_url, down_url, proxy_url, quiet_url)


@pytest.fixture
def traced(traced_running: TracedStack) -> TracedStack:
    traced_running.load_plan()
    return traced_running


def proxy_span(receiver: TraceReceiver, request_id: str) -> Span:
    return receiver.wait_for(
        lambda s: s["attributes"].get("http.request_id") == request_id and s["service"] == "proxy",
        what=f"the proxy's span of request {request_id}",
    )


def child_of(receiver: TraceReceiver, parent: Span, what: str, **match: str) -> Span:
    return receiver.wait_for(
        lambda s: (
            s["trace_id"] == parent["trace_id"]
            and s["parent_span_id"] == parent["span_id"]
            and all(s[k] == v for k, v in match.items())
        ),
        what=what,
    )


def test_one_trace_runs_from_the_proxy_through_the_web_process_into_postgresql(traced: TracedStack) -> None:
    request_id = uuid.uuid4().hex
    answer = requests.get(
        f"{traced.proxy_url}/shop/api/products/", headers={"X-Request-ID": request_id}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    proxy = proxy_span(traced.receiver, request_id)
    assert proxy["kind"] == "server" and proxy["name"] == "proxy products" and proxy["parent_span_id"] == ""
    assert proxy["attributes"]["strangler.slice"] == "catalogue"
    assert proxy["attributes"]["strangler.backend"] == "legacy"
    assert proxy["attributes"]["http.response.status_code"] == 200 and proxy["status"] != "error"
    web = child_of(traced.receiver, proxy, "the web process's span under the proxy's", kind="server")
    assert web["service"] == "legacy" and web["role"] == "web"
    assert web["attributes"]["http.route"] == "shop/api/products/"
    query = child_of(traced.receiver, web, "a PostgreSQL span under the web span", scope=PSYCOPG)
    assert query["kind"] == "client" and query["attributes"]["db.system"] == "postgresql"
    # One span per statement: no statement is recorded twice under the request.
    statements = [
        (s["attributes"]["db.statement"], s["start_ns"])
        for s in traced.receiver.trace(proxy["trace_id"])
        if s["scope"] == PSYCOPG
    ]
    assert len(statements) == len(set(statements))


def test_an_incoming_sampled_context_is_continued(traced: TracedStack) -> None:
    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    request_id = uuid.uuid4().hex
    requests.get(
        f"{traced.proxy_url}/echo/continued",
        headers={"X-Request-ID": request_id, "traceparent": f"00-{trace_id}-{parent}-01"},
        timeout=10,
    ).raise_for_status()
    proxy = proxy_span(traced.receiver, request_id)
    assert (proxy["trace_id"], proxy["parent_span_id"]) == (trace_id, parent)


def test_a_backend_that_is_down_marks_the_proxy_span_failed(traced: TracedStack) -> None:
    request_id = uuid.uuid4().hex
    answer = requests.post(
        f"{traced.proxy_url}/down/", json={}, headers={"X-Request-ID": request_id}, timeout=10
    )
    assert answer.status_code == 502
    proxy = proxy_span(traced.receiver, request_id)
    assert proxy["status"] == "error" and proxy["attributes"]["strangler.backend"] == "down"
    assert proxy["attributes"]["http.response.status_code"] == 502
    assert [e["name"] for e in proxy["events"]] == ["exception"]
    assert proxy["events"][0]["attributes"]["exception.type"].endswith("UpstreamError")


def test_a_failing_view_marks_the_web_span_failed_with_its_exception(traced: TracedStack) -> None:
    request_id = uuid.uuid4().hex
    answer = requests.get(
        f"{traced.proxy_url}/test-failures/view/", headers={"X-Request-ID": request_id}, timeout=10
    )
    assert answer.status_code == 500 and answer.json()["error"]["code"] == "internal_error"
    proxy = proxy_span(traced.receiver, request_id)
    assert proxy["status"] == "error"  # the backend's 5xx, relayed
    web = child_of(traced.receiver, proxy, "the failing view's span", kind="server")
    assert web["status"] == "error" and "the view failed on purpose" in web["status_message"]
    exceptions = [e for e in web["events"] if e["name"] == "exception"]
    assert exceptions and exceptions[0]["attributes"]["exception.type"] == "RuntimeError"


def test_a_task_beat_sends_continues_its_trace_in_the_prefork_worker(traced: TracedStack) -> None:
    def sent_by_beat(span: Span) -> bool:
        return span["role"] == "celery-beat" and span["kind"] == "producer"

    def run_by_worker(span: Span) -> bool:
        return span["role"] == "celery-worker" and span["kind"] == "consumer"

    run = traced.receiver.wait_for(
        lambda s: (
            run_by_worker(s)
            and any(sent_by_beat(p) and p["span_id"] == s["parent_span_id"] for p in traced.receiver.spans())
        ),
        what="a task run in the worker under the span of beat sending it",
        seconds=30,
    )
    assert run["name"].startswith("run/") and run["pid"] != traced.legacy.processes["worker"].pid


def test_a_proxy_that_samples_nothing_forwards_flag_00_and_nothing_is_exported(traced: TracedStack) -> None:
    trace_id = uuid.uuid4().hex
    incoming = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"  # always_off ignores even a sampled parent
    echoed = requests.get(f"{traced.quiet_proxy_url}/echo/off", headers={"traceparent": incoming}, timeout=10)
    forwarded = echoed.json()["headers"]["traceparent"]
    assert forwarded.startswith(f"00-{trace_id}-") and forwarded.endswith("-00")
    quiet = requests.get(
        f"{traced.quiet_proxy_url}/shop/api/products/", headers={"traceparent": incoming}, timeout=10
    )
    assert quiet.status_code == 200
    # A request through the sampling proxy afterwards: once its web span is in, the web process
    # has exported what it had before it, so the quiet request's absence is no matter of timing.
    request_id = uuid.uuid4().hex
    requests.get(
        f"{traced.proxy_url}/shop/api/products/", headers={"X-Request-ID": request_id}, timeout=10
    ).raise_for_status()
    child_of(traced.receiver, proxy_span(traced.receiver, request_id), "the later web span", kind="server")
    assert traced.receiver.trace(trace_id) == []
