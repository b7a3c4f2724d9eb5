"""The Django instrumentation with a fast path for the requests that are not sampled (99% at the
default parent-based 1%): they run in the trace context the SDK would give them (same trace id, a
new span id, flag 00, baggage kept) without the instrumentation's span, attributes, URL resolution
and metrics. Sampled requests go through the instrumentation unchanged. Loaded by
ops.tracing._instrument, only when tracing is on under a parent-based sampler.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.django import DjangoInstrumentor
from opentelemetry.instrumentation.django.middleware.otel_middleware import _DjangoMiddleware
from opentelemetry.instrumentation.propagators import get_global_response_propagator
from opentelemetry.instrumentation.wsgi import wsgi_getter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from ops.tracing import pending_trace_id_set

_EXCLUDED_URLS_VARIABLES = ("OTEL_PYTHON_DJANGO_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS")


class UnsampledFastMiddleware(_DjangoMiddleware):
    """Takes the sampling decision first, as the SDK would (a remote parent's flag under a
    parent-based sampler; the root sampler on a new trace id otherwise), and enters the Django
    instrumentation only for a request that is sampled. A new trace found sampled keeps the trace
    id it was decided on (ops.tracing's id generator hands it to the SDK's span)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        super().__init__(get_response)
        provider = trace.get_tracer_provider()
        # What the fast path cannot reproduce without a span: hooks, a response propagator,
        # excluded URLs (they get no context at all). With any of them, every request takes the
        # instrumentation's path.
        self._fast = (
            isinstance(provider, TracerProvider)
            and _DjangoMiddleware._otel_request_hook is None
            and _DjangoMiddleware._otel_response_hook is None
            and get_global_response_propagator() is None
            and not any(os.environ.get(name) for name in _EXCLUDED_URLS_VARIABLES)
        )
        if isinstance(provider, TracerProvider):
            self._sampler = provider.sampler
            self._ids = provider.id_generator

    def __call__(self, request: HttpRequest) -> HttpResponse:
        unsampled = self._unsampled_context(request) if self._fast else None
        if unsampled is None:
            try:
                return super().__call__(request)
            finally:
                pending_trace_id_set(0)  # unused when the instrumentation started no span
        token = otel_context.attach(unsampled)
        try:
            return self.get_response(request)
        finally:
            otel_context.detach(token)

    def _unsampled_context(self, request: HttpRequest) -> otel_context.Context | None:
        """The context an unsampled request runs in (what the SDK's dropped span would give), or
        None when the request is sampled."""
        parent_context = propagate.extract(request.META, getter=wsgi_getter)
        parent = trace.get_current_span(parent_context).get_span_context()
        if parent.is_valid:
            if parent.trace_flags.sampled:
                return None
            # parentbased_*: a remote parent that is not sampled means drop (the SDK's default).
            trace_id, trace_state = parent.trace_id, parent.trace_state
        else:
            trace_id, trace_state = self._ids.generate_trace_id(), None
            decision = self._sampler.should_sample(parent_context, trace_id, "HTTP", SpanKind.SERVER)
            if decision.decision.is_recording():
                pending_trace_id_set(trace_id)
                return None
        span = NonRecordingSpan(
            SpanContext(
                trace_id,
                self._ids.generate_span_id(),
                is_remote=False,
                trace_flags=TraceFlags(TraceFlags.DEFAULT),
                trace_state=trace_state,
            )
        )
        return trace.set_span_in_context(span, parent_context)

    # Django calls these for every request; an unsampled one has nothing for them to do (the
    # instrumentation's own versions build the absolute URI first).
    def process_view(self, request: HttpRequest, view_func: Any, *args: Any, **kwargs: Any) -> None:
        if self._environ_activation_key in request.META:
            super().process_view(request, view_func, *args, **kwargs)

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        if self._environ_activation_key in request.META:
            super().process_exception(request, exception)


class UnsampledFastDjangoInstrumentor(DjangoInstrumentor):
    """The Django instrumentor installing UnsampledFastMiddleware in place of its own middleware
    (same options, same position)."""

    _instance = None  # BaseInstrumentor keeps one instance per class: not DjangoInstrumentor's
    _opentelemetry_middleware = f"{__name__}.{UnsampledFastMiddleware.__qualname__}"
