"""A small HTTP backend that tests (and rehearsals) can steer: slow down, fail, diverge.

`python -m strangler.testing_backend --name new --port 8123` answers any path with JSON
{"path", "method", "value", "id", "generated_at", ...} and the header `X-Backend-Name`. Paths under
/echo/ also return the request headers. POST /_control/mode with {"fail_status": 500, "fail_rate": 1,
"delay_ms": 200, "diverge": true} changes its behaviour; GET /_control/stats counts what it received.
Stands in for extracted services until they exist.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from collections import Counter
from typing import Any

import uvicorn


class ControllableBackend:
    def __init__(self, name: str) -> None:
        self.name = name
        self.mode: dict[str, Any] = {"fail_status": 500, "fail_rate": 0.0, "delay_ms": 0, "diverge": False}
        self.received: Counter[str] = Counter()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None  # the client left mid-body: like Django, act on nothing
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path, method = scope["path"], scope["method"]
        request_id = next((v for n, v in scope["headers"] if n == b"x-request-id"), None)
        if request_id is not None:
            send = _echo_request_id(send, request_id)
        if path == "/_control/mode" and method == "POST":
            self.mode.update(json.loads(body or b"{}"))
            self.received.clear()
            return await self._json(send, 200, {"mode": self.mode})
        if path == "/_control/stats":
            return await self._json(send, 200, {"received": dict(self.received), "mode": self.mode})
        if path == "/healthz":
            return await self._json(send, 200, {"status": "ok"})
        self.received[f"{method} {path}"] += 1
        if self.mode["delay_ms"]:
            await asyncio.sleep(self.mode["delay_ms"] / 1000)
        if path.startswith("/stream/"):
            # A large body in many chunks without Content-Length: exercises streaming and back-pressure.
            size = int(path.rsplit("/", 1)[1] or 0)
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/octet-stream"),
                        (b"x-backend-name", self.name.encode()),
                    ],
                }
            )
            block = bytes(range(256)) * 256
            sent = 0
            while sent < size:
                piece = block[: min(len(block), size - sent)]
                sent += len(piece)
                await send({"type": "http.response.body", "body": piece, "more_body": sent < size})
            return None
        if self.mode["fail_rate"] and random.random() < self.mode["fail_rate"]:
            return await self._json(
                send, self.mode["fail_status"], {"error": {"code": "injected", "message": "fail"}}
            )
        payload: dict[str, Any] = {
            "path": path,
            "method": method,
            "query": scope.get("query_string", b"").decode(),
            "value": "diverged" if self.mode["diverge"] else "stable",
            "id": uuid.uuid4().hex,
            "generated_at": time.time(),
            "body_bytes": len(body),
        }
        if path.startswith("/echo/"):
            payload["headers"] = {k.decode(): v.decode() for k, v in scope["headers"]}
            payload["client"] = scope.get("client", ["", 0])[0]
        status = 201 if method == "POST" else 200
        await self._json(send, status, payload)

    async def _json(self, send: Any, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-backend-name", self.name.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _echo_request_id(send: Any, request_id: bytes) -> Any:
    """Answers carry the request's X-Request-ID, as the real services' middleware does."""

    async def sending(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id)]}
        await send(message)

    return sending


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    uvicorn.run(
        ControllableBackend(args.name),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=30,
    )


if __name__ == "__main__":
    main()
