"""The proxy's trace decision as pure logic: which traceparent it forwards for each sampler and each
incoming header, and that the SDK's span (when tracing is on) becomes the backend's parent."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

from ops import tracing
from strangler.proxy.header_policy import HeaderPolicy
from strangler.proxy.trace_context import ProxySpans, TraceSampler, recording_send

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
FORWARDED = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$")


def policy(sampler: str, arg: str | None = None) -> HeaderPolicy:
    env = {"OTEL_TRACES_SAMPLER": sampler, **({"OTEL_TRACES_SAMPLER_ARG": arg} if arg else {})}
    return HeaderPolicy(
        trusted_proxies=[], override_secret="s", max_body=1000, sampler=TraceSampler.from_env(env)
    )


def scope(traceparent: bytes | None = None) -> dict[str, Any]:
    headers = [(b"host", b"shop")] + ([(b"traceparent", traceparent)] if traceparent is not None else [])
    return {
        "type": "http",
        "method": "GET",
        "path": "/shop/",
        "raw_path": b"/shop/",
        "query_string": b"",
        "client": ("10.0.0.9", 5000),
        "headers": headers,
    }


def forwarded(request: Any) -> tuple[str, str, str]:
    values = [v.decode() for n, v in request.forward_headers if n == b"traceparent"]
    assert len(values) == 1 and request.forward_headers[request.traceparent_at][0] == b"traceparent"
    match = FORWARDED.match(values[0])
    assert match, values[0]
    return match.group(1), match.group(2), match.group(3)


@pytest.mark.parametrize("sampler", ["parentbased_traceidratio", "parentbased_always_off", "always_on"])
def test_a_sampled_incoming_context_is_continued_sampled_under_a_new_span_id(sampler: str) -> None:
    request = policy(sampler, "0.0").parse(scope(f"00-{TRACE}-{PARENT}-01".encode()))
    trace_id, span_id, flags = forwarded(request)
    assert (trace_id, flags) == (TRACE, "01") and span_id != PARENT
    assert request.sampled and request.parent_span == PARENT.encode()


def test_an_unsampled_incoming_context_stays_unsampled_under_parent_based_samplers() -> None:
    request = policy("parentbased_always_on").parse(scope(f"00-{TRACE}-{PARENT}-00".encode()))
    assert forwarded(request)[::2] == (TRACE, "00") and not request.sampled


def test_always_on_and_always_off_ignore_the_incoming_flag() -> None:
    assert forwarded(policy("always_on").parse(scope(f"00-{TRACE}-{PARENT}-00".encode())))[2] == "01"
    assert forwarded(policy("always_off").parse(scope(f"00-{TRACE}-{PARENT}-01".encode())))[2] == "00"


BAD = [
    b"",
    b"garbage",
    f"00-{'0' * 32}-{PARENT}-01".encode(),
    f"00-{TRACE}-{'0' * 16}-01".encode(),
    f"01-{TRACE}-{PARENT}-01".encode(),
    f"00-{TRACE.upper()}-{PARENT}-01".encode(),
]


@pytest.mark.parametrize("bad", BAD)
def test_no_or_an_invalid_incoming_context_starts_a_new_trace_decided_by_the_proxy(bad: bytes) -> None:
    on = policy("parentbased_always_on").parse(scope(bad))
    off = policy("parentbased_always_off").parse(scope(bad))
    assert forwarded(on)[2] == "01" and on.sampled and on.parent_span == b""
    assert forwarded(off)[2] == "00" and not off.sampled
    assert forwarded(on)[0] != TRACE


def test_no_header_at_all_starts_a_trace() -> None:
    request = policy("parentbased_always_on").parse(scope(None))
    assert request.sampled and forwarded(request)[2] == "01"


def test_the_ratio_agrees_with_the_sdk_trace_id_rule_and_the_default_is_one_percent() -> None:
    sdk = TraceIdRatioBased(0.25)
    ours = TraceSampler.from_env({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"})
    for n in range(2000):
        trace_id = (n * 0x9E3779B97F4A7C15 << 7) % (1 << 128) | 1
        expected = sdk.should_sample(None, trace_id, "x").decision.is_sampled()
        assert ours.sampled(b"%032x" % trace_id, None) == expected
    default = TraceSampler.from_env({})
    assert default.parent_based and default.root == "ratio" and default.bound == round(0.01 * 2**64)
    roots = [policy("parentbased_traceidratio").parse(scope()).sampled for _ in range(20000)]
    assert 100 <= sum(roots) <= 320  # 1% of 20,000 is 200
    # traceidratio is not parent-based: an incoming sampled flag does not force it.
    never = TraceSampler.from_env({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"})
    assert not never.sampled(TRACE.encode(), True)


def test_unknown_samplers_and_arguments_fall_back_as_the_sdk_does() -> None:
    assert TraceSampler.from_env({"OTEL_TRACES_SAMPLER": "nonsense"}) == TraceSampler(True, "on", 2**64)
    ratio = TraceSampler.from_env({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "x"})
    assert ratio.bound == 2**64


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """A tracer provider as every process has one (ops.tracing's id generator) whose own sampler
    would drop everything: the proxy's decision must win."""
    from opentelemetry import trace

    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=TraceIdRatioBased(0.0), id_generator=tracing.id_generator())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer", provider.get_tracer)
    return exporter


def test_a_recorded_span_is_the_parent_the_backend_receives(exported: InMemorySpanExporter) -> None:
    spans = ProxySpans()
    for header in (f"00-{TRACE}-{PARENT}-01".encode(), None):
        request = policy("always_on").parse(scope(header))
        span = spans.start(request, 1)
        sent: list[Any] = []

        async def send(message: Any, sent: list[Any] = sent) -> None:
            sent.append(message)

        asyncio.run(recording_send(span, send)({"type": "http.response.start", "status": 502, "headers": []}))
        span.end()
        trace_id, span_id, flags = forwarded(request)
        recorded = exported.get_finished_spans()[-1]
        assert (f"{recorded.context.trace_id:032x}", f"{recorded.context.span_id:016x}", flags) == (
            trace_id,
            span_id,
            "01",
        )
        assert trace_id == request.trace_id.decode()
        parent = recorded.parent
        assert parent is None if header is None else parent is not None and f"{parent.span_id:016x}" == PARENT
        assert recorded.status.status_code.name == "ERROR"
        assert dict(recorded.attributes or {})["http.response.status_code"] == 502
        assert sent and sent[0]["status"] == 502
