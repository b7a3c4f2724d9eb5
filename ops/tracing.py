"""OpenTelemetry traces of every process, configured by the standard OTEL_* variables.

With no OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) nothing is
set up: no provider, no instrumentation, so tracing costs next to nothing. With one, each process
exports its spans over OTLP/HTTP in batches; the sampler is the standard OTEL_TRACES_SAMPLER /
OTEL_TRACES_SAMPLER_ARG, defaulting here to parent-based 1% (DEFAULT_SAMPLER) instead of the SDK's
sample-everything. Where no instrumentation exists (broker messages, the WAL, outbox rows) the W3C
`traceparent` is carried by hand: `current_traceparent()` to write one, `context_from_traceparent()`
to continue one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, MutableMapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any, cast

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags
from opentelemetry.util import types

DEFAULT_SAMPLER = "parentbased_traceidratio"
DEFAULT_SAMPLER_ARG = "0.01"
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_configured: list[str] = []
# The trace id a new trace was already drawn and found sampled with, by the web fast path
# (ops.tracing_web) or the proxy (strangler.proxy.trace_context): the SDK's span takes it (_TraceIds).
_pending_trace_id: ContextVar[int] = ContextVar("ops_tracing_pending_trace_id", default=0)


def endpoint_configured(environ: MutableMapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true" or env.get("OTEL_TRACES_EXPORTER") == "none":
        return False
    return bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def configure(*, service: str, role: str) -> bool:
    """Sets up the tracer provider, the OTLP/HTTP exporter and the instrumentations, once per
    process; returns whether tracing is on. `service` names the process kind (SERVICE) and is the
    default `service.name`; `role` (web, celery-worker, consume production, ...) tells processes
    of one service apart in a trace."""
    if _configured:
        return True
    if not endpoint_configured():
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    os.environ.setdefault("OTEL_TRACES_SAMPLER", DEFAULT_SAMPLER)
    if os.environ["OTEL_TRACES_SAMPLER"] == DEFAULT_SAMPLER:
        os.environ.setdefault("OTEL_TRACES_SAMPLER_ARG", DEFAULT_SAMPLER_ARG)
    resource = Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME") or service, "process.role": role}
    ).merge(OTELResourceDetector().detect())
    # The sampler comes from OTEL_TRACES_SAMPLER.
    provider = TracerProvider(resource=resource, id_generator=id_generator())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _instrument(provider, unsampled_skipped=os.environ["OTEL_TRACES_SAMPLER"].startswith("parentbased_"))
    _configured.append(role)
    return True


def _instrument(provider: trace.TracerProvider, *, unsampled_skipped: bool) -> None:
    """The maintained instrumentations. Under a parent-based sampler (the default) every span
    below an unsampled one is dropped, so the work that would build it is skipped: a web request
    that is not sampled runs without the Django instrumentation's span, attributes and metrics
    (ops.tracing_web), and its statements without psycopg spans (_SpansUnderSampledParents).
    A sampled request is traced by the instrumentations exactly as they are."""
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    if unsampled_skipped:
        from ops.tracing_web import UnsampledFastDjangoInstrumentor

        UnsampledFastDjangoInstrumentor().instrument()
        PsycopgInstrumentor().instrument(
            enable_commenter=False, tracer_provider=_SpansUnderSampledParents(provider)
        )
    else:
        DjangoInstrumentor().instrument()
        PsycopgInstrumentor().instrument(enable_commenter=False)
    CeleryInstrumentor().instrument()
    RequestsInstrumentor().instrument()


def id_generator() -> Any:
    """The SDK id generator of every process's provider: random ids, except that a new trace's
    first span takes the id pending_trace_id_set named."""
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class _TraceIds(RandomIdGenerator):
        """Random ids, except a new trace's id already drawn and found sampled (pending_trace_id_set):
        the span started next gets that id, and so the same sampling decision."""

        def generate_trace_id(self) -> int:
            pending = _pending_trace_id.get()
            if pending:
                _pending_trace_id.set(0)
                return pending
            return super().generate_trace_id()

    return _TraceIds()


def pending_trace_id_set(trace_id: int) -> None:
    """The id the next new trace's first span takes (a sampled new trace the web fast path or the
    proxy decided on); 0 clears it."""
    _pending_trace_id.set(trace_id)


class _SpansUnderSampledParents(trace.TracerProvider):
    """Tracers that start no span below an unsampled one (a parent-based sampler would drop it):
    for the psycopg instrumentation, whose statements then cost a context lookup instead of a
    dropped span each (sampler, ids, a context switch). With no span current (a statement outside
    any request, task or event) there is no span either (_unsampled_parent)."""

    def __init__(self, provider: trace.TracerProvider) -> None:
        self._provider = provider

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: types.Attributes = None,
    ) -> trace.Tracer:
        return _TracerUnderSampledParents(
            self._provider.get_tracer(
                instrumenting_module_name, instrumenting_library_version, schema_url, attributes
            )
        )


class _TracerUnderSampledParents(trace.Tracer):
    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def start_span(  # type: ignore[override]
        self, name: str, context: otel_context.Context | None = None, **kwargs: Any
    ) -> trace.Span:
        unsampled = _unsampled_parent(context)
        if unsampled is not None:
            return unsampled
        return self._tracer.start_span(name, context, **kwargs)

    def start_as_current_span(  # type: ignore[override]
        self, name: str, context: otel_context.Context | None = None, **kwargs: Any
    ) -> AbstractContextManager[trace.Span]:
        unsampled = _unsampled_parent(context)
        if unsampled is not None:
            return nullcontext(unsampled)  # the parent stays the current span
        return cast(
            AbstractContextManager[trace.Span], self._tracer.start_as_current_span(name, context, **kwargs)
        )


def _unsampled_parent(context: otel_context.Context | None) -> trace.Span | None:
    """A non-recording stand-in for the span not started below an unsampled parent, else None.
    A statement outside any span (the polling SQL of background loops: sync streams, the proxy's
    control sync, CDC state flushes) starts no trace of its own either: at any sampling rate those
    would be most of the traces, one statement each, and say nothing about a request."""
    parent = trace.get_current_span(context).get_span_context()
    if not parent.is_valid:
        return trace.INVALID_SPAN
    if not parent.trace_flags.sampled:
        return NonRecordingSpan(parent)
    return None


def enabled() -> bool:
    return bool(_configured)


def current_traceparent() -> str:
    """The W3C traceparent of the current span, or "" outside any valid span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return ""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id a well-formed W3C traceparent names, else None."""
    match = _TRACEPARENT.match(traceparent or "")
    return match.group(1) if match and match.group(1) != "0" * 32 else None


def context_from_traceparent(traceparent: str | None) -> otel_context.Context | None:
    """A context whose current span is the remote parent named by `traceparent`; None when it is
    missing or malformed (the caller then starts a new trace)."""
    match = _TRACEPARENT.match(traceparent or "")
    if not match or match.group(1) == "0" * 32 or match.group(2) == "0" * 16:
        return None
    parent = SpanContext(
        trace_id=int(match.group(1), 16),
        span_id=int(match.group(2), 16),
        is_remote=True,
        trace_flags=TraceFlags(int(match.group(3), 16) & 0x01),
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


@contextmanager
def continued(traceparent: str | None) -> Iterator[None]:
    """Makes the span named by `traceparent` the current parent for the block (when it names one)."""
    parent = context_from_traceparent(traceparent)
    if parent is None:
        yield
        return
    token = otel_context.attach(parent)
    try:
        yield
    finally:
        otel_context.detach(token)


def record_failure(span: trace.Span, error: BaseException) -> None:
    """Marks `span` as failed with the exception (the test of a failing hop looks for both)."""
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:500]))


def add_trace_ids(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the current span's trace_id and span_id on every line (a trace_id bound
    from an incoming traceparent stays when no span is current, as when tracing is off)."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = f"{context.trace_id:032x}"
        event["span_id"] = f"{context.span_id:016x}"
    return event
