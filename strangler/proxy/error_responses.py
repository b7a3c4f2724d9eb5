"""Answers the proxy makes itself, in the project's JSON error shape {"error": {"code", "message",
"details"?}}: built with json.dumps so a path or header echoed in a message can never break the JSON.
Only error paths come here; the proxied success path builds nothing."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return json.dumps({"error": error}).encode()


async def error_send(
    send: Send,
    *,
    status: int,
    code: str,
    message: str,
    request_id: bytes,
    details: dict[str, Any] | None = None,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """An ASGI error response (the request reached the application)."""
    body = error_body(code, message, details)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"x-request-id", request_id),
    ]
    if extra_headers:
        headers += extra_headers
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def error_response_bytes(status: int, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 error response that closes the connection, for errors met before a request
    reached the application (unparseable request, read timeout)."""
    body = error_body(code, message)
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
    )
    return head % (status, HTTPStatus(status).phrase.encode(), len(body)) + body
