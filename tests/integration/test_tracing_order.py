"""Issue 10, one order's trace through the change stream: every part a real process exporting its
spans over OTLP/HTTP to a real receiver (`manage.py observability traces receive`), sampling all.

Staff confirm an order on the monolith's CRM API through the strangler proxy (legacy web,
MES_PRODUCTION=service, events mode): the proxy's span is the web request's parent. The
confirmation's transaction leaves its traceparent in the WAL; the legacy CDC capture continues
it for shop.order.confirmed and publishes it; mes_production's consumer group creates the
production order and writes production.order.started to its outbox within the same trace; the
outbox relay publishes it; `legacy-production-status` applies it. ONE trace holds every hop, each
a child of the one before. A poisoned event dead-lettered by the status consumer shows an error span
with its exception.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import kombu
import pytest

import legacy.crm.consumers  # noqa: F401 (registers the group whose queues this test declares)
import mes_production.consumers  # noqa: F401 (the same for the production service's group)
from harness.consumer_topology import group_topology_declare
from harness.trace_receiver import Span, TraceReceiver, trace_receiver_start
from harness.waiting import WaitTimeout, wait_until
from legacy.shop.models import Order
from mes_production.processes import CONSUMER_GROUP
from ops.process_group import ManagedProcess, ProcessGroup
from tests.cdc_fixtures import (
    LOG_DIR,
    cdc_child_env,
    engine_process,
    legacy_capture_config,
    mes_production_outbox_relay,
)
from tests.conftest import start_legacy_stack
from tests.consumer_fixtures import PARTITIONS, StartConsumer
from tests.factories import CustomerFactory, PricingRuleFactory, ProductFactory, staff_token
from tests.integration.proxy_stack import monolith_everywhere, proxy_caught_up, proxy_start, shipped_plan_load
from tests.integration.test_events_end_to_end import Actors, LegacyApi
from tests.integration.test_production_service import PRODUCTION_ENV

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, databases=["default", "production", "control"]),
]

STATUS_GROUP = "legacy-production-status"
SERVICE_MODE = {"MES_PRODUCTION": "service", "ORCHESTRATION_MODE": "events"}
WAIT = 90


def by_id(spans: list[Span]) -> dict[str, Span]:
    return {span["span_id"]: span for span in spans}


def one(spans: list[Span], what: str, predicate: Callable[[Span], bool]) -> Span:
    found = [span for span in spans if predicate(span)]
    assert found, f"no {what} span in the trace: {[(s['service'], s['role'], s['name']) for s in spans]}"
    return sorted(found, key=lambda span: span["start_ns"])[0]


def ancestors(span: Span, index: dict[str, Span]) -> list[Span]:
    chain = []
    while span["parent_span_id"] in index:
        span = index[span["parent_span_id"]]
        chain.append(span)
    return chain


def attr(span: Span, name: str) -> Any:
    return span["attributes"].get(name)


def test_a_staff_confirmation_is_one_trace_from_the_web_to_the_status_consumer(  # type: ignore[no-untyped-def]
    consumer_env, start_consumer: StartConsumer, worker_id: str
) -> None:
    url = consumer_env["CDC_AMQP_URL"]
    PricingRuleFactory()
    actors = Actors(product=ProductFactory(), customer=CustomerFactory(), staff_token=staff_token())
    for group_name in (CONSUMER_GROUP, STATUS_GROUP):
        group_topology_declare(url, group_name, partitions=PARTITIONS)
    capture = legacy_capture_config(worker_id, "trace")

    with ProcessGroup() as group:
        span_file = LOG_DIR / f"trace-order-{worker_id}.jsonl"
        span_file.unlink(missing_ok=True)
        receiver = trace_receiver_start(group, span_file)
        # DEBUG: each hop's per-event line (written inside its span) carries the trace id.
        traced = {**receiver.env, "LOG_LEVEL": "DEBUG"}
        legacy = start_legacy_stack(group, {**consumer_env, **SERVICE_MODE, **traced}, "trace-legacy")
        proxy, proxy_url = proxy_start(
            group, {**consumer_env, **traced}, "trace-order", {"STRANGLER_ACCESS_LOG": "true"}
        )
        shipped_plan_load(consumer_env, monolith_everywhere(legacy.base_url), why="order trace test")
        proxy_caught_up(proxy_url)
        cdc_env = cdc_child_env(consumer_env, capture, CDC_AMQP_URL=url, **traced)
        with (
            engine_process(capture, cdc_env, tag="trace-cdc") as cdc,
            mes_production_outbox_relay(
                consumer_env, amqp_url=url, worker_id=worker_id, tag="trobx", **traced
            ) as relay,
        ):
            production = start_consumer(CONSUMER_GROUP, env={**PRODUCTION_ENV, **traced})
            status = start_consumer(STATUS_GROUP, env={**SERVICE_MODE, **traced})

            api = LegacyApi(proxy_url, actors)  # customers and staff talk to the proxy
            order_id = api.place_and_confirm(quantity=2)
            wait_until(
                lambda: Order.objects.get(id=order_id).status == "in_production",
                seconds=WAIT,
                what="the status consumer applied production.order.started",
            )
            trace = trace_of_confirmation(receiver, order_id)
            assert_one_trace_through_every_hop(trace, order_id)
            print(
                f"one trace: {len(trace)} spans across {sorted({(s['service'], s['role']) for s in trace})}"
            )
            passed_through = {
                "proxy": proxy,
                "legacy web": legacy.processes["web"],
                "CDC capture": cdc.process,
                "mes_production consumer": production.process,
                "outbox relay": relay.process,
                "status consumer": status.process,
            }
            assert_trace_id_logged(trace[0]["trace_id"], passed_through)

            poisoned_is_an_error_span(receiver, url, status_group_running=status)


def assert_trace_id_logged(trace_id: str, processes: dict[str, ManagedProcess]) -> None:
    """The order's trace id is in the JSON log lines of every process the confirmation went through."""
    needle = f'"trace_id": "{trace_id}"'

    def missing() -> list[str]:
        return [
            name
            for name, process in processes.items()
            if process.log_path is None or needle not in process.log_path.read_text(errors="replace")
        ]

    wait_until(lambda: not missing(), seconds=30, what=f"trace {trace_id} in the logs of {missing()}")


