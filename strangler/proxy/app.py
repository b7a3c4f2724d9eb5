"""The proxy's ASGI application: route, forward, stream back, mirror, measure.

Per request it does only in-memory work (routing table, cohort hash, pins) and one upstream exchange
on a pooled keep-alive connection; everything that touches the control database runs in background
loops (see control_sync.py). Paths under /_strangler/ are the proxy's own Django side (health,
metrics, staff API, admin).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from random import getrandbits
from typing import Any

import structlog
from django.conf import settings

from strangler.proxy import metrics
from strangler.proxy.analysis import CanaryAnalyzer
from strangler.proxy.routing import LEGACY, NEW, SAFE_METHODS, Decision, Pins, RoutingTable, decide
from strangler.proxy.shadow import responses_compare
from strangler.proxy.upstream import UpstreamConnection, UpstreamError, UpstreamPool
from strangler.services import ShadowResult

logger = structlog.get_logger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# Hop-by-hop headers (RFC 9110 7.6.1) and headers only the proxy may set: dropped from requests.
_DROP_REQUEST = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"expect",
        b"content-length",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"forwarded",
        b"x-real-ip",
        b"x-request-id",
        b"traceparent",
        b"tracestate",
        b"x-strangler-backend",
        b"x-strangler-internal-token",
    }
)
_DROP_RESPONSE = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
    }
)
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,128}$")
_TRACEPARENT = re.compile(rb"^00-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})$")
_JSON = [(b"content-type", b"application/json")]


def _cookie(cookies: bytes, name: bytes) -> bytes:
    for part in cookies.split(b";"):
        key, _, value = part.strip().partition(b"=")
        if key == name:
            return value
    return b""


class ProxyApp:
    def __init__(self, *, django_app: Any = None) -> None:
        self.table: RoutingTable | None = None
        self.table_changed = asyncio.Event()
        self.pools: dict[tuple[str, int], UpstreamPool] = {}
        self.unhealthy: dict[tuple[str, int], float] = {}
        self.pins = Pins()
        self.analyzer = CanaryAnalyzer()
        self.shadow_results: list[ShadowResult] = []
        self.shadow_in_flight = 0
        self.held: dict[str, int] = {}
        self.django_app = django_app
        self.max_body = settings.STRANGLER_MAX_BODY_BYTES
        self.internal_networks = [ipaddress.ip_network(n) for n in settings.STRANGLER_INTERNAL_NETWORKS]
        self.internal_token = settings.STRANGLER_INTERNAL_TOKEN.encode()
        self.trusted_proxies = frozenset(settings.STRANGLER_TRUSTED_PROXIES)
        self.access_log = settings.STRANGLER_ACCESS_LOG
        self.background: Any = None  # ControlSync, set by the lifespan
        self._tasks: set[asyncio.Task[Any]] = set()

    # routing table

    def install(self, table: RoutingTable) -> None:
        self.table = table
        metrics.ROUTING_VERSION.set(table.version)
        changed, self.table_changed = self.table_changed, asyncio.Event()
        changed.set()  # wakes held writes to look at the new table

    def pool_for(self, address: tuple[str, int]) -> UpstreamPool:
        pool = self.pools.get(address)
        if pool is None:
            pool = self.pools[address] = UpstreamPool(
                address[0],
                address[1],
                connect_timeout=settings.STRANGLER_CONNECT_TIMEOUT,
                read_timeout=settings.STRANGLER_READ_TIMEOUT,
                on_unreachable=lambda: self.unhealthy.__setitem__(address, time.time() + 2.0),
            )
        return pool

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
        if scope["path"] == "/_strangler/routing":
            token = next((v for n, v in scope["headers"] if n == b"x-strangler-internal-token"), b"")
            client = scope.get("client")
            if not self._internal_caller(client[0] if client else "", token):
                await self._error(send, 403, "internal_route", "Only internal callers may read this.", b"-")
                return
            table = self.table
            body = json.dumps(
                {
                    "version": table.version if table else None,
                    "slices": {
                        n: {
                            "phase": s.phase,
                            "weight": s.weight,
                            "shadow": s.shadow_enabled,
                            "frozen": s.frozen(time.time()),
                        }
                        for n, s in (table.slices.items() if table else [])
                    },
                    "held_writes": self.held,
                    "unhealthy": sorted(
                        f"{h}:{p}" for (h, p), until in self.unhealthy.items() if until > time.time()
                    ),
                    "pins": len(self.pins.until),
                    "shadow_in_flight": self.shadow_in_flight,
                }
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*_JSON, (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
        elif self.django_app is not None:
            await self.django_app(scope, receive, send)
        else:
            await self._error(send, 404, "not_found", "No such proxy endpoint.", b"-")

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
                for pool in self.pools.values():
                    pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _error(
        self,
        send: Send,
        status: int,
        code: str,
        message: str,
        request_id: bytes,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        body = b'{"error": {"code": "%s", "message": "%s"}}' % (code.encode(), message.encode())
        headers = [*_JSON, (b"content-length", str(len(body)).encode()), (b"x-request-id", request_id)]
        await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
        await send({"type": "http.response.body", "body": body})

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        table = self.table
        method: str = scope["method"]
        client = scope.get("client")
        peer = client[0] if client else "0.0.0.0"
        # One pass over the request headers: keep end-to-end ones, pick out what the proxy needs.
        forward: list[tuple[bytes, bytes]] = []
        auth = api_key = cookies = override = internal = request_id = traceparent = b""
        incoming_xff = b""
        host = b""
        content_length = -1
        connection_tokens: list[bytes] = []
        for name, value in scope["headers"]:
            if name in _DROP_REQUEST:
                if name == b"content-length":
                    content_length = int(value) if value.isdigit() else -2
                elif name == b"x-request-id":
                    request_id = value
                elif name == b"traceparent":
                    traceparent = value
                elif name == b"x-strangler-backend":
                    override = value
                elif name == b"x-strangler-internal-token":
                    internal = value
                elif name == b"x-forwarded-for":
                    incoming_xff = value
                elif name == b"connection":
                    connection_tokens.extend(t.strip().lower() for t in value.split(b","))
                continue
            if name == b"authorization":
                auth = value
            elif name == b"x-api-key":
                api_key = value
            elif name == b"cookie":
                cookies = value
            elif name == b"host":
                host = value
            forward.append((name, value))
        if connection_tokens:
            forward = [(n, v) for n, v in forward if n not in connection_tokens]
        if not request_id or not _REQUEST_ID.match(request_id):
            request_id = b"%032x" % getrandbits(128)
        trace = _TRACEPARENT.match(traceparent) if traceparent else None
        trace_id = trace.group(1) if trace else b"%032x" % getrandbits(128)
        flags = trace.group(2) if trace else b"01"
        forward.append((b"x-request-id", request_id))
        forward.append((b"traceparent", b"00-%s-%016x-%s" % (trace_id, getrandbits(64), flags)))
        peer_bytes = peer.encode()
        if incoming_xff and peer in self.trusted_proxies:
            forward.append((b"x-forwarded-for", incoming_xff + b", " + peer_bytes))
        else:
            forward.append((b"x-forwarded-for", peer_bytes))
        forward.append((b"x-forwarded-proto", scope.get("scheme", "http").encode()))
        if host:
            forward.append((b"x-forwarded-host", host))

        if content_length == -2:
            await self._error(send, 400, "bad_request", "Content-Length is not a number.", request_id)
            return
        if content_length > self.max_body:
            await self._error(
                send,
                413,
                "payload_too_large",
                f"The body is {content_length} bytes; the limit is {self.max_body}.",
                request_id,
            )
            return
        if table is None or table.default_backend is None:
            await self._error(send, 503, "not_ready", "The proxy has no routing table yet.", request_id)
            return
        path: str = scope["path"]
        route = table.match(method, path)
        if route.exposure == "internal" and not self._internal_caller(peer, internal):
            await self._error(
                send, 403, "internal_route", f"{path} is not available from outside.", request_id
            )
            return
        key = auth + api_key + (_cookie(cookies, b"sessionid") if cookies else b"") or peer_bytes
        if not override and cookies and b"strangler_backend" in cookies:
            override = _cookie(cookies, b"strangler_backend")
        now = time.time()
        # A pin cookie set on an earlier write keeps browsers pinned whichever proxy they reach.
        if cookies and b"strangler_pin" in cookies:
            pinned_until = _cookie(cookies, b"strangler_pin")
            if pinned_until.isdigit() and int(pinned_until) > now:
                self.pins.pin(key, int(pinned_until) - now, now)
        decision = decide(
            table,
            route,
            method,
            key,
            override.decode() if override else None,
            self.pins,
            now,
            random.random(),
        )
        slice_ = route.slice
        if slice_ is not None and method not in SAFE_METHODS and slice_.frozen(now):
            if not await self._hold_write(slice_.name):
                await self._error(
                    send,
                    503,
                    "write_frozen",
                    "Writes to this resource are paused for a moment.",
                    request_id,
                    [(b"retry-after", b"1")],
                )
                return
            table = self.table or table
            route = table.match(method, path)
            decision = decide(table, route, method, key, None, self.pins, time.time(), 1.0)
        decision.version = table.version

        raw_path: bytes = scope.get("raw_path") or path.encode()
        query: bytes = scope.get("query_string", b"")
        target = raw_path + (b"?" + query if query else b"")
        await self.forward(
            scope, receive, send, decision, method, target, forward, content_length, request_id, started
        )

    def _internal_caller(self, peer: str, token: bytes) -> bool:
        if self.internal_token and token == self.internal_token:
            return True
        if not self.internal_networks:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.internal_networks)

    async def _hold_write(self, slice_name: str) -> bool:
        """Waits while the slice's writes are frozen; False when the queue bound is reached."""
        table = self.table
        assert table is not None
        slice_ = table.slices[slice_name]
        held = self.held.get(slice_name, 0)
        if held >= slice_.freeze_max_held:
            return False
        self.held[slice_name] = held + 1
        metrics.HELD_WRITES.labels(slice_name).set(held + 1)
        try:
            while True:
                current = self.table.slices.get(slice_name) if self.table else None
                now = time.time()
                if current is None or not current.frozen(now):
                    return True
                assert current.freeze_until is not None
                try:
                    await asyncio.wait_for(self.table_changed.wait(), current.freeze_until - now)
                except TimeoutError:
                    # The freeze's time bound passed without a flip: the cutover aborted, so the write
                    # goes to the slice's current owner (nothing is lost).
                    logger.warning("proxy.write_freeze_expired", slice=slice_name)
                    return True
        finally:
            self.held[slice_name] -= 1
            metrics.HELD_WRITES.labels(slice_name).set(self.held[slice_name])

    async def _send_request(
        self,
        decision: Decision,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        more_body: bool,
        receive: Receive,
        content_length: int,
    ) -> UpstreamConnection:
        """Sends the request on a pooled connection and waits for the response headers."""
        loop = asyncio.get_running_loop()
        retry_stale = method in SAFE_METHODS and not more_body
        while True:
            address = decision.backend.next_address(self.unhealthy, time.time())
            conn, reused = await self.pool_for(address).acquire()
            lines = [method.encode(), b" ", target, b" HTTP/1.1\r\n"]
            for name, value in headers:
                lines += (name, b": ", value, b"\r\n")
            if not more_body:
                if body or method not in SAFE_METHODS:
                    lines += (b"content-length: ", str(len(body)).encode(), b"\r\n")
                lines += (b"\r\n", body)
                conn.send(b"".join(lines), head_request=method == "HEAD", loop=loop)
            else:
                lines.append(
                    b"transfer-encoding: chunked\r\n\r\n"
                    if content_length < 0
                    else b"content-length: %d\r\n\r\n" % content_length
                )
                conn.send(b"".join(lines), head_request=method == "HEAD", loop=loop)
                await self._stream_body(conn, body, receive, chunked=content_length < 0)
            try:
                assert conn.headers_future is not None
                await conn.headers_future
                return conn
            except UpstreamError as exc:
                conn.discard()
                if reused and retry_stale and exc.before_response:
                    retry_stale = False  # a keep-alive connection the server had just closed: one retry
                    continue
                raise

    async def _stream_body(
        self, conn: UpstreamConnection, first: bytes, receive: Receive, *, chunked: bool
    ) -> None:
        size = 0
        chunk, more = first, True
        while True:
            size += len(chunk)
            if size > self.max_body:
                conn.discard()
                raise BodyTooLarge(size)
            if chunk:
                conn.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            if not more:
                break
            message = await receive()
            chunk, more = message.get("body", b""), message.get("more_body", False)
        if chunked:
            conn.write(b"0\r\n\r\n")

    async def forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        decision: Decision,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        content_length: int,
        request_id: bytes,
        started: float,
    ) -> None:
        message = await receive()
        body: bytes = message.get("body", b"")
        more_body: bool = message.get("more_body", False)
        if not more_body and len(body) > self.max_body:
            await self._error(
                send, 413, "payload_too_large", f"The body is over {self.max_body} bytes.", request_id
            )
            return
        route = decision.route
        slice_ = route.slice
        canary = slice_ is not None and slice_.phase == "canary"
        sent_at = time.perf_counter()
        try:
            conn = await self._send_request(
                decision, method, target, headers, body, more_body, receive, content_length
            )
        except BodyTooLarge as exc:
            await self._error(
                send,
                413,
                "payload_too_large",
                f"The body is over {self.max_body} bytes (read {exc.args[0]}).",
                request_id,
            )
            return
        except UpstreamError as exc:
            elapsed = time.perf_counter() - sent_at
            metrics.UPSTREAM_FAILURES.labels(route.name, decision.backend.name).inc()
            if canary:
                self.analyzer.record(slice_.name, decision.generation, elapsed, True)  # type: ignore[union-attr]
            if decision.generation == NEW and method in SAFE_METHODS and not more_body and slice_ is not None:
                await self._fallback(
                    scope, send, decision, method, target, headers, body, request_id, started, str(exc)
                )
                return
            logger.error(
                "proxy.upstream_failed",
                route=route.name,
                backend=decision.backend.name,
                error=str(exc),
                request_id=request_id.decode(),
            )
            timeout = "within" in str(exc)
            await self._error(
                send,
                504 if timeout else 502,
                "upstream_timeout" if timeout else "bad_gateway",
                "The service did not answer in time." if timeout else "The service is unavailable.",
                request_id,
            )
            return
        elapsed = time.perf_counter() - sent_at
        status = conn.status
        if canary:
            self.analyzer.record(slice_.name, decision.generation, elapsed, status >= 500)  # type: ignore[union-attr]
        if status >= 500 and decision.generation == NEW and method in SAFE_METHODS and not more_body:
            conn.discard()
            metrics.observe(route.name, decision.backend.name, status, elapsed)
            await self._fallback(
                scope, send, decision, method, target, headers, body, request_id, started, f"status {status}"
            )
            return
        await self._relay(send, conn, decision, method, target, headers, body, request_id, elapsed)

    async def _fallback(
        self,
        scope: Scope,
        send: Send,
        decision: Decision,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        request_id: bytes,
        started: float,
        why: str,
    ) -> None:
        """An idempotent read the new backend could not answer is answered by legacy instead."""
        assert decision.route.slice is not None
        metrics.FALLBACKS.labels(decision.route.name).inc()
        logger.warning(
            "proxy.fallback_to_legacy", route=decision.route.name, reason=why, request_id=request_id.decode()
        )
        legacy = Decision(
            decision.route, LEGACY, decision.route.slice.legacy, reason="fallback", version=decision.version
        )
        sent_at = time.perf_counter()
        try:
            conn = await self._send_request(legacy, method, target, headers, body, False, _no_body, -1)
        except UpstreamError as exc:
            metrics.UPSTREAM_FAILURES.labels(decision.route.name, legacy.backend.name).inc()
            logger.error(
                "proxy.upstream_failed",
                route=decision.route.name,
                backend=legacy.backend.name,
                error=str(exc),
                request_id=request_id.decode(),
            )
            await self._error(send, 502, "bad_gateway", "The service is unavailable.", request_id)
            return
        await self._relay(
            send, conn, legacy, method, target, headers, body, request_id, time.perf_counter() - sent_at
        )

    async def _relay(
        self,
        send: Send,
        conn: UpstreamConnection,
        decision: Decision,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        request_id: bytes,
        elapsed: float,
    ) -> None:
        status = conn.status
        response_headers = [(n, v) for n, v in conn.headers if n not in _DROP_RESPONSE]
        response_headers.append((b"x-request-id", request_id))
        if decision.pin_seconds:
            seconds = int(decision.pin_seconds + 0.999)
            response_headers.append(
                (
                    b"set-cookie",
                    b"strangler_pin=%d; Max-Age=%d; Path=/; HttpOnly; SameSite=Lax"
                    % (int(time.time()) + seconds, seconds),
                )
            )
        shadow = decision.shadow and self.shadow_in_flight < settings.STRANGLER_SHADOW_MAX_IN_FLIGHT
        kept: list[bytes] = []
        try:
            if conn.done:
                data = b"".join(conn.chunks)
                conn.chunks.clear()
                conn.finish()
                await send({"type": "http.response.start", "status": status, "headers": response_headers})
                await send({"type": "http.response.body", "body": data})
                if shadow:
                    kept.append(data)
            else:
                await send({"type": "http.response.start", "status": status, "headers": response_headers})
                size = 0
                while True:
                    chunk = await conn.next_chunk()
                    if chunk is None:
                        break
                    if shadow:
                        size += len(chunk)
                        if size <= settings.STRANGLER_SHADOW_MAX_BODY_BYTES:
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
                request_id=request_id.decode(),
            )
            raise
        metrics.observe(decision.route.name, decision.backend.name, status, elapsed)
        if self.access_log or status >= 500:
            log = logger.error if status >= 500 else logger.info
            log(
                "proxy.request",
                method=method,
                path=target.decode(errors="replace"),
                status=status,
                route=decision.route.name,
                backend=decision.backend.name,
                generation=decision.generation,
                reason=decision.reason,
                routing_version=decision.version,
                upstream_ms=round(elapsed * 1000, 2),
                request_id=request_id.decode(),
            )
        if shadow:
            # The customer's answer has gone out; the mirror runs after it and never slows it.
            legacy_answer = (
                status,
                {n.decode(): v.decode(errors="replace") for n, v in conn.headers},
                b"".join(kept),
            )
            task = asyncio.get_running_loop().create_task(
                self._shadow(decision, method, target, headers, body, legacy_answer)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _shadow(
        self,
        decision: Decision,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        legacy_answer: tuple[int, dict[str, str], bytes],
    ) -> None:
        slice_ = decision.route.slice
        assert slice_ is not None
        self.shadow_in_flight += 1
        path = target.decode(errors="replace")
        mirror = Decision(decision.route, NEW, slice_.new, reason="shadow")
        try:
            conn = await self._send_request(mirror, method, target, headers, body, False, _no_body, -1)
            parts = []
            while (chunk := await conn.next_chunk()) is not None:
                parts.append(chunk)
            conn.finish()
            new_answer = (
                conn.status,
                {n.decode(): v.decode(errors="replace") for n, v in conn.headers},
                b"".join(parts),
            )
            differences = responses_compare(
                path=path.split("?", 1)[0],
                legacy=legacy_answer,
                new=new_answer,
                compare_headers=slice_.shadow_compare_headers,
                ignore=slice_.shadow_ignore,
            )
            result = ShadowResult(slice_.name, decision.route.name, method, path, differences)
            metrics.SHADOW.labels(decision.route.name, "differ" if differences else "match").inc()
        except UpstreamError as exc:
            result = ShadowResult(slice_.name, decision.route.name, method, path, [str(exc)], failed=True)
            metrics.SHADOW.labels(decision.route.name, "failed").inc()
        finally:
            self.shadow_in_flight -= 1
        self.shadow_results.append(result)


class BodyTooLarge(Exception):
    pass


async def _no_body() -> MutableMapping[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}
