"""One proxied request as the proxy sees it after the header policy read it: everything routing,
forwarding, the write freeze and the shadow mirror need, parsed once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class ProxyRequest:
    method: str
    path: str  # decoded, for matching and messages
    target: bytes  # raw path and query as the client sent them, forwarded as is
    http_version: str  # "1.0", "1.1"
    peer: str
    # End-to-end headers for the backend, with the proxy's own (x-request-id, traceparent,
    # x-forwarded-*) already added. Host is the client's, when it sent one.
    forward_headers: list[tuple[bytes, bytes]]
    has_host: bool
    customer_key: bytes  # cohort and pin key: credentials or session, else the peer address
    request_id: bytes
    content_length: int  # -1 when the request has no Content-Length
    internal_token: bytes
    override: str | None  # "legacy" or "new" from a valid signed tester token, else None
    pinned_until: int  # from a strangler_pin cookie (epoch seconds), 0 when absent or malformed
    # The trace this request belongs to (trace_context.py): its id in hex, the incoming parent span
    # id (b"" when the proxy started the trace), the sampling decision, and where the forwarded
    # traceparent sits in forward_headers (the proxy's own span id replaces it when one is recorded).
    trace_id: bytes = b""
    parent_span: bytes = b""
    sampled: bool = False
    traceparent_at: int = -1
    span: Any = None  # the proxy's SDK span, only when sampled and tracing is on
    body: bytes = b""  # the first part of the body, once read
    more_body: bool = False  # whether more of the body is still to be received from the client

    @property
    def replayable(self) -> bool:
        """The whole body is in hand, so the request can be sent again (fallback, mirror)."""
        return not self.more_body


class RequestRefused(Exception):
    """The request is answered by the proxy with a 4xx in the JSON error shape."""

    def __init__(self, status: int, code: str, message: str, *, request_id: bytes) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.request_id = status, code, message, request_id
