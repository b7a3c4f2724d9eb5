"""The proxy's ASGI application: route, forward, stream back, and hand reads to the shadow mirror.

Per request it does only in-memory work (header policy, routing table, cohort hash, pins) and one
upstream exchange on a pooled keep-alive connection; everything that touches the control database
runs in background loops (see control_sync.py). The parts each have a module: header_policy.py reads
the request into one ProxyRequest, routing.py decides, freeze.py holds writes during a cutover,
upstream_client.py writes the request to a backend, mirror.py shadows reads. Paths under /_strangler/
are the proxy's own Django side (health, metrics, staff API, admin).
"""

from __future__ import annotations

import ipaddress
import json
import random
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from email.utils import formatdate
from typing import Any

import structlog
from django.conf import settings

from ops.tracing import record_failure
from strangler.models import Phase
from strangler.proxy import metrics, slice_metrics
from strangler.proxy.analysis import CanaryAnalyzer
from strangler.proxy.error_responses import error_send
from strangler.proxy.freeze import WriteFreeze
from strangler.proxy.header_policy import HOP_BY_HOP, PIN_COOKIE, HeaderPolicy
from strangler.proxy.mirror import ShadowMirror
from strangler.proxy.pins import Pins
from strangler.proxy.request import ProxyRequest, RequestRefused
from strangler.proxy.routing import LEGACY, NEW, SAFE_METHODS, Decision, RoutingTable, decide
from strangler.proxy.trace_context import (
    proxy_spans_if_enabled,
    recording_send,
    span_decision,
    span_route,
)
from strangler.proxy.upstream import UpstreamConnection, UpstreamError, UpstreamTimeout
from strangler.proxy.upstream_client import BodyTooLarge, ClientGone, UpstreamClient
from strangler.services import ShadowResult

logger = structlog.get_logger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# Hop-by-hop response headers, and the request id the proxy sets itself (one per response).
_DROP_RESPONSE = HOP_BY_HOP | {b"proxy-authenticate", b"x-request-id"}
_JSON = [(b"content-type", b"application/json")]
# The proxy's own routes only internal callers may read (the scraper reads the metrics directly).
_INTERNAL_OWN_ROUTES = frozenset({"/_strangler/routing", "/_strangler/metrics", "/_strangler/metrics/"})
# An HTTP/1.0 client cannot read chunked bodies: an answer without a length is collected and sent
# with one, up to this size (past it the client gets a 502 rather than a body it cannot parse).
_HTTP10_MAX_BUFFER = 16 * 1024 * 1024


