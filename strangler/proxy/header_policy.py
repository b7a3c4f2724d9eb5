"""Which inbound headers reach a backend and what the proxy reads from them, in one pass per request.

Hop-by-hop headers and the ones only the proxy may set are dropped; request id, trace context and
X-Forwarded-* are (re)written by the proxy; the customer key, tester override, pin cookie, internal
token and Content-Length are read defensively: any byte sequence is either used, ignored or refused
with a 4xx, never an exception. The proxy's own cookies (the tester override, the read-your-writes pin,
its admin's session and CSRF token) are read here and never forwarded: a backend must not receive an
operator's proxy session, nor confuse it with its own.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, MutableMapping
from random import getrandbits
from typing import Any

from strangler.proxy.overrides import override_verify
from strangler.proxy.request import ProxyRequest, RequestRefused
from strangler.proxy.trace_context import TraceSampler, trace_decide
from strangler.proxy.trace_context import traceparent as trace_header

# Hop-by-hop headers (RFC 9110 7.6.1): never forwarded, in either direction.
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)
# Dropped from requests: hop-by-hop ones, and the ones only the proxy may set or read.
DROP_REQUEST = HOP_BY_HOP | {
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
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,128}$")
_TRACEPARENT = re.compile(rb"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
# Every cookie the proxy sets or reads starts with this; a Cookie header without it (nearly all of
# them) is forwarded as it came, without being split.
OWN_COOKIE_PREFIX = b"strangler_"
OVERRIDE_COOKIE = b"strangler_backend"
PIN_COOKIE = b"strangler_pin"
# Epoch seconds fit in 10 digits until the year 2286; longer is not a pin the proxy set.
_MAX_PIN_DIGITS = 10
# A Content-Length beyond 18 digits is not a body size anyone sends (and int() of it is not free).
_MAX_LENGTH_DIGITS = 18


def cookie_value(cookies: bytes, name: bytes) -> bytes:
    """The value of cookie `name` in a Cookie header, b"" when absent; any bytes are fine."""
    for part in cookies.split(b";"):
        key, _, value = part.strip().partition(b"=")
        if key == name:
            return value
    return b""


def cookies_without(cookies: bytes, names: frozenset[bytes]) -> bytes:
    """The Cookie header without the cookies named in `names`; b"" when none is left."""
    kept = [part for part in cookies.split(b";") if part.strip().partition(b"=")[0] not in names]
    return b";".join(kept).strip(b" \t")


class HeaderPolicy:
    def __init__(
        self,
        *,
        trusted_proxies: Iterable[str],
        override_secret: str,
        max_body: int,
        own_cookies: Iterable[str] = (),
        sampler: TraceSampler | None = None,
    ) -> None:
        """`own_cookies`: the proxy's cookies besides the override and the pin (its admin's session
        and CSRF cookies), each named with OWN_COOKIE_PREFIX."""
        self.trusted_proxies = frozenset(trusted_proxies)
        self.override_secret = override_secret.encode()
        self.max_body = max_body
        self.sampler = sampler or TraceSampler.from_env()
        self.own_cookies = frozenset({OVERRIDE_COOKIE, PIN_COOKIE, *(name.encode() for name in own_cookies)})
        unprefixed = sorted(n.decode() for n in self.own_cookies if not n.startswith(OWN_COOKIE_PREFIX))
        if unprefixed:
            raise ValueError(f"the proxy's cookies must be named {OWN_COOKIE_PREFIX.decode()}*: {unprefixed}")

    def parse(self, scope: MutableMapping[str, Any]) -> ProxyRequest:
        """The request object for one ASGI http scope; raises RequestRefused for a 4xx."""
        client = scope.get("client")
        peer: str = client[0] if client else "0.0.0.0"
        forward: list[tuple[bytes, bytes]] = []
        auth = api_key = cookies = override = internal = request_id = traceparent = b""
        incoming_xff = host = raw_length = b""
        connection_tokens: list[bytes] = []
        for name, value in scope["headers"]:
            if name in DROP_REQUEST:
                if name == b"content-length":
                    raw_length = value
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
                cookies = value if not cookies else cookies + b"; " + value
                if OWN_COOKIE_PREFIX in value:
                    value = cookies_without(value, self.own_cookies)
                    if not value:
                        continue
            elif name == b"host":
                host = value
            forward.append((name, value))
        if connection_tokens:
            forward = [(n, v) for n, v in forward if n not in connection_tokens]
        if not request_id or not _REQUEST_ID.match(request_id):
            request_id = b"%032x" % getrandbits(128)
        trace = _TRACEPARENT.match(traceparent) if traceparent else None
        trace_id, parent_span, sampled = (
            trace_decide(self.sampler, trace.group(1), trace.group(2), trace.group(3))
            if trace
            else trace_decide(self.sampler, None, None, None)
        )
        forward.append((b"x-request-id", request_id))
        traceparent_at = len(forward)
        # A span id of the proxy's own; replaced by its SDK span's id when that span is recorded.
        forward.append((b"traceparent", trace_header(trace_id, getrandbits(64), sampled)))
        peer_bytes = peer.encode()
        if incoming_xff and peer in self.trusted_proxies:
            forward.append((b"x-forwarded-for", incoming_xff + b", " + peer_bytes))
        else:
            forward.append((b"x-forwarded-for", peer_bytes))
        forward.append((b"x-forwarded-proto", scope.get("scheme", "http").encode()))
        if host:
            forward.append((b"x-forwarded-host", host))

        content_length = -1
        if raw_length:
            # The HTTP parser already refuses most malformed lengths; this is the last word.
            if not raw_length.isdigit() or len(raw_length) > _MAX_LENGTH_DIGITS:
                raise RequestRefused(
                    400, "bad_request", "Content-Length is not a number.", request_id=request_id
                )
            content_length = int(raw_length)
            if content_length > self.max_body:
                raise RequestRefused(
                    413,
                    "payload_too_large",
                    f"The body is {content_length} bytes; the limit is {self.max_body}.",
                    request_id=request_id,
                )

        pinned_until = 0
        if cookies:
            if not override and OVERRIDE_COOKIE in cookies:
                override = cookie_value(cookies, OVERRIDE_COOKIE)
            if PIN_COOKIE in cookies:
                pin = cookie_value(cookies, PIN_COOKIE)
                if pin.isdigit() and len(pin) <= _MAX_PIN_DIGITS:
                    pinned_until = int(pin)
        path: str = scope["path"]
        raw_path: bytes = scope.get("raw_path") or path.encode("utf-8", "surrogateescape")
        query: bytes = scope.get("query_string", b"")
        return ProxyRequest(
            method=scope["method"],
            path=path,
            target=raw_path + b"?" + query if query else raw_path,
            http_version=scope.get("http_version", "1.1"),
            peer=peer,
            forward_headers=forward,
            has_host=bool(host),
            # `sessionid` is the migrated system's session (the proxy's own is strangler_sessionid).
            customer_key=auth + api_key + (cookie_value(cookies, b"sessionid") if cookies else b"")
            or peer_bytes,
            request_id=request_id,
            content_length=content_length,
            internal_token=internal,
            override=override_verify(override, secret=self.override_secret, now=time.time())
            if override
            else None,
            pinned_until=pinned_until,
            trace_id=trace_id,
            parent_span=parent_span,
            sampled=sampled,
            traceparent_at=traceparent_at,
        )
