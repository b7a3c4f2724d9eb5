"""Sampling in the legacy web process as production runs it (parent-based trace-id ratio), over HTTP
with the real receiver: new traces are sampled at the configured ratio, on their own trace id, each
with its PostgreSQL spans; a parent that is not sampled is followed and nothing is exported. The
web process takes the decision before the Django instrumentation (ops.tracing_web), so these are
what that fast path must not change.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

from harness.trace_receiver import Span, TraceReceiver, trace_receiver_start
from harness.waiting import wait_http_ok
from ops.process_group import ManagedProcess, ProcessGroup, free_port, service_process_commands
from tests.conftest import LOG_DIR

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(databases=["default", "control"], transaction=True),
]

PSYCOPG = "opentelemetry.instrumentation.psycopg"
RATIO = 0.5
NEW_TRACES = 200  # sampled: about 100; sampled twice over (on two trace ids), it would be about 50
PATH = "/shop/api/products/?limit=1"


@dataclass
class SampledWeb:
    receiver: TraceReceiver
    base_url: str


@pytest.fixture(scope="module")
def sampled_web(live_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[SampledWeb]:
    spans_file: Path = tmp_path_factory.mktemp("traces") / "spans.jsonl"
    with ProcessGroup() as group:
        receiver = trace_receiver_start(group, spans_file, env=live_env)
        env = {
            **live_env,
            **receiver.env,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": str(RATIO),
        }
        port = free_port()
        web = group.start(
            ManagedProcess(
                "web",
                service_process_commands("legacy", port=port)["web"],
                env,
                LOG_DIR / f"tracing-sampling-web-{port}.log",
            )
        )
        base_url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{base_url}/healthz", seconds=30, process=web.popen)
        yield SampledWeb(receiver, base_url)


def traceparent(trace_id: str, *, sampled: bool) -> str:
    return f"00-{trace_id}-{uuid.uuid4().hex[:16]}-{'01' if sampled else '00'}"


def fence(web: SampledWeb, session: requests.Session) -> Span:
    """A sampled request after the others: once its span is in, the web process (one worker, one
    export queue) has exported every span that ended before it."""
    trace_id = uuid.uuid4().hex
    session.get(web.base_url + PATH, headers={"traceparent": traceparent(trace_id, sampled=True)}, timeout=10)
    return web.receiver.wait_for(
        lambda s: s["trace_id"] == trace_id and s["kind"] == "server", what="the fence request's span"
    )


def test_new_traces_are_sampled_at_the_ratio_on_their_own_trace_id_with_their_statements(
    sampled_web: SampledWeb,
) -> None:
    with requests.Session() as session:
        for _ in range(NEW_TRACES):
            session.get(sampled_web.base_url + PATH, timeout=10).raise_for_status()
        last = fence(sampled_web, session)
    spans = sampled_web.receiver.spans()
    servers = [
        s
        for s in spans
        if s["kind"] == "server"
        and s["attributes"].get("http.route") == "shop/api/products/"  # not the start's /healthz polls
        and s["trace_id"] != last["trace_id"]
    ]
    assert all(s["parent_span_id"] == "" for s in servers)
    assert 0.35 * NEW_TRACES <= len(servers) <= 0.65 * NEW_TRACES, len(servers)
    # The ratio rule holds for the trace id each span carries: the decision was taken on that id.
    bound = TraceIdRatioBased(RATIO).bound
    assert all(int(s["trace_id"], 16) & TraceIdRatioBased.TRACE_ID_LIMIT < bound for s in servers)
    for server in servers:
        statements = [s for s in spans if s["parent_span_id"] == server["span_id"] and s["scope"] == PSYCOPG]
        assert statements and all(s["trace_id"] == server["trace_id"] for s in statements)


def test_a_parent_that_is_not_sampled_is_followed_and_nothing_is_exported(sampled_web: SampledWeb) -> None:
    unsampled = [uuid.uuid4().hex for _ in range(20)]
    with requests.Session() as session:
        for trace_id in unsampled:
            answer = session.get(
                sampled_web.base_url + PATH,
                headers={"traceparent": traceparent(trace_id, sampled=False)},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
        last = fence(sampled_web, session)
    # The sampled parent was continued: the web span is its child, with statements under it.
    assert last["parent_span_id"] != ""
    assert any(s["parent_span_id"] == last["span_id"] for s in sampled_web.receiver.trace(last["trace_id"]))
    exported = {s["trace_id"] for s in sampled_web.receiver.spans()}
    assert exported.isdisjoint(unsampled)