class ProxyApp:
    def __init__(self, *, django_app: Any = None) -> None:
        self.table: RoutingTable | None = None
        self.max_body = settings.STRANGLER_MAX_BODY_BYTES
        self.policy = HeaderPolicy(
            trusted_proxies=settings.STRANGLER_TRUSTED_PROXIES,
            override_secret=settings.STRANGLER_OVERRIDE_SECRET,
            max_body=self.max_body,
            own_cookies=(settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME),
        )
        self.upstream = UpstreamClient(
            connect_timeout=settings.STRANGLER_CONNECT_TIMEOUT,
            read_timeout=settings.STRANGLER_READ_TIMEOUT,
            max_body=self.max_body,
        )
        self.freeze = WriteFreeze()
        self.mirror = ShadowMirror(
            client=self.upstream,
            max_in_flight=settings.STRANGLER_SHADOW_MAX_IN_FLIGHT,
            max_body=settings.STRANGLER_SHADOW_MAX_BODY_BYTES,
        )
        self.pins = Pins(max_entries=settings.STRANGLER_MAX_PINS)
        self.analyzer = CanaryAnalyzer()
        self.django_app = django_app
        self.internal_networks = [ipaddress.ip_network(n) for n in settings.STRANGLER_INTERNAL_NETWORKS]
        self.internal_token = settings.STRANGLER_INTERNAL_TOKEN.encode()
        # A backend's Prometheus endpoint is for its scraper, which reads it directly: through the
        # proxy these paths (with or without a trailing slash) are internal on every route.
        self.scraper_only = frozenset(
            variant
            for p in settings.STRANGLER_SCRAPER_ONLY_PATHS
            for variant in (p.rstrip("/") or "/", p.rstrip("/") + "/")
        )
        self.access_log = settings.STRANGLER_ACCESS_LOG
        self.background: Any = None  # ControlSync, set by the lifespan
        self.spans = proxy_spans_if_enabled()  # None when tracing is off: no SDK on the request path

    # Shared with the background loops (control_sync.py).

    @property
    def unhealthy(self) -> dict[tuple[str, int], float]:
        return self.upstream.unhealthy

    @property
    def shadow_results(self) -> list[ShadowResult]:
        return self.mirror.results

    @shadow_results.setter
    def shadow_results(self, results: list[ShadowResult]) -> None:
        self.mirror.results = results

    def install(self, table: RoutingTable) -> None:
        self.table = table
        metrics.ROUTING_VERSION.set(table.version)
        slice_metrics.slices_publish(table)
        self.freeze.install(table)

    # ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if scope["path"].startswith("/_strangler/"):
                await self.own_route(scope, receive, send)
            else:
                await self.handle(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    async def own_route(self, scope: Scope, receive: Receive, send: Send) -> None:
        """/_strangler/routing (internal callers): the table this process routes with; the rest of
        /_strangler/ is the Django side."""
        if scope["path"] in _INTERNAL_OWN_ROUTES:
            token = next((v for n, v in scope["headers"] if n == b"x-strangler-internal-token"), b"")
            client = scope.get("client")
            if not self._internal_caller(client[0] if client else "", token):
                await error_send(
                    send,
                    status=403,
                    code="internal_route",
                    message="Only internal callers may read this.",
                    request_id=_new_request_id(),
                )
                return
        if scope["path"] == "/_strangler/routing":
            body = json.dumps(self._routing_state()).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*_JSON, (b"content-length", b"%d" % len(body))],
                }
            )
            await send({"type": "http.response.body", "body": body})
        elif self.django_app is not None:
            await self.django_app(scope, receive, send)
        else:
            await error_send(
                send,
                status=404,
                code="not_found",
                message="No such proxy endpoint.",
                request_id=_new_request_id(),
            )

    def _routing_state(self) -> dict[str, Any]:
        table, now = self.table, time.time()
        return {
            "version": table.version if table else None,
            "slices": {
                n: {"phase": s.phase, "weight": s.weight, "shadow": s.shadow_enabled, "frozen": s.frozen(now)}
                for n, s in (table.slices.items() if table else [])
            },
            "held_writes": self.freeze.held,
            "writes_in_flight": self.freeze.in_flight,
            "freeze_acks": self.freeze.acks(now),
            "unhealthy": sorted(f"{h}:{p}" for (h, p), until in self.unhealthy.items() if until > now),
            "pins": len(self.pins),
            "shadow_in_flight": self.mirror.in_flight,
        }

    async def lifespan(self, receive: Receive, send: Send) -> None:
        from strangler.proxy.control_sync import ControlSync

        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.background = ControlSync(self)
                    await self.background.start()
                except Exception as exc:
                    logger.exception("proxy.startup_failed")
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.background is not None:
                    await self.background.stop()
                self.upstream.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _internal_caller(self, peer: str, token: bytes) -> bool:
        if self.internal_token and token and secrets.compare_digest(token, self.internal_token):
            return True
        if not self.internal_networks:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.internal_networks)

    # The proxied path

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started_ns = time.time_ns()
        try:
            request = self.policy.parse(scope)
        except RequestRefused as exc:
            await error_send(
                send, status=exc.status, code=exc.code, message=exc.message, request_id=exc.request_id
            )
            return
        if not request.sampled or self.spans is None:
            await self.route_and_forward(request, receive, send)
            return
        span = self.spans.start(request, started_ns)
        try:
            await self.route_and_forward(request, receive, recording_send(span, send))
        except BaseException as exc:
            record_failure(span, exc)
            raise
        finally:
            span.end()

    async def route_and_forward(self, request: ProxyRequest, receive: Receive, send: Send) -> None:
        table = self.table
        if table is None or table.default_backend is None:
            await self._refuse(send, request, 503, "not_ready", "The proxy has no routing table yet.")
            return
        method, path = request.method, request.path
        route = table.match(method, path)
        if request.span is not None:
            span_route(request.span, route)
        if (route.exposure == "internal" or path in self.scraper_only) and not self._internal_caller(
            request.peer, request.internal_token
        ):
            await self._refuse(
                send, request, 403, "internal_route", f"{path[:200]} is not available from outside."
            )
            return
        now = time.time()
        if route.sunset is not None and now >= route.sunset:
            await self._gone(send, request, route.sunset)
            return
        decision = decide(
            table=table, route=route, request=request, pins=self.pins, now=now, sample=random.random()
        )
        slice_ = route.slice
        writes_to = slice_.name if slice_ is not None and not route.reads(method) else None
        if slice_ is not None and writes_to is not None and slice_.frozen(now):
            if not await self.freeze.hold(slice_.name):
                await self._refuse(
                    send,
                    request,
                    503,
                    "write_frozen",
                    "Writes to this resource are paused for a moment.",
                    extra_headers=[(b"retry-after", b"1")],
                )
                return
            table = self.table or table
            route = table.match(method, path)
            decision = decide(
                table=table, route=route, request=request, pins=self.pins, now=time.time(), sample=1.0
            )
        decision.version = table.version
        if writes_to is None:
            await self.forward(request, decision, receive, send)
            return
        # No await since the freeze check above: a freeze loaded meanwhile sees this write in flight
        # and is acknowledged only once it has been answered.
        self.freeze.write_started(writes_to)
        try:
            await self.forward(request, decision, receive, send)
        finally:
            self.freeze.write_finished(writes_to)

    async def forward(self, request: ProxyRequest, decision: Decision, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        request.body = message.get("body", b"")
        request.more_body = message.get("more_body", False)
        if len(request.body) > self.max_body:
            await self._too_large(send, request, len(request.body))
            return
        route = decision.route
        slice_ = route.slice
        canary = slice_ is not None and slice_.phase == Phase.CANARY
        if request.span is not None:
            span_decision(request.span, decision)
        sent_at = time.perf_counter()
        try:
            conn = await self.upstream.send(request, decision.backend, receive=receive)
        except BodyTooLarge as exc:
            await self._too_large(send, request, exc.size)
            return
        except ClientGone:
            return
        except UpstreamError as exc:
            elapsed = time.perf_counter() - sent_at
            metrics.UPSTREAM_FAILURES.labels(route.name, decision.backend.name, _slice_label(route)).inc()
            if canary:
                self.analyzer.record(slice_.name, decision.generation, elapsed, True)  # type: ignore[union-attr]
            if self._may_fall_back(request, decision):
                await self._fallback(send, request, decision, str(exc))
                return
            await self._upstream_failed(send, request, decision, exc, elapsed)
            return
        elapsed = time.perf_counter() - sent_at
        status = conn.status
        if canary:
            self.analyzer.record(slice_.name, decision.generation, elapsed, status >= 500)  # type: ignore[union-attr]
        if status >= 500 and self._may_fall_back(request, decision):
            conn.discard()
            metrics.observe(route.name, decision.backend.name, _slice_label(route), status, elapsed)
            await self._fallback(send, request, decision, f"status {status}")
            return
        await self._relay(send, conn, request, decision, elapsed)

    @staticmethod
    def _may_fall_back(request: ProxyRequest, decision: Decision) -> bool:
        """An idempotent read the new backend could not answer may be answered by legacy instead."""
        return (
            decision.generation == NEW
            and request.method in SAFE_METHODS
            and request.replayable
            and decision.route.slice is not None
        )

    @staticmethod
    async def _refuse(
        send: Send,
        request: ProxyRequest,
        status: int,
        code: str,
        message: str,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """An answer the proxy makes itself for this request (JSON error shape, its request id)."""
        await error_send(
            send,
            status=status,
            code=code,
            message=message,
            request_id=request.request_id,
            extra_headers=extra_headers,
        )

    @staticmethod
    async def _gone(send: Send, request: ProxyRequest, sunset: float) -> None:
        """A route past its sunset (RFC 8594): 410 Gone, with the date it was retired."""
        when = formatdate(sunset, usegmt=True)
        await error_send(
            send,
            status=410,
            code="gone",
            message=f"{request.path[:200]} was retired on {when}.",
            request_id=request.request_id,
            details={"sunset": when},
            extra_headers=[(b"sunset", when.encode())],
        )

    async def _too_large(self, send: Send, request: ProxyRequest, size: int) -> None:
        await self._refuse(
            send, request, 413, "payload_too_large", f"The body is over {self.max_body} bytes (read {size})."
        )

    async def _fallback(self, send: Send, request: ProxyRequest, decision: Decision, why: str) -> None:
        slice_ = decision.route.slice
        assert slice_ is not None
        metrics.FALLBACKS.labels(decision.route.name).inc()
        logger.warning(
            "proxy.fallback_to_legacy",
            route=decision.route.name,
            reason=why,
            request_id=request.request_id.decode(),
            trace_id=_trace_id(request),
        )
        legacy = Decision(decision.route, LEGACY, slice_.legacy, reason="fallback", version=decision.version)
        if request.span is not None:
            request.span.add_event("fallback to legacy", {"reason": why[:200]})
            span_decision(request.span, legacy)
        sent_at = time.perf_counter()
        try:
            conn = await self.upstream.send(request, legacy.backend)
        except UpstreamError as exc:
            metrics.UPSTREAM_FAILURES.labels(
                decision.route.name, legacy.backend.name, _slice_label(decision.route)
            ).inc()
            await self._upstream_failed(send, request, legacy, exc, time.perf_counter() - sent_at)
            return
        await self._relay(send, conn, request, legacy, time.perf_counter() - sent_at)

    async def _upstream_failed(
        self, send: Send, request: ProxyRequest, decision: Decision, exc: UpstreamError, elapsed: float
    ) -> None:
        """The backend the request went to (with no fallback left) failed: 504 when it did not answer
        in time, else 502; counted, logged and marked on the proxy's span."""
        route, backend = decision.route, decision.backend
        if request.span is not None:
            record_failure(request.span, exc)
        logger.error(
            "proxy.upstream_failed",
            route=route.name,
            backend=backend.name,
            error=str(exc),
            request_id=request.request_id.decode(),
            trace_id=_trace_id(request),
        )
        timed_out = isinstance(exc, UpstreamTimeout)
        metrics.observe(route.name, backend.name, _slice_label(route), 504 if timed_out else 502, elapsed)
        if timed_out:
            await self._refuse(send, request, 504, "upstream_timeout", "The service did not answer in time.")
        else:
            await self._refuse(send, request, 502, "bad_gateway", "The service is unavailable.")

    async def _relay(
        self, send: Send, conn: UpstreamConnection, request: ProxyRequest, decision: Decision, elapsed: float
    ) -> None:
        status = conn.status
        response_headers = [(n, v) for n, v in conn.headers if n not in _DROP_RESPONSE]
        response_headers.append((b"x-request-id", request.request_id))
        if decision.pin_seconds:
            seconds = int(decision.pin_seconds + 0.999)
            response_headers.append(
                (
                    b"set-cookie",
                    PIN_COOKIE
                    + b"=%d; Max-Age=%d; Path=/; HttpOnly; SameSite=Lax"
                    % (int(time.time()) + seconds, seconds),
                )
            )
        shadow = request.replayable and self.mirror.wants(decision)
        kept: list[bytes] = []
        http10_unsized = request.http_version == "1.0" and not _has_length(conn.headers)
        try:
            if conn.done:
                data = b"".join(conn.chunks)
                conn.chunks.clear()
                conn.finish()
                if http10_unsized and request.method != "HEAD" and status not in (204, 304):
                    response_headers.append((b"content-length", b"%d" % len(data)))
                await send({"type": "http.response.start", "status": status, "headers": response_headers})
                await send({"type": "http.response.body", "body": data})
                kept.append(data)
            elif http10_unsized:
                whole = await self._relay_whole(send, conn, request, status, response_headers)
                if whole is None:
                    return
                kept.append(whole)
            else:
                await send({"type": "http.response.start", "status": status, "headers": response_headers})
                size = 0
                while True:
                    chunk = await conn.next_chunk()
                    if chunk is None:
                        break
                    if shadow:
                        size += len(chunk)
                        if size <= self.mirror.max_body:
                            kept.append(chunk)
                        else:
                            shadow = False
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                conn.finish()
                await send({"type": "http.response.body", "body": b""})
        except UpstreamError as exc:
            # Headers went out already: the only honest signal left is to cut the response short.
            conn.discard()
            logger.error(
                "proxy.upstream_broke_off",
                route=decision.route.name,
                backend=decision.backend.name,
                error=str(exc),
                request_id=request.request_id.decode(),
                trace_id=_trace_id(request),
            )
            raise
        metrics.observe(
            decision.route.name, decision.backend.name, _slice_label(decision.route), status, elapsed
        )
        if self.access_log or status >= 500:
            log = logger.error if status >= 500 else logger.info
            log(
                "proxy.request",
                method=request.method,
                path=request.target.decode(errors="replace"),
                status=status,
                route=decision.route.name,
                backend=decision.backend.name,
                generation=decision.generation,
                reason=decision.reason,
                routing_version=decision.version,
                upstream_ms=round(elapsed * 1000, 2),
                request_id=request.request_id.decode(),
                trace_id=_trace_id(request),
            )
        if shadow:
            # The customer's answer has gone out; the mirror runs after it and never slows it.
            body = b"".join(kept)
            if len(body) <= self.mirror.max_body:
                legacy_answer = (
                    status,
                    {n.decode(errors="replace"): v.decode(errors="replace") for n, v in conn.headers},
                    body,
                )
                self.mirror.start(decision, request, legacy_answer)
                if request.span is not None:
                    request.span.add_event("shadow request mirrored")

    async def _relay_whole(
        self,
        send: Send,
        conn: UpstreamConnection,
        request: ProxyRequest,
        status: int,
        headers: list[tuple[bytes, bytes]],
    ) -> bytes | None:
        """An answer without a length for an HTTP/1.0 client: collected, then sent with its length
        (None when it was too large and the client got an error instead)."""
        parts: list[bytes] = []
        size = 0
        while (chunk := await conn.next_chunk()) is not None:
            size += len(chunk)
            if size > _HTTP10_MAX_BUFFER:
                conn.discard()
                await self._refuse(
                    send,
                    request,
                    502,
                    "response_too_large",
                    "The answer is too large to send to an HTTP/1.0 client; use HTTP/1.1.",
                )
                return None
            parts.append(chunk)
        conn.finish()
        body = b"".join(parts)
        headers.append((b"content-length", b"%d" % len(body)))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return body


def _slice_label(route: Any) -> str:
    return route.slice.name if route.slice is not None else metrics.NO_SLICE


def _has_length(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name == b"content-length" for name, _ in headers)


def _trace_id(request: ProxyRequest) -> str | None:
    """The trace id the proxy forwards to the backend (trace_context.py), for its log lines."""
    return request.trace_id.decode() or None


def _new_request_id() -> bytes:
    return b"%032x" % random.getrandbits(128)
