"""The MES quotes client over real HTTP against a local server playing each way the MES can answer:
a quote, a refusal, a failure, a rate limit, silence, or nobody listening. No answer ever takes
longer than MES_API_TIMEOUT, and only a 200 quote becomes a price."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ops.process_group import free_port
from shop_app.exceptions import PricingServiceUnavailable
from shop_app.mes_quotes import Quote, QuoteRefused, QuoteRequest, quote_fetch

REQUEST = QuoteRequest(sku="CHR-001", quantity=3, options=("lacquer",))


class FakeMes(BaseHTTPRequestHandler):
    """Answers POST /mes/api/quotes/ as `self.server.answer` says; records what it was sent."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append((self.path, dict(self.headers), body))  # type: ignore[attr-defined]
        status, payload, headers = self.server.answer  # type: ignore[attr-defined]
        if status == "silence":
            time.sleep(3)
            return
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def mes(settings: Any) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeMes)
    server.daemon_threads = True
    server.seen = []  # type: ignore[attr-defined]
    server.answer = (200, {}, {})  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.MES_API_URL = f"http://127.0.0.1:{server.server_port}/"
    settings.MES_API_KEY = "shop-key"
    settings.MES_API_TIMEOUT = 0.5
    yield server
    server.shutdown()
    server.server_close()


def answer(server: ThreadingHTTPServer, status: int | str, payload: Any = None, **headers: str) -> None:
    server.answer = (status, payload or {}, headers)  # type: ignore[attr-defined]


def test_a_quote_is_asked_with_the_key_and_read_to_the_cent(mes: ThreadingHTTPServer) -> None:
    answer(mes, 200, {"sku": "CHR-001", "unit_price": "101.35", "total": "304.05", "currency": "EUR"})
    assert quote_fetch(REQUEST) == Quote(unit_price=Decimal("101.35"), total=Decimal("304.05"))
    path, headers, body = mes.seen[0]  # type: ignore[attr-defined]
    assert path == "/mes/api/quotes/" and headers["X-API-Key"] == "shop-key"
    assert body == {"sku": "CHR-001", "quantity": 3, "options": ["lacquer"]}


def test_a_refusal_keeps_the_mes_code_message_and_details(mes: ThreadingHTTPServer) -> None:
    error = {
        "code": "unknown_option",
        "message": "Product CHR-001 has no option x.",
        "details": {"unknown": ["x"]},
    }
    answer(mes, 422, {"error": error})
    with pytest.raises(QuoteRefused) as refused:
        quote_fetch(REQUEST)
    assert (refused.value.code, refused.value.message, refused.value.details) == (
        "unknown_option",
        "Product CHR-001 has no option x.",
        {"unknown": ["x"]},
    )


@pytest.mark.parametrize(
    ("status", "payload", "headers", "retry_after"),
    [
        pytest.param(500, {"error": {"code": "internal_error", "message": "x"}}, {}, 1, id="5xx"),
        pytest.param(503, {}, {}, 1, id="unavailable"),
        pytest.param(
            429,
            {"error": {"code": "rate_limited", "message": "x"}},
            {"Retry-After": "7"},
            7,
            id="rate-limited",
        ),
        pytest.param(
            401, {"error": {"code": "authentication_failed", "message": "x"}}, {}, 1, id="key-refused"
        ),
        pytest.param(200, {"no": "price"}, {}, 1, id="not-a-quote"),
        pytest.param(422, {"unexpected": "shape"}, {}, 1, id="refusal-without-error-body"),
    ],
)
def test_no_price_is_a_pricing_outage(
    mes: ThreadingHTTPServer, status: int, payload: Any, headers: dict[str, str], retry_after: int
) -> None:
    answer(mes, status, payload, **headers)
    with pytest.raises(PricingServiceUnavailable) as outage:
        quote_fetch(REQUEST)
    assert outage.value.retry_after_seconds == retry_after


def test_a_silent_mes_costs_the_timeout_and_no_more(mes: ThreadingHTTPServer) -> None:
    answer(mes, "silence")
    started = time.monotonic()
    with pytest.raises(PricingServiceUnavailable, match="did not answer in 0.5 s"):
        quote_fetch(REQUEST)
    assert time.monotonic() - started < 1.5


def test_nobody_listening_is_a_pricing_outage(settings: Any) -> None:
    settings.MES_API_URL = f"http://127.0.0.1:{free_port()}"
    settings.MES_API_TIMEOUT = 0.5
    with pytest.raises(PricingServiceUnavailable, match="cannot be reached"):
        quote_fetch(REQUEST)


def test_a_connection_that_never_answers_is_bounded(settings: Any) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts at the kernel level, never reads nor answers
    try:
        settings.MES_API_URL = f"http://127.0.0.1:{listener.getsockname()[1]}"
        settings.MES_API_TIMEOUT = 0.3
        started = time.monotonic()
        with pytest.raises(PricingServiceUnavailable):
            quote_fetch(REQUEST)
        assert time.monotonic() - started < 1.0
    finally:
        listener.close()
