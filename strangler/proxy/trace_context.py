"""The proxy's part of a trace: decide cheaply per request, record a span only when sampled.

Every request leaves the proxy with a W3C `traceparent`. An incoming valid one with the sampled flag
is continued as sampled; one without it is continued as not sampled (parent-based, like the SDK's
default); with no or a malformed incoming header the proxy starts a trace and decides itself with
the configured sampler (OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, the same names and the same
trace-id ratio rule as the OpenTelemetry SDK, so a downstream `traceidratio` agrees). That decision
is pure arithmetic on the trace id (no SDK call) and costs about as much as building the header.

Only a sampled request in a process whose tracing is on (ops.tracing.enabled()) touches the SDK:
ProxySpans starts a SERVER span whose span id becomes the parent id the backend receives. With no
OTLP endpoint nothing here imports or calls the SDK on the request path.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from random import getrandbits
from typing import Any, cast

from ops.tracing import DEFAULT_SAMPLER, DEFAULT_SAMPLER_ARG, enabled, pending_trace_id_set

_TRACE_ID_LIMIT = (1 << 64) - 1
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16
SAMPLERS = frozenset(
    {
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    }
)


@dataclass(frozen=True, slots=True)
class TraceSampler:
    """The configured head sampler, as the SDK reads it from the environment."""

    parent_based: bool
    root: str  # "on", "off" or "ratio": the decision for a request that continues no sampled context
    bound: int  # for "ratio": sampled when the trace id's lower 64 bits are below this

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TraceSampler:
        env = os.environ if environ is None else environ
        name = (env.get("OTEL_TRACES_SAMPLER") or DEFAULT_SAMPLER).strip().lower()
        if name not in SAMPLERS:
            name = "parentbased_always_on"  # what the SDK falls back to for an unknown name
        default_arg = DEFAULT_SAMPLER_ARG if name == DEFAULT_SAMPLER else "1.0"
        try:
            rate = float(env.get("OTEL_TRACES_SAMPLER_ARG") or default_arg)
        except ValueError:
            rate = 1.0  # the SDK's fallback for an unreadable ratio
        if not 0.0 <= rate <= 1.0:
            rate = 1.0
        root = name.removeprefix("parentbased_").removeprefix("always_")
        root = "ratio" if root == "traceidratio" else root
        return cls(
            parent_based=name.startswith("parentbased_"),
            root=root,
            bound=round(rate * (_TRACE_ID_LIMIT + 1)),
        )

    def sampled(self, trace_id: bytes, parent_sampled: bool | None) -> bool:
        """`trace_id` in lowercase hex; `parent_sampled` None when the request carries no context."""
        if self.parent_based and parent_sampled is not None:
            return parent_sampled
        if self.root == "ratio":
            return int(trace_id[16:], 16) < self.bound
        return self.root == "on"


def trace_decide(
    sampler: TraceSampler, trace_id: bytes | None, parent_span: bytes | None, flags: bytes | None
) -> tuple[bytes, bytes, bool]:
    """The trace id, the incoming parent span id (b"" for a new trace) and whether this request is
    sampled, from the parts of a well-formed incoming traceparent (None when there was none)."""
    if trace_id is None or parent_span is None or trace_id == _ZERO_TRACE or parent_span == _ZERO_SPAN:
        trace_id = b"%032x" % getrandbits(128)
        return trace_id, b"", sampler.sampled(trace_id, None)
    return trace_id, parent_span, sampler.sampled(trace_id, bool(int(flags or b"0", 16) & 1))


def traceparent(trace_id: bytes, span_id: int, sampled: bool) -> bytes:
    return b"00-%s-%016x-%s" % (trace_id, span_id, b"01" if sampled else b"00")


class ProxySpans:
    """The SDK side, built only when tracing is on. The proxy's tracer samples everything it is
    asked to: the decision was made per request already (TraceSampler), and asking the SDK's own
    sampler again would drop 99% of the proxy's sampled roots. A new trace's root span takes the
    trace id the proxy already chose and sampled by, through the id generator every process's
    provider has for that (ops.tracing.pending_trace_id_set, as the web fast path uses it), so the
    span and the forwarded header agree."""

    def __init__(self) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON

        self._trace = trace
        # The SDK's Tracer keeps its sampler as a plain attribute; this tracer is the proxy's alone.
        tracer = cast(Any, trace.get_tracer("strangler.proxy"))
        tracer.sampler = ALWAYS_ON
        self.tracer = tracer

    def start(self, request: Any, started_ns: int) -> Any:
        """Starts the proxy's SERVER span for `request` (a sampled ProxyRequest) and rewrites the
        traceparent it forwards so that the backend's parent is this span."""
        from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

        trace_id = int(request.trace_id, 16)
        parent = None
        if request.parent_span:
            remote = SpanContext(
                trace_id=trace_id,
                span_id=int(request.parent_span, 16),
                is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
            parent = self._trace.set_span_in_context(NonRecordingSpan(remote))
        else:
            pending_trace_id_set(trace_id)
        try:
            span = self.tracer.start_span(
                "proxy",
                context=parent,
                kind=SpanKind.SERVER,
                start_time=started_ns,
                attributes={
                    "http.request.method": request.method,
                    "url.path": request.path[:500],
                    "http.target": request.target[:500].decode(errors="replace"),
                    "client.address": request.peer,
                    "http.request_id": request.request_id.decode(),
                },
            )
        finally:
            pending_trace_id_set(0)
        own = span.get_span_context()
        request.forward_headers[request.traceparent_at] = (
            b"traceparent",
            traceparent(request.trace_id, own.span_id, True),
        )
        request.span = span
        return span


def proxy_spans_if_enabled() -> ProxySpans | None:
    return ProxySpans() if enabled() else None


def now_ns() -> int:
    return time.time_ns()


def span_route(span: Any, route: Any) -> None:
    """Names the proxy's span after the matched route (a routing.Route)."""
    span.update_name(f"proxy {route.name}")
    span.set_attribute("strangler.route", route.name)
    if route.slice is not None:
        span.set_attribute("strangler.slice", route.slice.name)


def span_decision(span: Any, decision: Any) -> None:
    """The backend a routing.Decision chose, and why."""
    span.set_attribute("strangler.backend", decision.backend.name)
    span.set_attribute("strangler.generation", decision.generation)
    span.set_attribute("strangler.reason", decision.reason)


def recording_send(span: Any, send: Any) -> Any:
    """`send` that notes the response status on the span; a 5xx the proxy answers or relays marks it
    failed unless a failure with its exception was recorded already."""

    async def send_noted(message: Any) -> None:
        if message["type"] == "http.response.start":
            status = message["status"]
            span.set_attribute("http.response.status_code", status)
            if status >= 500 and not span.status.status_code.value:  # UNSET is 0
                from opentelemetry.trace import Status, StatusCode

                span.set_status(Status(StatusCode.ERROR, f"status {status}"))
        await send(message)

    return send_noted
