"""Writes one request to a backend on a pooled keep-alive connection and waits for the response head.

The request line and headers go out in one write; a body the client is still sending is streamed on
(chunked when the client gave no length) within the size limit. A request on a reused connection
that the backend had just closed is sent once more when that is safe (idempotent, body in hand).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from strangler.proxy.request import ProxyRequest
from strangler.proxy.routing import SAFE_METHODS, BackendTarget
from strangler.proxy.upstream import UpstreamConnection, UpstreamError, UpstreamPool

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


class BodyTooLarge(Exception):
    """A streamed request body went past the size limit (the upstream connection is dropped)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"read {size} bytes")
        self.size = size


class ClientGone(Exception):
    """The client disconnected (or timed out) while its body was being streamed to the backend."""


class UpstreamClient:
    def __init__(self, *, connect_timeout: float, read_timeout: float, max_body: int) -> None:
        self.connect_timeout, self.read_timeout, self.max_body = connect_timeout, read_timeout, max_body
        self.pools: dict[tuple[str, int], UpstreamPool] = {}
        # Addresses that failed to connect or a health check, until the time they may be tried again.
        self.unhealthy: dict[tuple[str, int], float] = {}

    def pool_for(self, address: tuple[str, int]) -> UpstreamPool:
        pool = self.pools.get(address)
        if pool is None:
            pool = self.pools[address] = UpstreamPool(
                address[0],
                address[1],
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
                on_unreachable=lambda: self.unhealthy.__setitem__(address, time.time() + 2.0),
            )
        return pool

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()

    async def send(
        self, request: ProxyRequest, backend: BackendTarget, *, receive: Receive | None = None
    ) -> UpstreamConnection:
        """Sends the request (streaming the rest of its body from `receive` when the client is still
        sending it) and returns the connection once the response head arrived."""
        loop = asyncio.get_running_loop()
        method = request.method
        streaming = request.more_body
        retry_stale = method in SAFE_METHODS and not streaming
        head_request = method == "HEAD"
        while True:
            pool = self.pool_for(backend.next_address(self.unhealthy, time.time()))
            conn, reused = await pool.acquire()
            lines = [method.encode(), b" ", request.target, b" HTTP/1.1\r\n"]
            for name, value in request.forward_headers:
                lines += (name, b": ", value, b"\r\n")
            if not request.has_host:
                # HTTP/1.1 requires Host; an HTTP/1.0 client may have sent none: name the backend.
                lines += (b"host: ", pool.host_header, b"\r\n")
            if not streaming:
                body = request.body
                if body or method not in SAFE_METHODS:
                    lines += (b"content-length: %d\r\n" % len(body),)
                lines += (b"\r\n", body)
                conn.send(b"".join(lines), head_request=head_request, loop=loop)
            else:
                assert receive is not None, "a body still arriving needs the client's receive"
                chunked = request.content_length < 0
                lines.append(
                    b"transfer-encoding: chunked\r\n\r\n"
                    if chunked
                    else b"content-length: %d\r\n\r\n" % request.content_length
                )
                conn.send(b"".join(lines), head_request=head_request, loop=loop)
                await self._stream_body(conn, request.body, receive, chunked=chunked)
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
            if message["type"] == "http.disconnect":
                # Never let the backend act on half a body: drop the connection mid-request.
                conn.discard()
                raise ClientGone
            chunk, more = message.get("body", b""), message.get("more_body", False)
        if chunked:
            conn.write(b"0\r\n\r\n")
