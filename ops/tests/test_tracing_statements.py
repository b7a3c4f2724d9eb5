"""The tracer the psycopg instrumentation gets under the default (parent-based) sampler: a
statement is a span only under a sampled span; below an unsampled one, or outside any span (a
background loop's polling SQL), it starts none."""

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

from ops import tracing


def _statement_tracer(exported: InMemorySpanExporter) -> trace.Tracer:
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(SimpleSpanProcessor(exported))
    return tracing._SpansUnderSampledParents(provider).get_tracer("psycopg")


def test_a_statement_is_a_span_only_under_a_sampled_span() -> None:
    exported = InMemorySpanExporter()
    statements = _statement_tracer(exported)
    sampled = TracerProvider(sampler=ALWAYS_ON).get_tracer("web")
    unsampled = TracerProvider(sampler=ALWAYS_OFF).get_tracer("web")

    with statements.start_as_current_span("SELECT outside any span"):
        pass
    with unsampled.start_as_current_span("request not sampled"):
        with statements.start_as_current_span("SELECT under an unsampled request") as span:
            assert not span.is_recording()
    with sampled.start_as_current_span("request sampled") as request:
        with statements.start_as_current_span("SELECT under a sampled request"):
            pass

    (recorded,) = exported.get_finished_spans()
    assert recorded.name == "SELECT under a sampled request"
    assert recorded.parent is not None and recorded.parent.span_id == request.get_span_context().span_id
