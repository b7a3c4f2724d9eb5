"""Spans of the event hops (CDC handling, broker publish, consume, outbox write), each continuing the
W3C traceparent the event carries. With tracing off (ops.tracing.enabled() is false) nothing is
created: the helpers yield None and cost a function call."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from ops import tracing

TRACER_NAME = "cdc"


def subject_attributes(subject: str) -> dict[str, str]:
    """A CloudEvent subject "order:42" as span attributes, so `observability traces show --where
    order.id=42` finds the trace: the subject itself and `<aggregate type>.id`."""
    attributes = {"cloudevents.event_subject": subject}
    aggregate_type, _, aggregate_id = subject.partition(":")
    if aggregate_type and aggregate_id:
        attributes[f"{aggregate_type}.id"] = aggregate_id
    return attributes


def event_attributes(event: Mapping[str, Any]) -> dict[str, str]:
    """Attributes of a CloudEvent (a dict as published) on any span of its hops."""
    attributes = subject_attributes(str(event.get("subject") or ""))
    attributes["cloudevents.event_id"] = str(event.get("id") or "")
    attributes["cloudevents.event_type"] = str(event.get("type") or "")
    return attributes


@contextmanager
def span_continuing(
    name: str,
    *,
    traceparent: str | None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span | None]:
    """A current span, child of `traceparent` (a new trace when it is empty or malformed). An
    exception leaving the block marks the span as failed with it. None when tracing is off."""
    if not tracing.enabled():
        yield None
        return
    parent = tracing.context_from_traceparent(traceparent)
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes=dict(attributes or {}),
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as error:
            tracing.record_failure(span, error)
            raise


def span_start(
    name: str,
    *,
    traceparent: str | None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> Span | None:
    """A started span, not made current, child of `traceparent` (the caller ends it); None when
    tracing is off. For spans that outlive the block that starts them (a batch's publishes)."""
    if not tracing.enabled():
        return None
    return trace.get_tracer(TRACER_NAME).start_span(
        name,
        context=tracing.context_from_traceparent(traceparent),
        kind=kind,
        attributes=dict(attributes or {}),
    )


def span_traceparent(span: Span | None) -> str | None:
    """The W3C traceparent naming `span` (sampled or not); None without a valid span."""
    if span is None:
        return None
    context = span.get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def failure_span(
    name: str, *, traceparent: str | None, error: BaseException, attributes: Mapping[str, Any]
) -> None:
    """A span that only records a failure (a dead-lettered message), child of `traceparent`."""
    span = span_start(name, traceparent=traceparent, kind=SpanKind.CONSUMER, attributes=attributes)
    if span is not None:
        tracing.record_failure(span, error)
        span.end()
