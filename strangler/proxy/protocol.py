"""The proxy's HTTP/1.1 server protocol: uvicorn's httptools protocol with read deadlines and the JSON
error shape for requests that never reach the application.

uvicorn bounds only the idle time between keep-alive requests; a client that sends half a request
head, or a head and then part of its body, held its connection for ever (slowloris). Here a request
head must arrive within the header timeout (counted from the connection or the request's first
byte) and its body within the body timeout after the head; past either the client gets a JSON 408
and the connection is closed. Requests the parser refuses (an unknown method, a malformed line or
header) get a JSON 405/400 instead of uvicorn's text/plain "Invalid HTTP request received."; a
request line that does not start with an HTTP token at all (a TLS ClientHello on the plain port,
binary garbage) is a 400, not a 405.
A head with more headers, or more header bytes, than the configured bounds gets a JSON 431 before
the application sees it: neither uvicorn nor httptools bounds them, and a backend that does (granian
refuses more than 100) would answer with an empty 431.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httptools
import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from strangler.proxy import metrics
from strangler.proxy.error_responses import error_response_bytes

logger = structlog.get_logger(__name__)

_HEAD, _BODY = 0, 1
# A method is a token (RFC 9110 5.6.2); a request line starting otherwise is not HTTP at all.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class HeadersTooLarge(Exception):
    """A request head past the header count or size bound (raised inside the parser's callback)."""


class ProxyHttpProtocol(HttpToolsProtocol):
    header_timeout = 10.0
    body_timeout = 30.0
    max_headers = 90
    max_header_bytes = 64 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_timer: asyncio.TimerHandle | None = None
        self.read_phase = _HEAD
        self.read_deadline = 0.0
        self.request_begun = False  # a byte of a request arrived since the last one completed
        self.header_bytes = 0  # names and values of the current request's headers so far

    # One timer per request: armed when a request (or the connection) starts, moved on to the body
    # deadline only if it fires while the body is still coming, cancelled when the request is complete.

    def _arm(self) -> None:
        now = self.loop.time()
        self.read_phase = _HEAD
        self.read_deadline = now + self.header_timeout
        self.read_timer = self.loop.call_later(self.header_timeout, self._read_timeout)

    def _disarm(self) -> None:
        if self.read_timer is not None:
            self.read_timer.cancel()
            self.read_timer = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is a partial request too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.request_begun = True
        self.header_bytes = 0
        if self.read_timer is None:
            self._arm()

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self.header_bytes += len(name) + len(value)
        if len(self.headers) > self.max_headers or self.header_bytes > self.max_header_bytes:
            raise HeadersTooLarge  # httptools stops parsing and raises HttpParserCallbackError

    def on_headers_complete(self) -> None:
        self.read_phase = _BODY
        self.read_deadline = self.loop.time() + self.body_timeout
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self.request_begun = False
        super().on_message_complete()

    def _read_timeout(self) -> None:
        self.read_timer = None
        if self.transport.is_closing():
            return
        remaining = self.read_deadline - self.loop.time()
        cycle = self.cycle
        head = self.read_phase == _HEAD
        if remaining > 0 or (head and cycle is not None and not cycle.response_complete):
            # Not due yet (the body deadline is later than the head's), or a pipelined head waits
            # behind a response still going out: look again later.
            self.read_timer = self.loop.call_later(
                max(remaining, 0.0) or self.header_timeout, self._read_timeout
            )
            return
        if head and not self.request_begun:
            # An idle connection that never started a request is closed without an answer (as
            # uvicorn closes idle keep-alive ones): a client sending just now must not read a 408
            # as the answer to a request that never arrived.
            self.transport.close()
            return
        # Counted, and logged at debug only: a slow-client flood must not flood the log as well.
        phase = "headers" if head else "body"
        metrics.CLIENT_READ_TIMEOUTS.labels(phase).inc()
        logger.debug("proxy.client_read_timeout", phase=phase, client=self.client)
        if head or cycle is None or not cycle.response_started:
            self._refuse(408, "request_timeout", "The request did not arrive in time.")
        else:
            self.transport.close()

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answers a request the application will not see, and closes the connection."""
        self._disarm()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started:
                # A response is on the wire: nothing can be added to it honestly; cut it.
                self.transport.close()
                return
            # The application waits for this request's body: it sees a disconnect and sends nothing.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.write(error_response_bytes(status, code, message))
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserInvalidMethodError:
            if _TOKEN.fullmatch(data.lstrip(b"\r\n").split(b" ", 1)[0]):
                self._refuse(405, "method_not_allowed", "The proxy does not know this request method.")
            else:
                self._refuse(400, "bad_request", "The request line is not HTTP.")
        except httptools.HttpParserError as error:
            if isinstance(error, httptools.HttpParserCallbackError) and isinstance(
                error.__context__, HeadersTooLarge
            ):
                self._refuse(
                    431,
                    "request_header_fields_too_large",
                    f"A request may have at most {self.max_headers} headers "
                    f"and {self.max_header_bytes} bytes of them.",
                )
            else:
                self._refuse(400, "bad_request", "The request is not valid HTTP/1.1.")
        except httptools.HttpParserUpgrade:
            # The proxy forwards plain HTTP only (uvicorn runs with ws="none"): the request goes on
            # without its Upgrade (a hop-by-hop header), and the backend answers it as a normal one.
            logger.debug("proxy.upgrade_ignored", client=self.client)


def proxy_protocol(
    *, header_timeout: float, body_timeout: float, max_headers: int, max_header_bytes: int
) -> type[ProxyHttpProtocol]:
    """The protocol class uvicorn instantiates per connection, with the configured deadlines and
    header bounds."""
    return type(
        "ConfiguredProxyHttpProtocol",
        (ProxyHttpProtocol,),
        {
            "header_timeout": header_timeout,
            "body_timeout": body_timeout,
            "max_headers": max_headers,
            "max_header_bytes": max_header_bytes,
        },
    )
