"""Runs the proxy under uvicorn with uvloop and httptools (measured as the fastest ASGI server here),
with the proxy's own HTTP protocol (read deadlines, JSON errors; see protocol.py)."""

from __future__ import annotations

import uvicorn
from django.conf import settings

from strangler.proxy.protocol import proxy_protocol


def proxy_serve(*, host: str, port: int) -> None:
    uvicorn.run(
        "strangler.proxy.asgi:application",
        host=host,
        port=port,
        loop="uvloop",
        http=proxy_protocol(
            header_timeout=settings.STRANGLER_HEADER_TIMEOUT,
            body_timeout=settings.STRANGLER_BODY_TIMEOUT,
            max_headers=settings.STRANGLER_MAX_HEADERS,
            max_header_bytes=settings.STRANGLER_MAX_HEADER_BYTES,
        ),
        ws="none",  # the proxy forwards HTTP only
        lifespan="on",
        access_log=False,
        server_header=False,  # the backend's Server and Date headers pass through
        date_header=False,
        log_config=None,  # Django's LOGGING (structlog JSON) is already configured
        timeout_keep_alive=30,
        backlog=2048,
        proxy_headers=False,  # never trust X-Forwarded-* from the client; the app decides (trusted proxies)
    )
