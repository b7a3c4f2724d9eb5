"""Middleware every process runs: request id and log context, metrics, and the body size limit."""

import io
import re
import time
import uuid
from collections.abc import Callable

import structlog
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from ops.errors import error_body
from ops.metrics import LATENCY, REQUESTS

logger = structlog.get_logger(__name__)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


def _route_of(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    return match.route if match and match.route else "unmatched"


class RequestContextMiddleware:
    """Binds a request id (taken from X-Request-ID when well-formed) and the trace id to every
    log line of the request, echoes the id back, and records per-route metrics."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        trace = _TRACEPARENT.match(request.headers.get("traceparent", ""))
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            request_id=request_id, trace_id=trace.group(1) if trace else None
        )
        request.request_id = request_id  # type: ignore[attr-defined]
        response = self.get_response(request)
        response["X-Request-ID"] = request_id
        elapsed = time.perf_counter() - started
        route = _route_of(request)
        REQUESTS.labels(settings.SERVICE, route, request.method, str(response.status_code)).inc()
        LATENCY.labels(settings.SERVICE, route, request.method).observe(elapsed)
        if response.status_code >= 500:
            logger.error(
                "http.request",
                method=request.method,
                path=request.path,
                status=response.status_code,
                duration_ms=round(elapsed * 1000, 2),
            )
        else:
            logger.debug(
                "http.request",
                method=request.method,
                path=request.path,
                status=response.status_code,
                duration_ms=round(elapsed * 1000, 2),
            )
        return response


class BodySizeLimitMiddleware:
    """Refuses a body larger than MAX_REQUEST_BODY_BYTES with 413 before anything reads it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.MAX_REQUEST_BODY_BYTES
        length = request.META.get("CONTENT_LENGTH") or ""
        if not length and "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            return self._chunked(request, limit)
        try:
            size = int(length or "0")
        except ValueError:
            return JsonResponse(error_body("bad_request", "Content-Length is not a number."), status=400)
        if size > limit:
            return _too_large(f"The body is {size} bytes; the limit is {limit}.")
        return self.get_response(request)

    def _chunked(self, request: HttpRequest, limit: int) -> HttpResponse:
        """A chunked body has no Content-Length, so Django would read none of it and the view
        would see an empty body. Read it here, at most one byte past the limit, and hand it on
        as a body of known length."""
        stream = request.META.get("wsgi.input")
        if stream is None:  # not WSGI; the project serves Django over WSGI only
            return self.get_response(request)
        body = bytearray()
        while len(body) <= limit:
            chunk = stream.read(limit + 1 - len(body))
            if not chunk:
                break
            body += chunk
        if len(body) > limit:
            return _too_large(f"The chunked body is more than {limit} bytes, the limit.")
        request.META["CONTENT_LENGTH"] = str(len(body))
        # WSGIRequest wraps wsgi.input in a stream sized from Content-Length (none: empty) when
        # it is built, before any middleware runs; replace it with the buffered body.
        request._stream = io.BytesIO(bytes(body))
        return self.get_response(request)


def _too_large(message: str) -> JsonResponse:
    return JsonResponse(error_body("payload_too_large", message), status=413)