def trace_of_confirmation(receiver: TraceReceiver, order_id: int) -> list[Span]:
    """The spans of the trace of the web request that confirmed `order_id`, once every hop's span
    has arrived (each process exports in batches of its own, so they come in any order)."""
    confirm_path = f"/crm/api/orders/{order_id}/confirm/"

    def is_confirm(span: Span) -> bool:
        attributes = span["attributes"]
        url = str(attributes.get("http.url") or attributes.get("url.full") or "")
        return span["kind"] == "server" and url.endswith(confirm_path)

    web = receiver.wait_for(is_confirm, seconds=WAIT, what="the confirmation's SERVER span")

    def complete() -> list[Span]:
        spans = receiver.trace(web["trace_id"])
        try:
            assert_one_trace_through_every_hop(spans, order_id)
        except AssertionError:
            return []
        return spans

    try:
        return wait_until(complete, seconds=WAIT, what="every hop's span in the trace")
    except WaitTimeout:
        return receiver.trace(web["trace_id"])  # the assertion says what


def assert_one_trace_through_every_hop(spans: list[Span], order_id: int) -> None:
    index = by_id(spans)
    assert len({span["trace_id"] for span in spans}) == 1
    subject = f"order:{order_id}"

    web = one(spans, "web SERVER", lambda s: s["kind"] == "server" and s["role"] == "web")
    proxy = one(spans, "proxy SERVER", lambda s: s["kind"] == "server" and s["service"] == "proxy")
    assert web["parent_span_id"] == proxy["span_id"], "the web request is not a child of the proxy's span"
    assert attr(proxy, "strangler.route") is not None and proxy["status"] != "error"
    db = [s for s in spans if s["kind"] == "client" and attr(s, "db.system") == "postgresql"]
    assert any(web in ancestors(s, index) for s in db), "no database span under the web request"
    emitted = [
        s for s in db if s["role"] == "web" and "pg_logical_emit_message" in str(attr(s, "db.statement"))
    ]
    assert emitted, "the confirmation's trace context was not written to the WAL"
    assert all(web in ancestors(s, index) for s in emitted)

    cdc = one(
        spans,
        "CDC handling of shop.order.confirmed",
        lambda s: (
            s["role"] == "cdc run"
            and attr(s, "cdc.capture") is not None
            and attr(s, "cloudevents.event_type") == "shop.order.confirmed.v1"
        ),
    )
    assert attr(cdc, "cloudevents.event_subject") == subject
    assert web in ancestors(cdc, index), "the CDC span does not continue the web request's trace"

    publish = one(
        spans,
        "PRODUCER of shop.order.confirmed",
        lambda s: s["kind"] == "producer" and attr(s, "cloudevents.event_type") == "shop.order.confirmed.v1",
    )
    assert publish["parent_span_id"] == cdc["span_id"]

    production = one(
        spans,
        "mes_production CONSUMER",
        lambda s: (
            s["kind"] == "consumer"
            and attr(s, "messaging.consumer.group.name") == CONSUMER_GROUP
            and attr(s, "cloudevents.event_type") == "shop.order.confirmed.v1"
        ),
    )
    assert production["service"] == "mes_production"
    assert production["parent_span_id"] == publish["span_id"]
    assert production["status"] != "error"

    outbox = one(
        spans,
        "outbox write of production.order.started",
        lambda s: s["name"] == "outbox write production.order.started.v1",
    )
    assert outbox["parent_span_id"] == production["span_id"]

    relay = one(
        spans,
        "outbox relay handling",
        lambda s: s["role"] == "cdc run" and str(attr(s, "cdc.capture") or "").startswith("outbox:"),
    )
    assert relay["parent_span_id"] == outbox["span_id"]
    relay_publish = one(
        spans,
        "PRODUCER of production.order.started",
        lambda s: (
            s["kind"] == "producer" and attr(s, "cloudevents.event_type") == "production.order.started.v1"
        ),
    )
    assert relay_publish["parent_span_id"] == relay["span_id"]

    status = one(
        spans,
        "status CONSUMER",
        lambda s: s["kind"] == "consumer" and attr(s, "messaging.consumer.group.name") == STATUS_GROUP,
    )
    assert status["parent_span_id"] == relay_publish["span_id"]
    assert status["service"] == "legacy" and status["status"] != "error"


def poisoned_is_an_error_span(receiver: TraceReceiver, url: str, *, status_group_running: Any) -> None:
    """A production.order.started whose data does not fit is dead-lettered by the status consumer,
    and its trace shows the failure with the exception."""
    trace_id = uuid.uuid4().hex
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/test/poison",
        "type": "production.order.started.v1",
        "subject": "order:0",
        "time": "2026-01-01T00:00:00.000000Z",
        "datacontenttype": "application/json",
        "traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01",
        "data": {"order_id": "not a number"},
    }
    with kombu.Connection(url) as connection:
        producer = connection.Producer()
        producer.publish(
            json.dumps(event).encode(),
            exchange=kombu.Exchange("domain.events", type="topic", durable=True),
            routing_key=event["type"],
            content_type="application/cloudevents+json",
            headers={"aggregate_id": event["subject"]},
        )
    failed = receiver.wait_for(
        lambda s: s["trace_id"] == trace_id and s["status"] == "error",
        seconds=WAIT,
        what="the dead-lettered event's error span",
    )
    assert attr(failed, "messaging.consumer.group.name") == STATUS_GROUP
    assert "MalformedEvent" in failed["status_message"]
    assert any(e["name"] == "exception" for e in failed["events"]), failed
